"""PrometheusSource follows on a timer and answers from memory: queries per tick, never per RPC; bounded, forgetting."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.metadata import Trigger
from external_scaler.prometheus_source import PrometheusSource
from external_scaler.readings import Stale, Unavailable
from tests.conftest import free_port
from tests.scaler_fixtures import ref, running_scaler

_MICROSERVICE = re.compile(r'microservice="([^"]*)"')
NEVER = 3600.0  # an interval whose timer never fires during a test: the test drives the ticks with refresh()


class Clock:
    """Wall time the test moves by hand (ages samples and idle triggers)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class FakePrometheus:
    """Stands in for Prometheus' `/-/ready` and `/api/v1/query` on loopback: one sample per microservice, answered
    in Prometheus' instant-vector shape; every query is counted per microservice."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.samples: dict[str, tuple[float, float]] = {}  # microservice → (value, sample timestamp)
        self.queries: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.hold_for = 0
        self.server: TestServer | None = None

    def set(self, microservice: str, value: float) -> None:
        """A new sample, scraped now."""
        self.samples[microservice] = (value, self.clock())

    def hold(self, n: int) -> None:
        """Answer nothing until `n` queries are in flight at once (then everything, from then on)."""
        self.gate.clear()
        self.hold_for = n
        self.peak_in_flight = 0

    async def _query(self, request: web.Request) -> web.Response:
        query = request.query["query"]
        match = _MICROSERVICE.search(query)
        assert match is not None, query
        microservice = match.group(1)
        self.queries[microservice] += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.in_flight >= self.hold_for:
                self.gate.set()
            await self.gate.wait()
            result: list[dict[str, Any]] = []
            if microservice in self.samples:
                value, sampled_at = self.samples[microservice]
                number = sampled_at if query.startswith("min(timestamp(") else value
                result = [{"metric": {}, "value": [self.clock(), repr(number)]}]
            return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})
        finally:
            self.in_flight -= 1

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="Prometheus Server is Ready.\n")

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_get("/api/v1/query", self._query)
        app.router.add_get("/-/ready", self._ready)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return f"http://127.0.0.1:{self.server.port}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        await self.server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def prometheus(clock: Clock) -> AsyncIterator[tuple[FakePrometheus, str]]:
    fake = FakePrometheus(clock)
    fake.set("orders", 3)
    async with fake as url:
        yield fake, url


@asynccontextmanager
async def following(url: str, clock: Clock, **kw: Any) -> AsyncIterator[PrometheusSource]:
    """A started PrometheusSource on `url` whose timer never fires unless `interval` is given."""
    source = PrometheusSource(url, max_staleness=10, clock=clock, **{"interval": NEVER, **kw})
    await source.start()
    try:
        yield source
    finally:
        await source.close()


async def test_repeated_rpcs_within_one_interval_query_prometheus_once(
    prometheus: tuple[FakePrometheus, str], clock: Clock
):
    fake, url = prometheus
    source = PrometheusSource(url, max_staleness=10, interval=NEVER, clock=clock)
    async with running_scaler(source) as scaler:
        r = ref(microservice="orders", thresholdMode="average")  # the raw value, for the assertion
        for _ in range(5):
            assert (await scaler.stub.IsActive(r)).result is True
            response = await scaler.stub.GetMetrics(
                pb.GetMetricsRequest(scaledObjectRef=r, metricName="horizon-orders-processes")
            )
            assert response.metricValues[0].metricValueFloat == 3.0
        stream = scaler.stub.StreamIsActive(r)
        assert (await stream.read()).result is True
        stream.cancel()
    # One on-demand evaluation (the value and the sample-age query) served all eleven answers.
    assert fake.queries == {"orders": 2}


async def test_concurrent_first_reads_share_one_evaluation(prometheus: tuple[FakePrometheus, str], clock: Clock):
    fake, url = prometheus
    async with following(url, clock) as source:
        values = await asyncio.gather(*(source.read(Trigger("orders")) for _ in range(10)))
    assert values == [3.0] * 10
    assert fake.queries == {"orders": 2}


async def test_a_change_in_prometheus_reaches_the_reader_after_the_next_tick(
    prometheus: tuple[FakePrometheus, str], clock: Clock
):
    fake, url = prometheus
    async with following(url, clock) as source:
        assert await source.read(Trigger("orders")) == 3.0
        fake.set("orders", 11)
        assert await source.read(Trigger("orders")) == 3.0  # from memory until the tick
        assert fake.queries == {"orders": 2}
        version = source.changes.version
        await source.refresh()
        assert source.changes.version > version  # the streams are woken
        assert await source.read(Trigger("orders")) == 11.0
        assert fake.queries == {"orders": 4}


async def test_an_unchanged_tick_wakes_no_stream(prometheus: tuple[FakePrometheus, str], clock: Clock):
    _, url = prometheus
    async with following(url, clock) as source:
        await source.read(Trigger("orders"))
        version = source.changes.version
        await source.refresh()
        assert source.changes.version == version


async def test_the_timer_follows_without_rpcs_and_wakes_the_stream(
    prometheus: tuple[FakePrometheus, str], clock: Clock
):
    fake, url = prometheus
    source = PrometheusSource(url, max_staleness=10, interval=0.05, clock=clock)
    async with running_scaler(source, heartbeat=NEVER) as scaler:
        stream = scaler.stub.StreamIsActive(ref(microservice="orders", activationThreshold="10"))
        assert (await stream.read()).result is False
        fake.set("orders", 11)
        assert (await asyncio.wait_for(stream.read(), 30)).result is True
        stream.cancel()
    assert fake.queries["orders"] >= 4  # the on-demand evaluation, then at least one tick's


async def test_a_sample_ageing_past_max_staleness_is_unavailable_between_ticks(
    prometheus: tuple[FakePrometheus, str], clock: Clock
):
    fake, url = prometheus
    async with following(url, clock) as source:
        assert await source.read(Trigger("orders")) == 3.0
        clock.now += 11
        with pytest.raises(Unavailable, match=r"^orders: newest sample is 11\.0s old \(max staleness 10s\)$"):
            await source.read(Trigger("orders"))
        fake.set("orders", 4)  # scraped again
        await source.refresh()
        assert await source.read(Trigger("orders")) == 4.0
    assert fake.queries == {"orders": 4}


async def test_a_failure_is_remembered_until_the_next_tick(prometheus: tuple[FakePrometheus, str], clock: Clock):
    fake, url = prometheus
    async with following(url, clock) as source:
        for _ in range(3):
            with pytest.raises(Unavailable, match="returned no series"):
                await source.read(Trigger("payments"))
        assert fake.queries["payments"] == 2
        fake.set("payments", 5)
        await source.refresh()
        assert await source.read(Trigger("payments")) == 5.0


async def test_a_forgotten_trigger_is_evaluated_on_demand_again(prometheus: tuple[FakePrometheus, str], clock: Clock):
    fake, url = prometheus
    async with following(url, clock, forget_after=60) as source:
        assert await source.read(Trigger("orders")) == 3.0
        clock.now += 61
        fake.set("orders", 7)
        await source.refresh()
        assert Trigger("orders") not in source.followed
        assert fake.queries == {"orders": 2}  # a forgotten trigger costs the tick nothing
        assert await source.read(Trigger("orders")) == 7.0
        assert Trigger("orders") in source.followed
    assert fake.queries == {"orders": 4}


async def test_a_trigger_asked_about_is_not_forgotten(prometheus: tuple[FakePrometheus, str], clock: Clock):
    fake, url = prometheus
    async with following(url, clock, forget_after=60) as source:
        for _ in range(3):
            await source.read(Trigger("orders"))
            clock.now += 40
            fake.set("orders", 3)
            await source.refresh()
        assert Trigger("orders") in source.followed
    assert fake.queries == {"orders": 8}  # one first evaluation, three ticks


def test_forgetting_defaults_to_ten_intervals_but_outlasts_keda_s_polling():
    assert PrometheusSource("http://p:9090", 10, interval=30).forget_after == 300
    assert PrometheusSource("http://p:9090", 10, interval=1).forget_after == 60


async def test_the_least_recently_asked_trigger_goes_first_beyond_max_triggers(
    prometheus: tuple[FakePrometheus, str], clock: Clock
):
    fake, url = prometheus
    for name in ("a", "b", "c"):
        fake.set(name, 1)
    async with following(url, clock, max_triggers=2) as source:
        await source.read(Trigger("a"))
        await source.read(Trigger("b"))
        await source.read(Trigger("a"))
        await source.read(Trigger("c"))
        assert source.followed == {Trigger("a"), Trigger("c")}


async def test_a_tick_queries_every_trigger_concurrently_but_bounded(clock: Clock):
    fake = FakePrometheus(clock)
    names = [f"svc-{i:02d}" for i in range(20)]
    for name in names:
        fake.set(name, 1)
    async with fake as url, following(url, clock, concurrency=3) as source:
        await asyncio.gather(*(source.read(Trigger(name)) for name in names))
        # Nothing is answered until three triggers' two queries are in flight together: a tick that queried one
        # trigger at a time would hang here.
        fake.hold(6)
        await asyncio.wait_for(source.refresh(), 30)
    assert fake.peak_in_flight == 6
    assert fake.queries == {name: 4 for name in names}


async def test_unreachable_prometheus_is_remembered_as_unavailable(clock: Clock):
    async with following(f"http://127.0.0.1:{free_port()}", clock) as source:
        assert not source.fresh
        for _ in range(2):
            with pytest.raises(Unavailable, match="unreachable"):
                await source.read(Trigger("orders"))


async def test_grpc_reports_a_remembered_failure_as_unavailable(prometheus: tuple[FakePrometheus, str], clock: Clock):
    _, url = prometheus
    source = PrometheusSource(url, max_staleness=10, interval=NEVER, clock=clock)
    async with running_scaler(source) as scaler:
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await scaler.stub.IsActive(ref(microservice="nobody"))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "returned no series" in (info.value.details() or "")


async def test_age_counts_from_the_last_ready_answer(prometheus: tuple[FakePrometheus, str], clock: Clock):
    async with following(prometheus[1], clock) as source:
        assert source.age == 0.0
        clock.now += 7
        assert source.age == 7.0
        await source.refresh()
        assert source.age == 0.0
    async with following(f"http://127.0.0.1:{free_port()}", clock) as never:
        assert never.age is None


async def test_an_old_sample_is_stale_a_missing_series_only_unavailable(
    prometheus: tuple[FakePrometheus, str], clock: Clock
):
    async with following(prometheus[1], clock) as source:
        await source.read(Trigger("orders"))
        clock.now += 11
        with pytest.raises(Stale):
            await source.read(Trigger("orders"))
        with pytest.raises(Unavailable) as info:
            await source.read(Trigger("nobody"))
        assert not isinstance(info.value, Stale)
