"""examples/horizon.yml through /probe gives the built-in poller's Horizon metrics, names and values alike."""

from __future__ import annotations

from pathlib import Path

from exporter.config import load_config
from tests.conftest import fixed_target, wait_for
from tests.test_exporter_http import config, samples

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "horizon.yml"
# What only the poller can say: health of its own polls, staleness, build info.
POLLER_ONLY = {
    "horizon_up", "horizon_target_up", "horizon_microservice_stale", "horizon_poll_duration_seconds",
    "horizon_last_success_timestamp_seconds", "horizon_polls_total", "horizon_poll_errors_total",
    "horizon_exporter_build_info", "horizon_microservice_duplicate", "horizon_exporter_http_requests_refused_total",
    "horizon_exporter_config_last_reload_successful", "horizon_exporter_config_last_reload_success_timestamp_seconds",
    "horizon_exporter_shard", "horizon_exporter_total_shards", "horizon_exporter_targets",
}  # fmt: skip


async def test_modules_reproduce_the_builtin_metrics(horizon, make_exporter):
    _, url = horizon
    builtin = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(builtin, lambda s: s.targets["orders"].up)
    expected = samples(await (await builtin.get("/metrics")).text())

    prober = await make_exporter(load_config(str(EXAMPLE), env={}))
    got: dict = {}
    for endpoint in ("stats", "workload", "masters"):
        params = {"module": f"horizon_{endpoint}", "target": f"{url}/api/{endpoint}", "microservice": "orders"}
        resp = await prober.get("/probe", params=params)
        text = await resp.text()
        assert "probe_success 1" in text, text
        got |= {k: v for k, v in samples(text).items() if not k[0].startswith("probe_")}

    assert len(got) >= 20, got  # 3 queues × 3 values, processes, supervisors, masters, status, stats
    for key, value in got.items():
        assert expected.get(key) == value, (key, value, expected.get(key))
    reproduced = {name for name, _ in got}
    assert {name for name, _ in expected} - POLLER_ONLY == reproduced
