"""`python -m external_scaler.watch`: a real subprocess against a running scaler prints one line per tick."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from external_scaler.watch import Tick, format_line
from tests.scaler_fixtures import FakeExporter, Scaler, microservice, scaler_on

LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<rest>.*)$")


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def scaler(exporter: FakeExporter) -> AsyncIterator[Scaler]:
    async with scaler_on(exporter) as s:
        yield s


async def _watch(address: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "external_scaler.watch", "--scaler", address, "--interval", "0.2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _lines(address: str, *args: str) -> tuple[int, list[str], str]:
    """Run to completion (`--count` bounds it); the lines without their time, and stderr."""
    proc = await _watch(address, *args)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = [LINE.match(line) for line in out.decode().splitlines()]
    assert all(lines), out.decode()
    return proc.returncode or 0, [m["rest"] for m in lines if m], err.decode()


def _values(line: str) -> str:
    return line.split("  [stream: ")[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["orders", "--threshold", "8"],
            "orders processes=9 target=8 (reached mode → metric 2 / target 1) active=True",
        ),
        (
            ["orders", "--threshold", "4", "--mode", "average", "--activation-threshold", "9"],
            "orders processes=9 target=4 (average mode → metric 9 / target 4) active=False",
        ),
        (
            ["orders", "--metric", "queueLength", "--queue", "default", "--threshold", "20"],
            "orders queueLength[default]=42 target=20 (reached mode → metric 3 / target 1) active=True",
        ),
    ],
)
async def test_prints_the_value_what_keda_gets_and_the_activation_each_tick(
    scaler: Scaler, args: list[str], expected: str
):
    code, lines, err = await _lines(scaler.address, *args, "--count", "3")
    assert (code, err) == (0, "")
    assert [_values(line) for line in lines] == [expected] * 3
    active = "True" in expected.rsplit("active=", 1)[1]
    assert lines[-1].endswith(f"  [stream: {'active' if active else 'inactive'}]")


async def test_follows_a_change_and_ctrl_c_exits_0(scaler: Scaler, exporter: FakeExporter):
    proc = await _watch(scaler.address, "orders")
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert "orders processes=9 target=8 (reached mode → metric 2 / target 1)" in first.decode()
        exporter.publish(orders=microservice(17.0))
        async with asyncio.timeout(20):
            while "orders processes=17 target=8 (reached mode → metric 3 / target 1)" not in (
                line := (await proc.stdout.readline()).decode()
            ):
                assert line, "watch ended early"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert (await proc.stderr.read()).decode() == ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_grpc_errors_are_one_line_each_with_code_and_details(scaler: Scaler):
    code, lines, err = await _lines(scaler.address, "payments", "--count", "2")
    assert (code, err) == (0, "")
    assert [_values(line) for line in lines] == [
        "payments processes error: NOT_FOUND: ScaledObject local/watch: "
        "unknown microservice 'payments' (the exporter reports: orders)"
    ] * 2


async def test_an_absent_scaler_is_unavailable_not_a_traceback():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, lines, err = await _lines(f"127.0.0.1:{port}", "orders", "--count", "2")
    assert (code, err) == (0, "")
    assert len(lines) == 2
    assert all(line.startswith("orders processes error: UNAVAILABLE: ") for line in lines), lines
    assert lines[-1].endswith("  [stream: UNAVAILABLE]")


def test_the_line_format():
    tick = Tick(raw=9, threshold=8, mode="reached", metric=2, target=1, active=True)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d orders processes=9 target=8 \(reached mode → metric 2 / target 1\) active=True  "
        r"\[stream: active\]",
        format_line(0.0, "orders processes", tick, "active"),
    )
