"""StreamIsActive: pushes on change, heartbeats, stays silent instead of guessing, leaks nothing, ends on stop."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.scaler_fixtures import FakeExporter, Scaler, microservice, ref, scaler_on


async def silent_for(stream: grpc.aio.UnaryStreamCall, seconds: float) -> asyncio.Task:
    """Assert nothing arrives for `seconds`; return the still-pending read (cancelling it would cancel the RPC)."""
    pending = asyncio.ensure_future(stream.read())
    done, _ = await asyncio.wait({pending}, timeout=seconds)
    assert not done, f"unexpected message {pending.result()!r}"
    return pending


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(3.0), billing=microservice(None, up=False, target="billing"))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def scaler(exporter: FakeExporter) -> AsyncIterator[Scaler]:
    async with scaler_on(exporter, heartbeat=30.0) as s:
        yield s


async def test_pushes_true_soon_after_the_snapshot_flips_activation(exporter: FakeExporter, scaler: Scaler):
    stream = scaler.stub.StreamIsActive(ref(activationThreshold="8"))
    assert (await stream.read()).result is False
    changed = time.perf_counter()
    exporter.publish(orders=microservice(9.0))
    assert (await asyncio.wait_for(stream.read(), 5)).result is True
    assert time.perf_counter() - changed < 1.0  # goal 100 ms; bench/scaler_push.py measures the real figure
    exporter.publish(orders=microservice(2.0))
    assert (await asyncio.wait_for(stream.read(), 5)).result is False
    stream.cancel()


async def test_unchanged_decisions_are_not_repeated_before_the_heartbeat(exporter: FakeExporter, scaler: Scaler):
    stream = scaler.stub.StreamIsActive(ref())
    assert (await stream.read()).result is True
    for processes in (4.0, 5.0, 6.0):
        exporter.publish(orders=microservice(processes))
    await silent_for(stream, 0.3)
    stream.cancel()


async def test_heartbeat_resends_the_current_state(exporter: FakeExporter):
    async with scaler_on(exporter, heartbeat=0.1) as scaler:
        stream = scaler.stub.StreamIsActive(ref())
        results = [(await asyncio.wait_for(stream.read(), 5)).result for _ in range(4)]
        stream.cancel()
    assert results == [True] * 4


async def test_says_nothing_while_unavailable_then_pushes_once_data_arrives(exporter: FakeExporter, scaler: Scaler):
    stream = scaler.stub.StreamIsActive(ref(microservice="billing"))
    pending = await silent_for(stream, 0.3)
    exporter.publish(billing=microservice(1.0, target="billing"))
    assert (await asyncio.wait_for(pending, 5)).result is True
    stream.cancel()


async def test_stop_ends_open_streams_with_ok(exporter: FakeExporter):
    async with scaler_on(exporter, heartbeat=30.0) as scaler:
        stream = scaler.stub.StreamIsActive(ref())
        assert (await stream.read()).result is True
        await scaler.server.stop(5.0)
        assert await asyncio.wait_for(stream.read(), 5) is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK


async def test_a_thousand_open_cancel_cycles_leave_no_tasks_or_memory_behind(scaler: Scaler):
    servicer = scaler.server.servicer

    async def cycle(n: int) -> None:
        for _ in range(n):
            stream = scaler.stub.StreamIsActive(ref())
            await stream.read()
            stream.cancel()
        async with asyncio.timeout(10):
            while servicer.open_streams:
                await asyncio.sleep(0.01)

    await cycle(50)  # warm up channel, caches and allocator pools
    gc.collect()
    tasks_before = len(asyncio.all_tasks())
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await cycle(1000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert servicer.open_streams == 0
    # grpc.aio finishes a cancelled call's server task a moment after the stream is gone; a leak stays for good.
    async with asyncio.timeout(5):
        while len(asyncio.all_tasks()) > tasks_before:
            await asyncio.sleep(0.05)
    assert growth < 1_000_000, f"{growth} bytes retained after 1,000 cycles"
