"""--max-connection-age: clients are made to reconnect (so KEDA re-resolves DNS), streams end cleanly before the cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from external_scaler.snapshot_source import SnapshotSource
from tests.scaler_fixtures import FakeExporter, microservice, ref, running_scaler, wait_until

READY = grpc.ChannelConnectivity.READY


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0))
    await fake.start()
    yield fake
    await fake.stop()


async def _left_ready(channel: grpc.aio.Channel) -> None:
    """Until the channel's connection goes away (the server's GOAWAY makes it IDLE)."""
    async with asyncio.timeout(15):
        while channel.get_state() == READY:
            await channel.wait_for_state_change(READY)


async def test_a_connection_past_the_max_age_is_asked_to_reconnect(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, 10, backoff_max=0.2)
    async with running_scaler(source, max_connection_age=1.0) as scaler:
        await wait_until(lambda: source.fresh)
        assert (await scaler.stub.IsActive(ref())).result is True
        assert scaler.channel.get_state() == READY
        await _left_ready(scaler.channel)
        assert (await scaler.stub.IsActive(ref())).result is True  # over a new connection
        assert scaler.channel.get_state() == READY


async def test_a_stream_outlives_the_goaway_within_the_grace_and_ends_with_ok(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, 10, backoff_max=0.2)
    async with running_scaler(source, heartbeat=0.2, max_connection_age=1.0, max_connection_age_grace=60.0,
                              stream_max_age=4.0) as scaler:  # fmt: skip
        await wait_until(lambda: source.fresh)
        stream = scaler.stub.StreamIsActive(ref())
        assert (await asyncio.wait_for(stream.read(), 5)).result is True
        await _left_ready(scaler.channel)
        # The connection has had its GOAWAY; the stream on it goes on (heartbeats) until it ends itself.
        assert (await asyncio.wait_for(stream.read(), 5)).result is True
        async with asyncio.timeout(15):
            while (message := await stream.read()) is not grpc.aio.EOF:
                assert message.result is True
        assert await stream.code() == grpc.StatusCode.OK


async def test_by_default_streams_end_with_ok_before_the_grace_cuts_them(exporter: FakeExporter):
    # Cut by the grace, KEDA would see UNAVAILABLE and wait 2, 4, ... 60 s before reopening; after OK, 2 s.
    source = SnapshotSource(exporter.url, 10, backoff_max=0.2)
    async with running_scaler(source, heartbeat=0.2, max_connection_age=1.0) as scaler:
        await wait_until(lambda: source.fresh)
        for _ in range(2):  # and again on the next connection
            stream = scaler.stub.StreamIsActive(ref())
            async with asyncio.timeout(15):
                while await stream.read() is not grpc.aio.EOF:
                    pass
            assert await stream.code() == grpc.StatusCode.OK, await stream.details()
