"""horizon_scaler_* on the scaler's /metrics: per-trigger series bounded by what KEDA asks and removed when it stops
asking, pushes and their latency from the change, the source's age and freshness, and refused calls by reason
(the same codes the audit trail records)."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.audit import AuditLog
from external_scaler.cli import FLAGS
from external_scaler.metadata import Trigger
from external_scaler.metrics import REFUSALS, TRIGGER_LABELS, ScalerMetrics, TriggerBook
from external_scaler.readings import Unavailable
from external_scaler.snapshot_source import SnapshotSource
from external_scaler.source import Source
from external_scaler.tenants import TenantsFile
from tests.conftest import require_binary
from tests.scaler_fixtures import (
    BrokenSource,
    FakeExporter,
    Scaler,
    microservice,
    ref,
    scaler_with_metrics,
    scrape,
    wait_until,
)


class Clock:
    """Monotonic time moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ORDERS = Trigger("orders")
KEY = ("shop", "orders-so", "orders", "processes", "")


# --- TriggerBook: what is kept, and for how long (pure) ------------------------------------------------------


def test_a_trigger_not_asked_for_ten_minutes_is_forgotten():
    clock = Clock()
    book = TriggerBook(clock=clock)
    book.record(KEY, ORDERS, 9.0)
    clock.now += 600
    assert book.prune() == 0 and KEY in book.entries
    clock.now += 0.5
    assert book.prune() == 1 and not book.entries


def test_a_slow_poller_keeps_its_series_for_three_of_its_intervals():
    clock = Clock()
    book = TriggerBook(clock=clock)
    book.record(KEY, ORDERS, 9.0)
    clock.now += 500  # a ScaledObject polled every 500 s (pollingInterval: 500)
    book.record(KEY, ORDERS, 9.0)
    clock.now += 1499
    assert book.prune() == 0, "3 × 500 s, not the 600 s floor"
    clock.now += 2
    assert book.prune() == 1


def test_a_failed_call_keeps_the_series_without_changing_them():
    clock = Clock()
    book = TriggerBook(clock=clock)
    book.record(KEY, ORDERS, 9.0).active = True
    for _ in range(3):
        clock.now += 300
        book.touch(KEY)  # the read failed: unavailable, say
    assert book.prune() == 0
    assert (book.entries[KEY].value, book.entries[KEY].active) == (9.0, True)
    book.touch(("shop", "other", "orders", "processes", ""))
    assert list(book.entries) == [KEY], "a touch never creates series"


def test_at_most_max_triggers_are_kept_and_the_least_recently_asked_goes_first():
    book = TriggerBook(clock=Clock(), max_triggers=3)
    keys = [("shop", f"so-{i}", "orders", "processes", "") for i in range(4)]
    for key in keys[:3]:
        book.record(key, ORDERS, 1.0)
    book.touch(keys[0])
    book.record(keys[3], ORDERS, 1.0)
    assert list(book.entries) == [keys[2], keys[0], keys[3]]


# --- through a running scaler --------------------------------------------------------------------------------


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(
        orders=microservice(9.0, queues={"default": {"length": 42.0, "wait_seconds": 12.0, "processes": 6.0}}),
        billing=microservice(None, up=False, target="billing"),
        shipping=microservice(4.0, fetched_at=time.time() - 60, up=False, stale=True, target="shipping"),
    )  # fmt: skip
    await fake.start()
    yield fake
    await fake.stop()


def _trigger_series(scraped, name: str) -> dict[tuple[str, ...], float]:  # type: ignore[no-untyped-def]
    return {tuple(s.labels[k] for k in TRIGGER_LABELS): s.value for s in scraped.samples(name)}


async def _get_metrics(scaler: Scaler, **meta: str) -> pb.MetricValue:
    spec = await scaler.stub.GetMetricSpec(ref(**meta))
    request = pb.GetMetricsRequest(scaledObjectRef=ref(**meta), metricName=spec.metricSpecs[0].metricName)
    return (await scaler.stub.GetMetrics(request)).metricValues[0]


async def test_per_trigger_series_show_value_threshold_mode_replicas_and_activity(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: source.fresh)
        assert (await scaler.stub.IsActive(ref(activationThreshold="8"))).result is True
        await _get_metrics(scaler, activationThreshold="8")
        queue = {"name": "queue-so", "metric": "queueLength", "queue": "default", "threshold": "20",
                 "thresholdMode": "average"}  # fmt: skip
        await _get_metrics(scaler, **queue)
        scraped = await scrape(url)
    whole = ("shop", "orders-so", "orders", "processes", "")
    by_queue = ("shop", "queue-so", "orders", "queueLength", "default")
    assert _trigger_series(scraped, "horizon_scaler_trigger_value") == {whole: 9.0, by_queue: 42.0}
    assert _trigger_series(scraped, "horizon_scaler_trigger_threshold") == {whole: 8.0, by_queue: 20.0}
    assert _trigger_series(scraped, "horizon_scaler_trigger_activation_threshold") == {whole: 8.0, by_queue: 0.0}
    assert _trigger_series(scraped, "horizon_scaler_trigger_replicas_wanted") == {whole: 2.0, by_queue: 3.0}
    assert _trigger_series(scraped, "horizon_scaler_trigger_active") == {whole: 1.0}  # IsActive asked for it only
    modes = {
        (s.labels["scaledobject"], s.labels["mode"]): s.value for s in scraped.samples("horizon_scaler_trigger_mode")
    }
    assert modes == {("orders-so", "reached"): 1, ("orders-so", "average"): 0,
                     ("queue-so", "reached"): 0, ("queue-so", "average"): 1}  # fmt: skip
    assert scraped.value("horizon_scaler_triggers") == 2


async def test_series_follow_the_value_and_go_when_keda_stops_asking(exporter: FakeExporter):
    clock = Clock()
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    metrics = ScalerMetrics(TriggerBook(clock=clock))
    async with scaler_with_metrics(source, metrics) as (scaler, url):
        await wait_until(lambda: source.fresh)
        assert (await scaler.stub.IsActive(ref(activationThreshold="10"))).result is False
        assert (await scrape(url)).value("horizon_scaler_trigger_active", scaledobject="orders-so") == 0
        exporter.publish(orders=microservice(12.0))
        await wait_until(lambda: source.read_now(ORDERS) == 12.0)
        clock.now += 599
        assert (await scaler.stub.IsActive(ref(activationThreshold="10"))).result is True
        scraped = await scrape(url)
        assert scraped.value("horizon_scaler_trigger_active", scaledobject="orders-so") == 1
        assert scraped.value("horizon_scaler_trigger_value", scaledobject="orders-so") == 12
        clock.now += 3 * 599 + 1  # longer than three times the longest gap between its calls
        scraped = await scrape(url)
    assert scraped.samples("horizon_scaler_trigger_value") == []
    assert scraped.value("horizon_scaler_triggers") == 0


async def test_refusals_create_no_trigger_series_whatever_clients_invent(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: source.fresh)
        for i in range(30):
            for meta in ({"threshold": "x"}, {"microservice": f"ghost-{i}"}, {"microservice": "billing"}):
                with pytest.raises(grpc.aio.AioRpcError):
                    await scaler.stub.IsActive(ref(name=f"so-{i}", namespace=f"ns-{i}", **meta))
        scraped = await scrape(url)
    assert scraped.value("horizon_scaler_triggers") == 0
    assert scraped.samples("horizon_scaler_trigger_value") == []
    refused = {
        (s.labels["code"], s.labels["reason"]): s.value for s in scraped.samples("horizon_scaler_refused_calls_total")
    }
    assert refused == {("INVALID_ARGUMENT", "metadata"): 30, ("NOT_FOUND", "unknown_microservice"): 30,
                       ("UNAVAILABLE", "unavailable"): 30}  # fmt: skip


async def test_metadata_values_never_reach_the_metrics(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: source.fresh)
        secret = "s3cr3t-canary-value"
        meta = {"scalerAddress": f"{secret}.svc:6000", "microserviceFromEnv": "orders"}
        request = pb.ScaledObjectRef(name="orders-so", namespace="shop", scalerMetadata=meta)
        assert (await scaler.stub.IsActive(request)).result is True
        with pytest.raises(grpc.aio.AioRpcError):
            await scaler.stub.IsActive(ref(threshold=secret))
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            text = await resp.text()
    assert secret not in text
    assert 'microservice="orders"' in text


async def test_every_refusal_is_counted_with_the_code_the_audit_trail_records(tmp_path: Path, exporter: FakeExporter):
    policy = tmp_path / "tenants.yml"
    policy.write_text("tenants:\n  shop:\n    namespaces: [shop]\n    microservices: [orders, billing, shipping]\n")
    trail = io.StringIO()
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    tenants = TenantsFile(str(policy), check_every=0)
    async with scaler_with_metrics(source, tenants=tenants, audit=AuditLog(trail)) as (scaler, url):
        await wait_until(lambda: source.fresh)
        stub = scaler.stub
        calls = {  # made one at a time: a gRPC call starts when it is made
            "metadata": lambda: stub.IsActive(ref(threshold="eight")),
            "tenancy": lambda: stub.IsActive(ref(namespace="acme")),
            "unknown_queue": lambda: stub.IsActive(ref(metric="queueLength", queue="sms")),
            "unknown_metric": lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="nope")),
            "stale": lambda: stub.IsActive(ref(microservice="shipping")),
            "unavailable": lambda: stub.IsActive(ref(microservice="billing")),
            "unimplemented": lambda: stub.StreamMetricSpec(ref()).read(),
        }
        for call in calls.values():
            with pytest.raises(grpc.aio.AioRpcError):
                await call()
        scraped = await scrape(url)
    async with scaler_with_metrics(BrokenSource()) as (broken, broken_url):
        with pytest.raises(grpc.aio.AioRpcError):
            await broken.stub.IsActive(ref())
        internal = await scrape(broken_url)
    counted = {s.labels["reason"]: (s.labels["rpc"], s.labels["code"], s.value)
               for s in scraped.samples("horizon_scaler_refused_calls_total")}  # fmt: skip
    audited = [json.loads(line) for line in trail.getvalue().splitlines()]
    audited = [(r["rpc"], r["code"]) for r in audited if r["event"] == "refused"]
    assert [counted[reason][:2] for reason in calls] == audited
    assert all(count == 1 for _, _, count in counted.values())
    assert {reason: code for reason, (_, code, _) in counted.items()} == {r: REFUSALS[r] for r in calls}
    assert internal.value("horizon_scaler_refused_calls_total", reason="internal") == 1
    assert internal.value("horizon_scaler_refused_calls_total", reason="internal", code="INTERNAL") == 1


# --- streams, pushes and their latency -----------------------------------------------------------------------


class _Manual(Source):
    """A source the test drives: `value` and `fresh` by hand; a read takes `delay` seconds."""

    description = "manual"

    def __init__(self) -> None:
        super().__init__()
        self.value: float | None = 3.0
        self.fresh_flag = True
        self.last_answer: float | None = time.monotonic()
        self.delay = 0.0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def fresh(self) -> bool:
        return self.fresh_flag

    @property
    def age(self) -> float | None:
        return None if self.last_answer is None else time.monotonic() - self.last_answer

    async def read(self, trigger: Trigger) -> float:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.value is None:
            raise Unavailable("no value")
        return self.value

    def change(self, value: float | None) -> None:
        self.value = value
        self.changes.publish()


async def test_push_latency_runs_from_the_change_to_the_written_message():
    source = _Manual()
    async with scaler_with_metrics(source, heartbeat=30.0) as (scaler, url):
        stream = scaler.stub.StreamIsActive(ref(activationThreshold="5"))
        assert (await stream.read()).result is False
        source.delay = 0.1  # the scaler takes 100 ms between the change and the push
        source.change(9.0)
        assert (await asyncio.wait_for(stream.read(), 5)).result is True
        source.delay = 0.0
        source.change(6.0)  # same decision: no push
        source.change(1.0)
        assert (await asyncio.wait_for(stream.read(), 5)).result is False
        scraped = await scrape(url)
        assert scraped.value("horizon_scaler_open_streams") == 1
        stream.cancel()
        await wait_until(lambda: scaler.server.servicer.open_streams == 0)
        assert (await scrape(url)).value("horizon_scaler_open_streams") == 0
    pushes = {s.labels["reason"]: s.value for s in scraped.samples("horizon_scaler_pushes_total")}
    assert pushes == {"first": 1, "change": 2, "heartbeat": 0}
    latency = {s.labels["le"]: s.value for s in scraped.samples("horizon_scaler_push_latency_seconds_bucket")}
    assert scraped.value("horizon_scaler_push_latency_seconds_count") == 2
    assert latency["0.05"] == 1, "the quick push"
    assert latency["0.1"] == 1 and latency["0.25"] == 2, "the push 100 ms after its change"
    assert 0.1 <= scraped.value("horizon_scaler_push_latency_seconds_sum") < 0.5  # type: ignore[operator]


async def test_heartbeats_are_counted_apart_and_a_silent_stream_keeps_its_series():
    source = _Manual()
    clock = Clock()
    metrics = ScalerMetrics(TriggerBook(clock=clock))
    async with scaler_with_metrics(source, metrics, heartbeat=0.1) as (scaler, url):
        stream = scaler.stub.StreamIsActive(ref())
        for _ in range(3):
            assert (await asyncio.wait_for(stream.read(), 5)).result is True
        source.change(None)  # unavailable: the stream says nothing, but KEDA is still asking
        clock.now += 500
        await asyncio.sleep(0.3)
        clock.now += 500
        scraped = await scrape(url)
        stream.cancel()
    assert scraped.value("horizon_scaler_pushes_total", reason="heartbeat") >= 2  # type: ignore[operator]
    assert scraped.value("horizon_scaler_trigger_value", scaledobject="orders-so") == 3.0


async def test_source_freshness_age_and_changes():
    source = _Manual()
    async with scaler_with_metrics(source) as (_, url):
        scraped = await scrape(url)
        assert scraped.value("horizon_scaler_source_fresh") == 1
        assert 0 <= scraped.value("horizon_scaler_source_age_seconds") < 5  # type: ignore[operator]
        assert scraped.value("horizon_scaler_source_changes_total") == 0
        source.fresh_flag, source.last_answer = False, time.monotonic() - 42
        source.change(1.0)
        source.change(2.0)
        scraped = await scrape(url)
        assert scraped.value("horizon_scaler_source_fresh") == 0
        assert 42 <= scraped.value("horizon_scaler_source_age_seconds") < 50  # type: ignore[operator]
        assert scraped.value("horizon_scaler_source_changes_total") == 2
        source.last_answer = None
        assert (await scrape(url)).samples("horizon_scaler_source_age_seconds") == []


async def test_family_types_and_help_are_declared():
    async with scaler_with_metrics(_Manual()) as (scaler, url):
        await scaler.stub.IsActive(ref())
        scraped = await scrape(url)
    types = {name: f.type for name, f in scraped.families.items() if name.startswith("horizon_scaler_")}
    assert types == {
        "horizon_scaler_open_streams": "gauge",
        "horizon_scaler_pushes": "counter",
        "horizon_scaler_push_latency_seconds": "histogram",
        "horizon_scaler_refused_calls": "counter",
        "horizon_scaler_source_fresh": "gauge",
        "horizon_scaler_source_age_seconds": "gauge",
        "horizon_scaler_source_changes": "counter",
        "horizon_scaler_exporter_fresh": "gauge",  # declared with no samples: this source follows no exporter
        "horizon_scaler_exporter_age_seconds": "gauge",
        "horizon_scaler_triggers": "gauge",
        "horizon_scaler_trigger_value": "gauge",
        "horizon_scaler_trigger_threshold": "gauge",
        "horizon_scaler_trigger_activation_threshold": "gauge",
        "horizon_scaler_trigger_mode": "gauge",
        "horizon_scaler_trigger_active": "gauge",
        "horizon_scaler_trigger_replicas_wanted": "gauge",
    }
    assert all(f.documentation for f in scraped.families.values())
    assert "process_resident_memory_bytes" in {s.name for f in scraped.families.values() for s in f.samples}


# --- the documentation lists what is served ------------------------------------------------------------------


def _documented_metrics() -> dict[str, str]:
    """name -> type of every row of docs/scaler.md's "Metrics" tables."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "scaler.md").read_text()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `((?:grpc_server|horizon_scaler)_\w+)` \| (\w+) \|", section, re.M))


async def test_docs_list_every_family_served_with_its_type(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: source.fresh)
        await scaler.stub.IsActive(ref())
        await _get_metrics(scaler)
        scraped = await scrape(url)
    served = {
        (f"{name}_total" if family.type == "counter" else name): family.type
        for name, family in scraped.families.items()
        if name.startswith(("grpc_server_", "horizon_scaler_"))
    }
    assert _documented_metrics() == served


def test_docs_list_every_flag_with_its_env_var():
    text = (Path(__file__).resolve().parent.parent / "docs" / "scaler.md").read_text()
    rows = dict(re.findall(r"^\| `(--[a-z-]+)[^`]*` \| `(HORIZON_SCALER_\w+)` \|", text, re.M))
    assert rows == {flag: var for flag, var, _, _ in FLAGS}


async def test_promtool_finds_nothing_to_lint(exporter: FakeExporter):
    promtool = require_binary("promtool")
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: source.fresh)
        await scaler.stub.IsActive(ref())
        await _get_metrics(scaler)
        with pytest.raises(grpc.aio.AioRpcError):
            await scaler.stub.IsActive(ref(threshold="x"))
        stream = scaler.stub.StreamIsActive(ref())
        await stream.read()
        exporter.publish(orders=microservice(0.0))
        await stream.read()
        stream.cancel()
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            text = await resp.text()
    assert "horizon_scaler_push_latency_seconds_bucket" in text and "grpc_server_handled_total" in text
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_readme_names_only_families_the_docs_list():
    """README's Observability table abbreviates docs/scaler.md's; every family it names must exist there."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("\n## Observability\n", 1)[1].split("\n## ", 1)[0]
    documented = set(_documented_metrics())
    named: set[str] = set()
    for cell in re.findall(r"^  \| (`(?:grpc_server|horizon_scaler)_[^|]+`) \|", section, re.M):
        names = re.findall(r"`([\w…]+)`", cell)
        prefix = names[0].rsplit("_", 1)[0] if "…" in cell else ""
        for name in names:
            named.add(prefix + name[1:] if name.startswith("…") else name)
    assert named and named <= documented, named - documented
