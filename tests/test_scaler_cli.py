"""`horizon-scaler`: flags and env vars validated up front; a real process ends streams cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from external_scaler.cli import make_source, parse_args
from external_scaler.fanin import FanInSource
from external_scaler.prometheus_source import PrometheusSource
from external_scaler.snapshot_source import SnapshotSource
from tests.scaler_fixtures import FakeExporter, microservice, ref, scrape


def test_defaults_are_the_documented_sidecar_setup():
    args = parse_args([], {})
    assert (args.listen, [s.url for s in args.exporter], args.prometheus, args.max_staleness) == (
        "0.0.0.0:6000", ["http://127.0.0.1:9108"], None, 10.0
    )  # fmt: skip
    assert (args.max_connection_age, args.resolve_interval) == (300.0, 10.0)
    assert isinstance(make_source(args), SnapshotSource)


def test_exporter_repeats_and_its_env_var_is_a_list():
    args = parse_args(["--exporter", "http://a:9108", "--exporter", "dns+https://shards.shop.svc:9108"], {})
    assert [(s.url, s.dns) for s in args.exporter] == [("http://a:9108", False), ("https://shards.shop.svc:9108", True)]
    source = make_source(args)
    assert isinstance(source, FanInSource) and sorted(source.followers) == ["http://a:9108"]  # dns+: once resolved
    env = {"HORIZON_SCALER_EXPORTER": "http://a:9108, http://b:9108", "HORIZON_SCALER_RESOLVE_INTERVAL": "30"}
    args = parse_args([], env)
    assert [s.url for s in args.exporter] == ["http://a:9108", "http://b:9108"]
    assert args.resolve_interval == 30.0
    assert [s.url for s in parse_args(["--exporter", "http://c:9108"], env).exporter] == ["http://c:9108"]
    assert isinstance(make_source(parse_args(["--exporter", "dns+http://shards:9108"], {})), FanInSource)
    assert parse_args(["--max-connection-age", "0"], {}).max_connection_age == 0.0  # off


def test_metrics_are_off_unless_an_address_is_given():
    assert parse_args([], {}).metrics_listen is None
    assert parse_args([], {"HORIZON_SCALER_METRICS_LISTEN": ""}).metrics_listen is None
    env = {"HORIZON_SCALER_METRICS_LISTEN": "0.0.0.0:9109"}
    assert parse_args([], env).metrics_listen == ("0.0.0.0", 9109)
    assert parse_args(["--metrics-listen", "[::1]:9200"], env).metrics_listen == ("::1", 9200)


def test_env_vars_set_defaults_and_flags_win():
    env = {"HORIZON_SCALER_MAX_STALENESS": "30", "HORIZON_SCALER_PROMETHEUS": "http://prometheus:9090"}
    args = parse_args(["--max-staleness", "45"], env)
    assert args.max_staleness == 45.0
    assert isinstance(make_source(args), PrometheusSource)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-staleness", "0"], "--max-staleness: expected a number of seconds > 0, got '0'"),
        (["--heartbeat", "soon"], "--heartbeat: expected a number of seconds > 0, got 'soon'"),
        (["--exporter", "127.0.0.1:9108"], "--exporter: expected an http(s) URL, got '127.0.0.1:9108'"),
        (["--exporter", "srv+http://shards:9108"], "--exporter: expected an http(s) URL, got 'srv+http://shards:9108'"),
        (["--exporter", "http://a:1", "--exporter", "http://a:1/"], "--exporter: 'http://a:1/' is given twice"),
        (
            ["--exporter", "dns+https://shards:1", "--exporter", "http://b:1", "--exporter-ca", "ca.pem"],
            "--exporter-ca/--exporter-cert: the exporter URL must be https://, got 'http://b:1'",
        ),
        (["--resolve-interval", "0"], "--resolve-interval: expected a number of seconds > 0, got '0'"),
        (["--max-connection-age", "-1"], "--max-connection-age: expected seconds ≥ 0 (0: never), got '-1'"),
        (["--max-connection-age", "nan"], "--max-connection-age: expected seconds ≥ 0 (0: never), got 'nan'"),
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key: expected both or neither"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca: needs --tls-cert and --tls-key too"),
        (["--log-level", "loud"], "--log-level: expected debug, info, warning or error, got 'loud'"),
        (
            ["--metrics-listen", "9109"],
            "--metrics-listen: expected HOST:PORT (e.g. 0.0.0.0:9109 or [::]:9109), got '9109'",
        ),
        (["--metrics-listen", "0.0.0.0:99999"], "--metrics-listen: expected HOST:PORT"),
        (["--metrics-listen", "::1:9109"], "--metrics-listen: expected HOST:PORT"),
        (["--metrics-listen", "[localhost]:9109"], "--metrics-listen: expected HOST:PORT"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv: list[str], message: str, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv, {})
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0))
    await fake.start()
    yield fake
    await fake.stop()


def _spawn(port: int, exporter: FakeExporter, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "external_scaler", "--listen", f"127.0.0.1:{port}", "--exporter", exporter.url,
             *extra],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _connected_stream(port: int) -> tuple[grpc.aio.Channel, grpc.aio.UnaryStreamCall]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.ExternalScalerStub(channel)
    async with asyncio.timeout(20):
        while True:
            try:
                await stub.IsActive(ref(), wait_for_ready=True)
                break
            except grpc.aio.AioRpcError as exc:  # started, but the first snapshot is not there yet
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                await asyncio.sleep(0.05)
    return channel, stub.StreamIsActive(ref())


async def test_sigterm_ends_streams_with_ok_and_exits_0(exporter: FakeExporter, tmp_path: Path):
    port = _free_port()
    proc = _spawn(port, exporter, tmp_path / "scaler.log")
    try:
        channel, stream = await _connected_stream(port)
        assert (await stream.read()).result is True
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(stream.read(), 10) is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK
        await channel.close()
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "ending streams and finishing in-flight calls" in (tmp_path / "scaler.log").read_text()


async def test_a_second_scaler_on_a_taken_port_exits_1(exporter: FakeExporter, tmp_path: Path):
    port = _free_port()
    first = _spawn(port, exporter, tmp_path / "first.log")
    try:
        channel, stream = await _connected_stream(port)
        stream.cancel()
        await channel.close()
        second = _spawn(port, exporter, tmp_path / "second.log")
        assert await asyncio.to_thread(second.wait, 20) == 1
        assert "cannot listen on 127.0.0.1:" in (tmp_path / "second.log").read_text()
    finally:
        first.terminate()
        first.wait(20)


async def test_metrics_listen_serves_the_metrics_of_the_running_process(exporter: FakeExporter, tmp_path: Path):
    port, metrics_port = _free_port(), _free_port()
    proc = _spawn(port, exporter, tmp_path / "scaler.log", f"--metrics-listen=127.0.0.1:{metrics_port}")
    try:
        channel, stream = await _connected_stream(port)
        assert (await stream.read()).result is True
        scraped = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        stream.cancel()
        await channel.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    unary = {"grpc_type": "unary", "grpc_service": "externalscaler.ExternalScaler", "grpc_method": "IsActive"}
    assert scraped.value("grpc_server_handled_total", **unary, grpc_code="OK") >= 1  # type: ignore[operator]
    assert scraped.value("horizon_scaler_open_streams") == 1
    assert scraped.value("horizon_scaler_trigger_active", scaledobject="orders-so") == 1
    assert f"serving /metrics on 127.0.0.1 (port {metrics_port})" in (tmp_path / "scaler.log").read_text()


async def test_a_taken_metrics_port_exits_1_naming_the_flag(exporter: FakeExporter, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics_port = taken.getsockname()[1]
        proc = _spawn(_free_port(), exporter, tmp_path / "scaler.log", "--metrics-listen", f"127.0.0.1:{metrics_port}")
        try:
            assert await asyncio.to_thread(proc.wait, 20) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert f"--metrics-listen: cannot listen on 127.0.0.1:{metrics_port}" in (tmp_path / "scaler.log").read_text()


def test_credentials_in_an_exporter_url_are_refused_without_echo_even_with_a_slash():
    for value in ("http://admin:pa/ss@exporter:9108", "dns+http://admin:p#ss@svc:9108"):
        run = subprocess.run([str(Path(sys.executable).parent / "horizon-scaler"), "--exporter", value],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert run.returncode == 2 and "credentials inside the URL are refused" in run.stderr
        assert "pa/ss" not in run.stderr and "p#ss" not in run.stderr
