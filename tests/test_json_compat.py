"""json_exporter's own test vectors through /probe: the same sample names, types and values."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_config
from exporter.yamlreader import ConfigError
from tests.conftest import real_prometheus, require_binary

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "compat" / "json_exporter"


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]]:
    """{(sample name, labels): (family type, value)} via prometheus_client's parser; probe_* left out."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith("probe_"):
                out[(s.name, tuple(sorted(s.labels.items())))] = (family.type, s.value)
    return out


def values(parsed: dict) -> dict:
    return {k: v for k, (_, v) in parsed.items()}


async def serve_files(files: dict[str, Path]) -> TestServer:
    app = web.Application()
    for route, path in files.items():

        async def handler(request: web.Request, path: Path = path) -> web.Response:
            return web.Response(body=path.read_bytes(), content_type="application/json")

        app.router.add_get(route, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def vectors_server():
    if not VECTORS.is_dir():
        pytest.fail(f"json_exporter vectors not found at {VECTORS} (../shared beside the repo)")
    server = await serve_files(
        {"/good.json": VECTORS / "good.json", "/data.json": VECTORS / "examples.data.json",
         "/animals.json": VECTORS / "examples.animal-data.json", "/repeat.json": VECTORS / "repeat-metric.json"}
    )  # fmt: skip
    yield server
    await server.close()


def migrated(name: str, tmp_path: Path) -> Path:
    """A json_exporter config as its user migrates it (README): one `allowed_targets` line per module."""
    text = (VECTORS / name).read_text()
    text = re.sub(r"^(  [A-Za-z_][\w-]*:)\n", "\\1\n    allowed_targets: ['*']\n", text, flags=re.M)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_unmigrated_config_is_refused_naming_the_line_to_add():
    with pytest.raises(ConfigError) as exc:
        load_config(str(VECTORS / "good.config.yml"))
    assert "modules.default.allowed_targets" in str(exc.value) and "allowed_targets: ['*']" in str(exc.value)


async def probe(make_exporter, config_path: Path, server: TestServer, route: str, module: str = "default"):
    client = await make_exporter(load_config(str(config_path)))
    resp = await client.get("/probe", params={"module": module, "target": str(server.make_url(route))})
    assert resp.status == 200
    return await resp.text()


async def test_good_vector_same_names_types_values(make_exporter, vectors_server, tmp_path):
    text = await probe(make_exporter, migrated("good.config.yml", tmp_path), vectors_server, "/good.json")
    got = parse(text)
    expected = parse((VECTORS / "good.expected.txt").read_text())
    assert got == expected
    # The counter keeps its configured name: no `_total` appended.
    assert 'example_value_active{environment="beta",id="id-A"} 1' in text
    assert "# TYPE example_value_active counter" in text
    assert "probe_success 1" in text


async def test_readme_example_vectors(make_exporter, vectors_server, tmp_path):
    cfg = migrated("examples.config.yml", tmp_path)
    got = values(parse(await probe(make_exporter, cfg, vectors_server, "/data.json")))
    got |= values(parse(await probe(make_exporter, cfg, vectors_server, "/animals.json", module="animals")))
    expected = values(parse((VECTORS / "examples.expected.txt").read_text()))
    assert got == expected


async def test_camelcase_epochtimestamp_is_applied_with_a_warning(make_exporter, vectors_server, tmp_path):
    original = migrated("examples.config.yml", tmp_path)
    config = load_config(str(original))
    assert any("epochTimestamp" in w and "'epochtimestamp'" in w for w in config.warnings)
    text = await probe(make_exporter, original, vectors_server, "/data.json")
    # The example's path points inside each element, where there is no timestamp: that is reported, not hidden.
    assert 'probe_json_errors{reason="missing_path"} 1' in text and "probe_success 0" in text
    fixed = tmp_path / "config.yml"
    fixed.write_text(original.read_text().replace("'{ .timestamp }'", "'{^^.timestamp}'"))
    text = await probe(make_exporter, fixed, vectors_server, "/data.json")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("example_timestamped_value_count")]
    assert line.endswith(" 2 1657568506")  # milliseconds, as json_exporter reads epochtimestamp
    assert "probe_success 1" in text


async def test_duplicate_label_sets_keep_the_first_and_are_counted(make_exporter, vectors_server, tmp_path):
    text = await probe(make_exporter, migrated("good.config.yml", tmp_path), vectors_server, "/repeat.json")
    assert 'example_value_count{environment="beta",id="id-C"} 3\n' in text
    assert 'example_value_count{environment="beta",id="id-C"} 4' not in text
    assert "probe_json_duplicate_samples 3" in text  # count, active and boolean of the second id-C


def test_nan_for_null_and_bool_strings():
    from exporter.jsonexp.path import to_number

    assert math.isnan(to_number(None))
    assert to_number("TRUE") == 1.0 and to_number("f") == 0.0 and to_number("1.5e3") == 1500.0
    with pytest.raises(ValueError, match="cannot convert a string of 5 characters to a number"):
        to_number("GREEN")


async def test_readme_scrape_config_with_a_real_prometheus(make_exporter, vectors_server, tmp_path):
    """The README's /probe scrape config, relabelling and all, scraped by Debian's Prometheus."""
    require_binary("prometheus")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(scrape_configs:\n  - job_name: json\n.*?)```", readme, re.S)
    assert block, "README lost its /probe scrape config"
    (job,) = yaml.safe_load(block.group(1))["scrape_configs"]
    client = await make_exporter(load_config(str(migrated("good.config.yml", tmp_path))))
    target = str(vectors_server.make_url("/good.json"))
    job["static_configs"] = [{"targets": [target]}]  # the README's example hosts, pointed at loopback
    (to_exporter,) = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    to_exporter["replacement"] = f"127.0.0.1:{client.port}"
    async with real_prometheus(tmp_path, {}, [job]) as prom, aiohttp.ClientSession() as session:
        result: list[dict] = []
        async with asyncio.timeout(60):
            while not result:
                await asyncio.sleep(0.5)
                try:
                    async with session.get(f"{prom.base}/api/v1/query", params={"query": "example_value_count"}) as r:
                        result = (await r.json())["data"]["result"]
                except aiohttp.ClientConnectionError:
                    prom.assert_alive()
        got = {s["metric"]["id"]: float(s["value"][1]) for s in result}
        assert got == {"id-A": 1.0, "id-C": 3.0}
        assert {s["metric"]["instance"] for s in result} == {target}  # relabelled to the probed URL
        async with session.get(f"{prom.base}/api/v1/query", params={"query": "probe_success"}) as r:
            (success,) = (await r.json())["data"]["result"]
        assert success["metric"]["job"] == "json" and float(success["value"][1]) == 1.0
