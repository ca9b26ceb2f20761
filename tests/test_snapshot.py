"""Snapshot state transitions (pure), the store's change notification, and poll backoff."""

from __future__ import annotations

import asyncio

from exporter.horizon import parse_reading
from exporter.mapping import Fixed, map_reading
from exporter.poller import backoff_delay
from exporter.snapshot import PollOutcome, TargetError, TargetState, advance, expire
from exporter.store import SnapshotStore
from tests.payloads import topology_a


def ok(at: float) -> PollOutcome:
    reading = parse_reading(*topology_a())
    return PollOutcome(at, 0.01, reading=reading, microservices=map_reading(reading, Fixed("orders")))


def fail(at: float, reason: str = "http_500") -> PollOutcome:
    return PollOutcome(at, 0.01, error=TargetError(reason, "boom"))


EMPTY = TargetState(name="orders", url="http://o/horizon", fixed_microservice="orders")


def test_success_then_failure_keeps_values_and_counts_reasons():
    s = advance(EMPTY, ok(100.0), stale_after=60)
    assert s.up and s.last_success_at == 100.0 and s.microservices["orders"].processes == 9.0
    s = advance(s, fail(101.0), 60)
    s = advance(s, fail(102.0, "timeout"), 60)
    assert not s.up and s.stale and s.microservices["orders"].processes == 9.0
    assert dict(s.errors_total) == {"http_500": 1, "timeout": 1}
    assert s.attempts == 3


def test_values_expire_after_stale_after():
    s = advance(advance(EMPTY, ok(100.0), 10), fail(105.0), 10)
    assert expire(s, 109.0, 10) is s
    gone = expire(s, 110.0, 10)
    assert gone.microservices == {} and gone.stats is None and not gone.stale
    assert advance(s, fail(111.0), 10).microservices == {}


def test_never_healthy_has_no_values():
    s = advance(EMPTY, fail(1.0), 60)
    assert s.microservices == {} and not s.stale and s.last_success_at is None


async def test_store_wakes_waiters_and_versions_increase():
    store = SnapshotStore({"orders": EMPTY}, clock=lambda: 0.0)
    v = store.current.version
    waiter = asyncio.create_task(store.wait_for_change(v, 5))
    await asyncio.sleep(0)
    assert not waiter.done()
    store.update(advance(EMPTY, ok(1.0), 60))
    snap = await waiter
    assert snap.version == v + 1 and snap.microservices["orders"].values.processes == 9.0
    assert store.current.version == v + 1


async def test_store_close_releases_waiters():
    store = SnapshotStore({"orders": EMPTY}, clock=lambda: 0.0)
    waiter = asyncio.create_task(store.wait_for_change(store.current.version, 30))
    await asyncio.sleep(0)
    store.close()
    assert (await waiter).version == 1


def test_first_target_wins_a_duplicate_microservice():
    a = advance(TargetState("a", "http://a", "orders"), ok(1.0), 60)
    b = advance(TargetState("b", "http://b", "orders"), ok(1.0), 60)
    store = SnapshotStore({"a": a, "b": b}, clock=lambda: 0.0)
    assert store.current.microservices["orders"].target == "a"
    assert store.current.duplicate_microservices == ("orders",)


def test_backoff_doubles_and_caps():
    mid = lambda: 0.5  # noqa: E731 - no jitter at the midpoint
    assert backoff_delay(1.0, 0, 30, mid) == 1.0
    assert [backoff_delay(1.0, n, 30, mid) for n in (1, 2, 3, 4, 5, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert 27.0 <= backoff_delay(1.0, 10, 30, lambda: 0.0) <= 33.0
