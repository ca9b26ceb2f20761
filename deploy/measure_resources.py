"""Measure the exporter's (and, when installed, the scaler's) memory and CPU, to size the Deployment's resources.

Serves fake Horizons on loopback (the payload shapes of tests/payloads.py), starts `horizon-exporter` against them
as a subprocess, keeps Prometheus-like scrapes and snapshot long-polls going, and samples VmRSS, VmHWM and CPU time
from /proc; then times how long a change in one Horizon takes to reach the snapshot API the sidecar reads.
Usage: `.venv/bin/python deploy/measure_resources.py [--seconds 60] [--single 50] [--core 200] [--huge 0]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_horizon import FakeHorizon
from tests.payloads import core_masters, core_stats, core_workload, topology_a

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_sample(pid: int) -> tuple[int, int, float]:
    """(VmRSS KiB, VmHWM KiB, user+system CPU seconds) of a live process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]), (int(stat[11]) + int(stat[12])) / TICKS


async def serve_fakes(
    single: int, core: int, huge: int
) -> tuple[web.AppRunner, list[dict[str, object]], list[FakeHorizon]]:
    """One aiohttp server: `single` one-microservice Horizons, one Horizon of `core` microservices, and `huge`
    hostile ones answering 50 MB bodies (what the exporter's body cap has to hold off)."""
    app = web.Application()
    targets: list[dict[str, object]] = []
    singles: list[FakeHorizon] = []
    port = free_port()
    for i in range(single):
        fake = FakeHorizon()
        fake.set(*topology_a())
        singles.append(fake)
        app.router.add_get(f"/ms{i}/horizon/api/{{endpoint}}", fake.handle)
        targets.append({"microservice": f"ms{i}", "url": f"http://127.0.0.1:{port}/ms{i}/horizon"})
    for i in range(huge):
        fake = FakeHorizon(fault="huge")
        fake.set(*topology_a())
        app.router.add_get(f"/huge{i}/horizon/api/{{endpoint}}", fake.handle)
        targets.append({"microservice": f"huge{i}", "url": f"http://127.0.0.1:{port}/huge{i}/horizon"})
    if core:
        counts = {f"svc{i}": [3, 4, 2] for i in range(core)}
        fake = FakeHorizon()
        fake.set(core_stats(counts), core_workload(counts, {ms: 10 for ms in counts}), core_masters(counts))
        app.router.add_get("/core/horizon/api/{endpoint}", fake.handle)
        targets.append({
            "url": f"http://127.0.0.1:{port}/core/horizon", "name": "core", "microservices_from": "supervisor",
            "pattern": "^(?P<microservice>[a-z0-9-]+)-worker$",
        })  # fmt: skip
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, targets, singles


async def change_latency(base: str, fake: FakeHorizon, changes: int) -> list[float]:
    """Seconds from a change of ms0's process count in its Horizon to the snapshot API showing it, `changes`
    times at random phases of the poll cycle."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/api/v1/snapshot") as r:
            version = (await r.json())["version"]
        for i in range(changes):
            await asyncio.sleep(random.uniform(0.2, 1.5))
            default = 20 + i  # supervisor-1 serves redis:default; the other queues add 3 processes
            fake.payloads["masters"][next(iter(fake.payloads["masters"]))]["supervisors"][0]["processes"][
                "redis:default"
            ] = default
            changed = time.monotonic()
            while True:
                params = {"after": version, "timeout": 5}
                async with session.get(f"{base}/api/v1/snapshot", params=params) as r:
                    doc = await r.json()
                version = doc["version"]
                if doc["microservices"]["ms0"]["processes"] == default + 3:
                    latencies.append(time.monotonic() - changed)
                    break
    return latencies


async def load(base: str, stop: asyncio.Event) -> int:
    """A scrape every second (two Prometheis at 2 s) plus a snapshot long-poll follower, like the sidecar."""
    scrapes = 0
    async with aiohttp.ClientSession() as session:

        async def follower() -> None:
            version = 0
            while not stop.is_set():
                async with session.get(f"{base}/api/v1/snapshot", params={"after": version, "timeout": 5}) as r:
                    version = (await r.json())["version"]

        task = asyncio.create_task(follower())
        while not stop.is_set():
            async with session.get(f"{base}/metrics") as resp:
                await resp.read()
            scrapes += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return scrapes


async def keda_load(address: str, microservices: list[str], stop: asyncio.Event) -> tuple[int, int]:
    """What KEDA does per ScaledObject: one StreamIsActive stream, and every second (HPA sync and polling loop
    together, at the fastest) GetMetricSpec, GetMetrics and IsActive. Returns (RPC rounds, failed calls)."""
    import grpc

    from external_scaler._proto import externalscaler_pb2 as pb
    from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc

    rounds = failures = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        refs = [
            pb.ScaledObjectRef(name=ms, namespace="shop", scalerMetadata={"microservice": ms, "threshold": "8"})
            for ms in microservices
        ]
        streams = [stub.StreamIsActive(ref) for ref in refs]

        async def drain(stream: grpc.aio.UnaryStreamCall) -> None:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                async for _ in stream:
                    pass

        drains = [asyncio.create_task(drain(s)) for s in streams]
        while not stop.is_set():
            for ref in refs:
                try:
                    spec = (await stub.GetMetricSpec(ref)).metricSpecs[0]
                    req = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName)
                    await stub.GetMetrics(req)
                    await stub.IsActive(ref)
                except grpc.aio.AioRpcError as exc:
                    failures += 1
                    if failures <= 3:
                        print(f"scaler: {ref.name}: {exc.code().name} {exc.details()}")
            rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*drains)
    return rounds, failures


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--single", type=int, default=50, help="one-microservice Horizons (topology a)")
    ap.add_argument("--core", type=int, default=200, help="microservices behind one shared Horizon (topology b)")
    ap.add_argument("--huge", type=int, default=0, help="Horizons answering 50 MB bodies")
    ap.add_argument("--max-concurrency", type=int, default=8, help="as in deploy/base/config.yml")
    ap.add_argument("--max-body-bytes", type=int, default=4 << 20, help="as in deploy/base/config.yml")
    ap.add_argument("--changes", type=int, default=30, help="Horizon changes to time (needs --single >= 1)")
    ap.add_argument("--scaledobjects", type=int, default=50, help="KEDA-like clients of the scaler, one per ms<i>")
    args = ap.parse_args()
    runner, targets, singles = await serve_fakes(args.single, args.core, args.huge)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.yml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "listen": f"127.0.0.1:{port}",
                    "max_concurrency": args.max_concurrency,
                    "max_body_bytes": args.max_body_bytes,
                    "targets": targets,
                }
            )
        )
        bindir = Path(sys.executable).parent
        procs = {"exporter": await asyncio.create_subprocess_exec(bindir / "horizon-exporter", "--config", cfg)}
        scaler = shutil.which("horizon-scaler", path=str(bindir))
        scaler_address = f"127.0.0.1:{free_port()}"
        if scaler:
            procs["scaler"] = await asyncio.create_subprocess_exec(
                scaler, "--listen", scaler_address, "--exporter", f"http://127.0.0.1:{port}"
            )
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}/readyz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
        idle = {name: proc_sample(p.pid) for name, p in procs.items()}
        stop = asyncio.Event()
        loader = asyncio.create_task(load(base, stop))
        keda = None
        if scaler and args.scaledobjects:
            await asyncio.sleep(2)  # the scaler's first snapshot
            names = [f"ms{i}" for i in range(min(args.scaledobjects, args.single))]
            keda = asyncio.create_task(keda_load(scaler_address, names, stop))
        start = time.monotonic()
        peaks: dict[str, int] = {}
        first = {name: proc_sample(p.pid) for name, p in procs.items()}
        while time.monotonic() - start < args.seconds:
            await asyncio.sleep(1)
            for name, p in procs.items():
                peaks[name] = max(peaks.get(name, 0), proc_sample(p.pid)[0])
        last = {name: proc_sample(p.pid) for name, p in procs.items()}
        stop.set()
        scrapes = await loader
        elapsed = time.monotonic() - start
        microservices = args.single + args.core
        print(f"{len(targets)} targets, {microservices} microservices, {scrapes} scrapes in {elapsed:.0f}s")
        if keda is not None:
            rounds, failures = await keda
            count = min(args.scaledobjects, args.single)
            print(f"scaler: {count} ScaledObjects, {rounds} rounds of RPCs, {failures} failed")
        for name in procs:
            rss, hwm, cpu = last[name]
            print(
                f"{name}: RSS ready {idle[name][0] / 1024:.1f} MiB, end {rss / 1024:.1f} MiB, "
                f"max sampled {peaks[name] / 1024:.1f} MiB, VmHWM {hwm / 1024:.1f} MiB, "
                f"CPU {(cpu - first[name][2]) / elapsed * 1000:.0f} millicores"
            )
        if singles and args.changes:
            latencies = sorted(await change_latency(base, singles[0], args.changes))
            print(
                f"Horizon change -> snapshot API, {len(latencies)} changes: "
                f"median {statistics.median(latencies):.2f}s, max {latencies[-1]:.2f}s"
            )
        for p in procs.values():
            p.terminate()
            await p.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
