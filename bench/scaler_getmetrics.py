"""GetMetrics throughput at 50 in flight vs a bare grpc.aio unary server, and latency at 1 and 50 in flight.

Run: .venv/bin/python bench/scaler_getmetrics.py [--seconds 5]
Each server runs in its own process, and so does a stand-in snapshot API the scaler's real SnapshotSource
follows (as in the pod, where the exporter is another container); the client runs here, so both servers are
measured against the same client cost, alternating so that load from other processes hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

import grpc
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc

META = {"scalerAddress": "x:6000", "microservice": "orders", "activationThreshold": "0"}
REQUEST = pb.GetMetricsRequest(
    scaledObjectRef=pb.ScaledObjectRef(name="orders", namespace="shop", scalerMetadata=META),
    metricName="horizon-orders-processes",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bare(pb_grpc.ExternalScalerServicer):
    """The floor: a unary handler that builds the same answer as the scaler's, without looking anything up."""

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext) -> object:
        response = pb.GetMetricsResponse()
        response.metricValues.add(metricName=request.metricName, metricValue=2, metricValueFloat=2.0)
        return response


async def _snapshot_api(port: int) -> None:
    """A stand-in exporter in its own process, as in the pod: the long-poll waits, then a fresh document."""

    async def snapshot(request: web.Request) -> web.Response:
        if "after" in request.query:
            await asyncio.sleep(float(request.query["timeout"]))
        now = time.time()
        entry = {"target": "orders", "up": True, "stale": False, "fetched_at": now, "processes": 9.0,
                 "max_processes": 20.0, "supervisors": {}, "queues": {}}  # fmt: skip
        return web.json_response({"version": int(now), "microservices": {"orders": entry}})

    app = web.Application()
    app.router.add_get("/api/v1/snapshot", snapshot)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def serve(kind: str, port: int, exporter: str | None, metrics: bool = False) -> None:
    if kind == "api":
        await _snapshot_api(port)
        return
    if kind == "bare":
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_ExternalScalerServicer_to_server(Bare(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()
        return
    from external_scaler.metrics import ScalerMetrics
    from external_scaler.server import ScalerServer
    from external_scaler.snapshot_source import SnapshotSource

    assert exporter is not None
    # --metrics: what --metrics-listen adds to every call (the interceptor and the per-trigger bookkeeping).
    scaler = ScalerServer(SnapshotSource(exporter, max_staleness=60), f"127.0.0.1:{port}",
                          metrics=ScalerMetrics() if metrics else None)  # fmt: skip
    await scaler.start()
    await scaler.wait()


async def _ready(stub: pb_grpc.ExternalScalerStub) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                await stub.GetMetrics(REQUEST, wait_for_ready=True)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)


async def _answer(port: int) -> bytes:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        await _ready(stub)
        return (await stub.GetMetrics(REQUEST)).SerializeToString()


async def measure(port: int, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    """Calls per second and per-call latencies (seconds) with `concurrency` calls in flight."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        await _ready(stub)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                await stub.GetMetrics(REQUEST)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(latencies) / (time.perf_counter() - start), latencies


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to see server cost even when the client saturates."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000 if len(values) > 1 else float("nan")


def _spawn(kind: str, port: int, exporter: str = "", metrics: bool = False) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--serve", kind, "--port", str(port), *(["--metrics"] if metrics else [])]
    return subprocess.Popen([*argv, "--exporter", exporter] if exporter else argv)


async def bench(seconds: float, rounds: int, metrics: bool = False) -> None:
    """Alternate bare and scaler for `rounds` rounds: a shared, noisy machine hits both alike."""
    api_port, ports = _free_port(), {"bare": _free_port(), "scaler": _free_port()}
    procs = [_spawn("api", api_port)]
    await asyncio.sleep(0.5)
    procs += [_spawn("bare", ports["bare"]),
              _spawn("scaler", ports["scaler"], f"http://127.0.0.1:{api_port}", metrics)]  # fmt: skip
    rps: dict[str, list[float]] = {"bare": [], "scaler": []}
    cpu: dict[str, list[float]] = {"bare": [], "scaler": []}
    lat1: dict[str, list[float]] = {"bare": [], "scaler": []}
    lat50: dict[str, list[float]] = {"bare": [], "scaler": []}
    try:
        answers = {kind: await _answer(port) for kind, port in ports.items()}
        # A fair floor sends the same bytes back: same message, same size, same serialization work.
        assert answers["bare"] == answers["scaler"], f"the servers answer differently: {answers}"
        for port in ports.values():
            await measure(port, 1.0, 50)  # warm-up
        for _ in range(rounds):
            for kind, port in ports.items():
                pid = procs[1 if kind == "bare" else 2].pid
                before = _cpu_seconds(pid)
                rate, calls = await measure(port, seconds, 50)
                cpu[kind].append((_cpu_seconds(pid) - before) / len(calls) * 1e6)
                rps[kind].append(rate)
                lat50[kind] += calls
                lat1[kind] += (await measure(port, seconds / 2, 1))[1]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    med = statistics.median
    print(f"machine: {os.cpu_count()} CPUs (shared), load {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}, "
          f"grpcio {grpc.__version__}; {rounds} rounds × {seconds:g}s, bare and scaler alternating"
          f"{'; scaler with --metrics-listen' if metrics else ''}")  # fmt: skip
    for kind in ports:
        print(f"{kind:>6}: {med(rps[kind]):6.0f} calls/s at 50 in flight, server CPU {med(cpu[kind]):.0f} µs/call"
              f" | 1 in flight p50 {_pct(lat1[kind], 50):.3f} ms p99 {_pct(lat1[kind], 99):.3f} ms"
              f" | 50 in flight p50 {_pct(lat50[kind], 50):.2f} ms p99 {_pct(lat50[kind], 99):.2f} ms")  # fmt: skip
    ratio = med(s / b for s, b in zip(rps["scaler"], rps["bare"], strict=True))
    p99 = _pct(lat1["scaler"], 99)
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(f"ratio scaler/bare calls/s: {ratio:.2f} (median of per-round ratios; goal ≥ 0.8: {verdict})")
    print(f"scaler p99 at 1 in flight: {p99:.3f} ms (goal ≤ 2 ms: {'met' if p99 <= 2 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--serve", choices=("api", "bare", "scaler"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--exporter", help=argparse.SUPPRESS)
    parser.add_argument("--metrics", action="store_true", help="the scaler as with --metrics-listen (interceptor on)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.exporter, args.metrics))
    else:
        asyncio.run(bench(args.seconds, args.rounds, args.metrics))


if __name__ == "__main__":
    main()
