"""Scale-out: the scaler's GetMetrics p99 and Horizon change → scaler freshness p99 with 3 exporter shards, against one
unsharded exporter of the same total size, in the same run (issue 14, item 6).

What runs (all on 127.0.0.1, each its own process)
--------------------------------------------------
* fleet: `bench/fleet.py --serve a:N` — N fake Horizons (one microservice each, Horizon 5's payload shapes), `--churn`
  of the microservices changing every second; the `--subjects` below never churn.
* sharded: 3 × `horizon-exporter --config F --shard i` (F has `sharding: {total_shards: 3}`) and one
  `horizon-scaler` with three `--exporter` (the fan-in source, docs/scaler.md "Several exporters").
* unsharded: 1 × `horizon-exporter --config F'` (the same targets, no `sharding:`) and one `horizon-scaler --exporter`
  (the sidecar source).
* this process, KEDA's stand-in, over the generated gRPC client, asking both topologies the same things at the same
  moments — paired samples, so the machine's load at any instant weighs on both alike:
  - GetMetrics load: an open loop of `--rate` ticks a second; each tick sends one GetMetrics for a random
    microservice (`processes`, `thresholdMode: average`) to each scaler, which goes first alternating. Every call's
    latency, and every error.
  - freshness: each subject's processes flip (1 ↔ 20 on one supervisor: POST to the fleet, which applies the change
    and answers the time it did) at a random phase of the poll interval; then each scaler is asked GetMetrics for
    that microservice every `--probe-every` seconds until it answers the new value. Freshness = the time of that
    answer − the time of the change: the poll's phase, the exporter's poll and snapshot, the scaler's long-poll,
    and the probe's resolution.

Both topologies poll the one fleet, so each runs beside the other's load. (Back-to-back runs, one topology then the
other, were tried first: their GetMetrics p99 ratio swung from 0.57 to 1.55 between runs; pairing did not steady
it, below.) Shown for context: CPU (utime + stime from /proc) of the exporters (summed per topology), of the scalers
and of the fleet; how long each scaler's event loop waited for a CPU; and the poll results a second per target each
topology achieved (from the snapshots' `revision`, which counts them): 1 / poll when its exporters keep up.

VERDICT: sharded / unsharded of both p99s, and no GetMetrics error in either. The freshness p99's goal is ≤ 1.25
(the shards' fan-in must not make the scaler slower to see a change; 1.25 allows for noise). GetMetrics p99 is
reported, not judged: on a machine this run saturates (both topologies, the fleet and this client on 2 cores) its
tail is time the scalers' event loops wait for a CPU (shown: /proc schedstat), and its ratio swung between 0.5 and
2.2 from run to run on the development machine while the p50s stayed within 10 % (bench/README.md).

Run from the repository root:
    .venv/bin/python bench/scale_out.py                      # 600 targets, 5 %/s churn, 200 calls/s, 60 s (~2 min)
    .venv/bin/python bench/scale_out.py --targets 1000 --rate 400 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fleet  # bench/fleet.py: the fake fleet, process and /proc helpers
from fleet import BIN, Window, exporter_config, free_port, get_json, spawn, stop, wait_http

SHARDS = 3
GOAL = 1.25
TOPOLOGIES = ("unsharded", "sharded")


@dataclass
class Topology:
    """One topology's processes and samples."""

    name: str
    exporters: list[subprocess.Popen[bytes]] = field(default_factory=list)
    exporter_urls: list[str] = field(default_factory=list)
    scaler: subprocess.Popen[bytes] | None = None
    address: str = ""
    getmetrics: list[float] = field(default_factory=list)  # seconds per call
    errors: dict[str, int] = field(default_factory=dict)
    freshness: list[float] = field(default_factory=list)  # seconds, Horizon change → answered
    usage: dict[str, float] = field(default_factory=dict)  # % of a core: exporters (summed), scaler
    waits: list[float | None] = field(default_factory=list)  # the scaler's run_queue_wait at start, end
    wait_per_s: float | None = None  # its event loop's wait for a CPU, seconds per second of the window
    revisions: list[int] = field(default_factory=list)  # summed `revision` (one per poll result) at start, end
    polls_per_target: float = 0.0  # poll results a second per target over the window: 1 / poll when keeping up

    def revision(self) -> int:
        return sum(int(get_json(f"{url}/api/v1/snapshot")["revision"]) for url in self.exporter_urls)


def q(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def start(top: Topology, sharded: bool, args: argparse.Namespace, fleet_port: int, horizons: list[str],
          logdir: Path) -> None:  # fmt: skip
    """The topology's exporters (ready: every target polled once) and its scaler."""
    extra: dict[str, Any] = {"sharding": {"total_shards": SHARDS}} if sharded else {}
    cfg = logdir / f"{top.name}.yml"
    cfg.write_text(exporter_config("a", horizons, fleet_port, args.poll, extra))
    for i in range(SHARDS if sharded else 1):
        port = free_port()
        argv = [str(BIN / "horizon-exporter"), "--config", str(cfg), "--listen", f"127.0.0.1:{port}",
                "--log-level", "warning", *(["--shard", str(i)] if sharded else [])]  # fmt: skip
        top.exporters.append(spawn(argv, logdir / f"{top.name}-exporter-{i}.log", args.env))
        top.exporter_urls.append(f"http://127.0.0.1:{port}")
    for url in top.exporter_urls:
        wait_http(f"{url}/readyz", 120)
    port = free_port()
    argv = [str(BIN / "horizon-scaler"), "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]
    for url in top.exporter_urls:
        argv += ["--exporter", url]
    top.scaler = spawn(argv, logdir / f"{top.name}-scaler.log", args.env)
    top.address = f"127.0.0.1:{port}"


# ----------------------------------------------------------------------------------------------- KEDA's stand-in


def _request(pb: Any, name: str) -> Any:
    meta = {"microservice": name, "thresholdMode": "average"}
    ref = pb.ScaledObjectRef(name=name, namespace="bench", scalerMetadata=meta)
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"horizon-{name}-processes")


async def measure(tops: list[Topology], fleet_url: str, names: list[str], subjects: list[str],
                  args: argparse.Namespace, warmup: float) -> None:  # fmt: skip
    """Wait until every scaler answers every microservice, `warmup` more seconds, then `--seconds` of GetMetrics
    load and subject flips against all of them."""
    import aiohttp
    import grpc

    from external_scaler._proto import externalscaler_pb2 as pb
    from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc

    requests = {n: _request(pb, n) for n in names}
    rng = random.Random(args.seed)
    channels = [grpc.aio.insecure_channel(t.address) for t in tops]
    stubs = [pb_grpc.ExternalScalerStub(c) for c in channels]
    try:
        async with aiohttp.ClientSession() as http:

            async def value(stub: Any, name: str) -> float:
                return float((await stub.GetMetrics(requests[name], timeout=10)).metricValues[0].metricValueFloat)

            deadline = time.monotonic() + 120
            for top, stub in zip(tops, stubs, strict=True):
                while True:
                    answers = await asyncio.gather(*(value(stub, n) for n in names), return_exceptions=True)
                    failed = sum(isinstance(a, BaseException) for a in answers)
                    if not failed:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{top.name}: the scaler still fails {failed} of {len(names)} microservices")
                    await asyncio.sleep(0.5)
            await asyncio.sleep(warmup)
            until = time.monotonic() + args.seconds

            async def one_call(top: Topology, stub: Any, name: str) -> None:
                t0 = time.perf_counter()
                try:
                    await stub.GetMetrics(requests[name], timeout=10)
                except grpc.aio.AioRpcError as exc:
                    top.errors[exc.code().name] = top.errors.get(exc.code().name, 0) + 1
                    return
                top.getmetrics.append(time.perf_counter() - t0)

            async def load() -> None:
                pending: set[asyncio.Task[None]] = set()
                gap, begin, tick = 1.0 / args.rate, time.monotonic(), 0
                pairs = list(zip(tops, stubs, strict=True))
                while (due := begin + tick * gap) < until:
                    now = time.monotonic()
                    if due > now:
                        await asyncio.sleep(due - now)
                    name = rng.choice(names)
                    for top, stub in pairs if tick % 2 == 0 else pairs[::-1]:  # who goes first alternates
                        task = asyncio.create_task(one_call(top, stub, name))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    tick += 1
                await asyncio.gather(*pending)

            async def until_new(top: Topology, stub: Any, name: str, want: float, applied: float) -> None:
                while True:
                    try:
                        got = await value(stub, name)
                    except grpc.aio.AioRpcError:
                        got = float("nan")
                    if got == want:
                        top.freshness.append(time.time() - applied)
                        return
                    if time.monotonic() > until + 30:
                        raise SystemExit(f"{top.name}: {name}: the scaler never answered {want} (still {got})")
                    await asyncio.sleep(args.probe_every)

            async def flips(name: str) -> None:
                processes = 1  # the fleet starts every subject at 1 (bench/fleet.py serve)
                values = {await value(stub, name) for stub in stubs}
                assert len(values) == 1, f"{name}: the scalers disagree before the first flip: {values}"
                current = values.pop()
                while time.monotonic() < until:
                    await asyncio.sleep(rng.uniform(0, args.poll))
                    new = 20 if processes == 1 else 1
                    want = current + (new - processes)
                    async with http.post(f"{fleet_url}/-/set", json={"microservice": name, "processes": new}) as resp:
                        applied = float((await resp.json())["applied_at"])
                    await asyncio.gather(
                        *(until_new(t, s, name, want, applied) for t, s in zip(tops, stubs, strict=True))
                    )
                    processes, current = new, want

            await asyncio.gather(load(), *(flips(s) for s in subjects))
    finally:
        for channel in channels:
            await channel.close()


# ------------------------------------------------------------------------------------------------------- report


def _ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


def run_queue_wait(pid: int) -> float | None:
    """Seconds the process's main thread (the scaler's event loop, which answers the calls) has spent runnable but
    waiting for a CPU (/proc/PID/task/PID/schedstat, second field); None where the kernel does not keep it."""
    try:
        return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def report(tops: dict[str, Topology], args: argparse.Namespace, info: dict[str, Any], fleet_cpu: float) -> int:
    print(f"\nmachine: {os.cpu_count()} CPUs (shared), load {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}"
          f"; {len(info['microservices'])} targets, poll {args.poll:g}s, churn {args.churn:.0%}/s, GetMetrics "
          f"{args.rate:g}/s to each scaler, {len(info['subjects'])} subjects, {args.seconds:g}s")  # fmt: skip
    head = ("topology", "GetMetrics n", "errors", "p50", "p99", "freshness n", "p50", "p99", "max", "exporters CPU",
            "scaler CPU", "scaler waits for a CPU", "polls/s per target")  # fmt: skip
    print(" | ".join(head))
    for t in tops.values():
        errors = ", ".join(f"{k} {v}" for k, v in sorted(t.errors.items())) or "0"
        shown = "unsharded (1 exporter)" if t.name == "unsharded" else f"sharded ({SHARDS} exporters)"
        print(" | ".join((
            shown, str(len(t.getmetrics)), errors, _ms(q(t.getmetrics, 50)), _ms(q(t.getmetrics, 99)),
            str(len(t.freshness)), _ms(q(t.freshness, 50)), _ms(q(t.freshness, 99)), _ms(max(t.freshness)),
            f"{t.usage['exporters']:.1f}%", f"{t.usage['scaler']:.1f}%",
            "n/a" if t.wait_per_s is None else f"{t.wait_per_s * 1000:.0f} ms/s", f"{t.polls_per_target:.2f}",
        )))  # fmt: skip
    print(f"    fleet process CPU {fleet_cpu:.1f}% (it serves both topologies' polls)")
    s, u = tops["sharded"], tops["unsharded"]
    ratios = {
        "GetMetrics p99": q(s.getmetrics, 99) / q(u.getmetrics, 99),
        "freshness p99": q(s.freshness, 99) / q(u.freshness, 99),
    }
    clean = not s.errors and not u.errors
    met = clean and ratios["freshness p99"] <= GOAL
    print(f"    p50 ratios: GetMetrics {q(s.getmetrics, 50) / q(u.getmetrics, 50):.2f}×, freshness "
          f"{q(s.freshness, 50) / q(u.freshness, 50):.2f}×")  # fmt: skip
    print(f"VERDICT: sharded ({SHARDS} exporters) / unsharded: freshness p99 {ratios['freshness p99']:.2f}× (goal ≤ "
          f"{GOAL:g}), GetMetrics p99 {ratios['GetMetrics p99']:.2f}× (reported), "
          f"{'no GetMetrics error' if clean else 'GetMetrics ERRORS'}: {'met' if met else 'NOT met'}")  # fmt: skip
    return 0 if met else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=600, help="fake Horizons, one microservice each")
    p.add_argument("--churn", type=float, default=0.05, help="share of microservices changing per second")
    p.add_argument("--poll", type=float, default=1.0, help="the exporters' poll interval")
    p.add_argument("--rate", type=float, default=200.0, help="GetMetrics calls per second to each scaler")
    p.add_argument("--subjects", type=int, default=8, help="microservices flipped for the freshness")
    p.add_argument("--probe-every", type=float, default=0.02, help="seconds between GetMetrics probes after a flip")
    p.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1, help="of the load's microservice choices and the flips' phases")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop of the exporters and scalers (HORIZON_KEDA_EVENT_LOOP)")  # fmt: skip
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = p.parse_args()
    args.env = {"HORIZON_KEDA_EVENT_LOOP": args.loop}
    logdir = Path(tempfile.mkdtemp(prefix="scale-out-bench-"))
    fleet_port = free_port()
    server = spawn([sys.executable, fleet.__file__, "--serve", f"a:{args.targets}", "--port", str(fleet_port),
                    "--churn", str(args.churn), "--subjects", str(args.subjects)], logdir / "fleet.log")  # fmt: skip
    tops = {name: Topology(name) for name in TOPOLOGIES}
    try:
        wait_http(f"http://127.0.0.1:{fleet_port}/-/info", 300)
        info = get_json(f"http://127.0.0.1:{fleet_port}/-/info")
        for name, top in tops.items():
            start(top, name == "sharded", args, fleet_port, info["horizons"], logdir)
        pids = {"fleet": server.pid}
        for name, top in tops.items():
            assert top.scaler is not None
            pids.update({f"{name}-exporter-{i}": e.pid for i, e in enumerate(top.exporters)})
            pids[f"{name}-scaler"] = top.scaler.pid
        # The CPU window opens after the warm-up: measure() waits for both scalers, then `warmup` seconds.
        window: list[Window] = []

        async def run() -> None:
            task = asyncio.create_task(measure(list(tops.values()), f"http://127.0.0.1:{fleet_port}",
                                               info["microservices"], info["subjects"], args, args.warmup))  # fmt: skip
            while not task.done() and not any(top.getmetrics for top in tops.values()):
                await asyncio.sleep(0.05)
            window.append(Window(pids))
            for top in tops.values():
                top.revisions.append(top.revision())
                top.waits.append(run_queue_wait(top.scaler.pid) if top.scaler else None)
            await task
            for top in tops.values():
                top.revisions.append(top.revision())
                top.waits.append(run_queue_wait(top.scaler.pid) if top.scaler else None)

        asyncio.run(run())
        usage = window[0].end()
        wall = time.monotonic() - window[0].t0
        for top in tops.values():
            top.polls_per_target = (top.revisions[1] - top.revisions[0]) / wall / len(info["horizons"])
            w0, w1 = top.waits
            top.wait_per_s = None if w0 is None or w1 is None else (w1 - w0) / wall
        for name, top in tops.items():
            top.usage = {"exporters": sum(u["cpu"] for k, u in usage.items() if k.startswith(f"{name}-exporter")),
                         "scaler": usage[f"{name}-scaler"]["cpu"]}  # fmt: skip
    finally:
        for top in tops.values():
            for proc in ([top.scaler] if top.scaler else []) + top.exporters:
                stop(proc)
        stop(server)
    print(f"logs in {logdir}")
    if args.json:
        summary = {name: {"getmetrics_p50": q(t.getmetrics, 50), "getmetrics_p99": q(t.getmetrics, 99),
                          "freshness_p50": q(t.freshness, 50), "freshness_p99": q(t.freshness, 99),
                          "errors": t.errors, "cpu": t.usage, "polls_per_target": t.polls_per_target}
                   for name, t in tops.items()}  # fmt: skip
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return report(tops, args, info, usage["fleet"]["cpu"])


if __name__ == "__main__":
    sys.exit(main())
