"""Benchmark: how long a `/metrics` render takes for 10,000 microservices × 3 queues, against bare prometheus_client.

What is measured
----------------
* ours: `MetricsRenderer.render(None)` over a `SnapshotStore` holding 10,000 microservices (default: 10,000
  topology-(a) targets, one microservice each, as `map_reading` makes them from the payloads of the simulator's
  `orders` Horizon (`simulator.payloads.horizon_payloads`): processes, max_processes, stale, supervisors by 3
  statuses, 3 queues with length/wait/processes, plus every target-level gauge). The cache is defeated by
  publishing a new snapshot (`store.update`, outside the timer) before every render, so each timed render also
  builds `Snapshot.microservices`, exactly as after a real poll.
* baseline: `prometheus_client.generate_latest` over a fresh `CollectorRegistry` whose trivial collector yields
  precomputed Gauge/CounterMetricFamily objects with the same names, help, labels and values. The two bodies are
  checked to be byte-identical before timing.
* The runs are interleaved (alternating order) over N repetitions; the verdict is on the ratio of medians
  (goal: ours / baseline <= 1.25). Never an absolute time: the machine is shared and noisy.
* After setup the heap is frozen (`gc.freeze()`), so the baseline's ~560k precomputed Sample objects do not make
  the cyclic GC slower for our renders; `--no-freeze` keeps them in the GC (penalises ours further). Each timed
  call starts after a `gc.collect()`; GC passes triggered inside the timed calls are counted and reported.
* Also: a breakdown (Snapshot.microservices, collect, encode), the cached path (a second render of the same
  version, µs per call), optionally a cProfile of one render (automatically when the ratio misses the goal), and
  requests/s of the cached body served by a real aiohttp server on 127.0.0.1 to concurrent aiohttp clients run
  in a child process (report only; the body is ~17 MB so this is mostly loopback/copy throughput).

How to run (from the repository root)
-------------------------------------
    .venv/bin/python bench/render_metrics.py                     # 10,000 targets × 1 microservice (topology a)
    .venv/bin/python bench/render_metrics.py --targets 100 --per-target 100   # topology (b): 100 × 100
    .venv/bin/python bench/render_metrics.py --reps 5 --http-seconds 0        # quicker, no HTTP part
    .venv/bin/python bench/render_metrics.py --profile                        # always print the cProfile

Takes about 30-60 s on a 2-core machine with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for the project's packages when run as `python bench/render_metrics.py`

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric  # noqa: E402

from exporter.collector import HorizonCollector, MetricsRenderer  # noqa: E402
from exporter.horizon import parse_reading  # noqa: E402
from exporter.mapping import Fixed, MicroserviceValues, QueueValues, map_reading  # noqa: E402
from exporter.snapshot import PollOutcome, TargetState, advance  # noqa: E402
from exporter.store import SnapshotStore  # noqa: E402
from simulator.fleet import default_fleet  # noqa: E402
from simulator.payloads import horizon_payloads  # noqa: E402

GOAL = 1.25


# --------------------------------------------------------------------------------------------------- the snapshot


def build_store(n_targets: int, per_target: int, seed: int = 1) -> SnapshotStore:
    """A store of `n_targets` polled-OK targets with `per_target` microservices each (values vary per microservice)."""
    rng = random.Random(seed)
    reading = parse_reading(*horizon_payloads(default_fleet().horizon("orders")))
    template = map_reading(reading, Fixed("x"))["x"]  # 3 queues: default, emails, "high,low"
    now = time.time()
    states: dict[str, TargetState] = {}
    ms = 0
    for t in range(n_targets):
        micro: dict[str, MicroserviceValues] = {}
        for _ in range(per_target):
            queues = {
                q: QueueValues(
                    processes=float(rng.randint(0, 20)),
                    length=float(rng.randint(0, 5000)),
                    wait_seconds=float(rng.randint(0, 900)),
                )
                for q in template.queues
            }
            micro[f"svc-{ms:05d}"] = template._replace(
                processes=sum(q.processes for q in queues.values()),
                max_processes=float(rng.randint(10, 40)),
                supervisors={"running": rng.randint(1, 4), "paused": 0, "inactive": rng.randint(0, 1)},
                queues=queues,
            )
            ms += 1
        if per_target == 1:
            name = next(iter(micro))
            state = TargetState(name=name, url=f"http://{name}.svc/horizon", fixed_microservice=name)
        else:
            name = f"core-{t:04d}"
            state = TargetState(name=name, url=f"http://{name}.svc/horizon", fixed_microservice=None)
        stats = replace(
            reading.stats,
            jobs_per_minute=float(rng.randint(0, 5000)),
            recent_jobs=float(rng.randint(0, 100000)),
            failed_jobs=float(rng.randint(0, 50)),
        )
        outcome = PollOutcome(
            started_at=now - rng.random(),
            duration_seconds=0.002 + rng.random() / 50,
            reading=replace(reading, stats=stats),
            microservices=micro,
        )
        states[name] = advance(state, outcome, stale_after=60.0)
    return SnapshotStore(states, time.time)


def bump(store: SnapshotStore) -> None:
    """Publish a new snapshot revision (same content) so the renderer's cache and `Snapshot.microservices` miss."""
    first = next(iter(store.current.targets.values()))
    store.update(first)


def make_renderer(store: SnapshotStore) -> MetricsRenderer:
    """The exporter's renderer, as `exporter.app.create_app` builds it (no extra collectors)."""
    return MetricsRenderer(store, CollectorRegistry(), lambda: store.revision)


# ----------------------------------------------------------------------------------------------------- baseline


def precomputed_families(store: SnapshotStore) -> list[Metric]:
    """Fresh Gauge/CounterMetricFamily objects with the same names, help, labels and values as our collector's."""
    out: list[Metric] = []
    for fam in HorizonCollector(store).collect():
        labels = list(fam.samples[0].labels) if fam.samples else []
        if fam.type == "counter":
            new: Metric = CounterMetricFamily(fam.name, fam.documentation, labels=labels)
        elif fam.type == "gauge":
            new = GaugeMetricFamily(fam.name, fam.documentation, labels=labels)
        else:
            raise SystemExit(f"unexpected family type {fam.type} for {fam.name}")
        for s in fam.samples:
            new.add_metric([s.labels[k] for k in labels], s.value)
        out.append(new)
    return out


class Precomputed:
    """A trivial collector: yields the families it was given."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


# -------------------------------------------------------------------------------------------------------- timing


def timed(fn, gc_counts: list[int] | None = None, gc_off: bool = False) -> float:
    """Seconds for `fn()` (result dropped inside the timer); adds GC passes per generation to `gc_counts`."""
    gc.collect()
    before = [g["collections"] for g in gc.get_stats()]
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    if gc_counts is not None:
        for i, g in enumerate(gc.get_stats()):
            gc_counts[i] += g["collections"] - before[i]
    return elapsed


def profile_render(store: SnapshotStore, renderer: MetricsRenderer, top: int) -> None:
    bump(store)
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    renderer.render_sync(None)
    prof.disable()
    st = pstats.Stats(prof)
    total = st.total_tt  # type: ignore[attr-defined]
    print(f"\ncProfile of one uncached render (profiler inflates totals; read the shares): total {total:.2f} s")
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{Path(file).parent.name}/{Path(file).name}:{line}({func})"))
    print(f"{'tottime s':>9} {'share':>6} {'cumtime s':>9} {'calls':>9}  function")
    for tt, ct, nc, where in sorted(rows, reverse=True)[:top]:
        print(f"{tt:9.3f} {tt / total:6.1%} {ct:9.3f} {nc:9d}  {where}")
    ours = [r for r in rows if "exporter/" in r[3]]
    print("exporter/* functions by cumulative time:")
    for tt, ct, nc, where in sorted(ours, key=lambda r: r[1], reverse=True)[:8]:
        print(f"{tt:9.3f} {tt / total:6.1%} {ct:9.3f} {nc:9d}  {where}")


# ---------------------------------------------------------------------------------------------------------- HTTP


async def http_throughput(renderer: MetricsRenderer, clients: int, seconds: float) -> dict:
    """Serve the cached body from a real aiohttp server; load it from a child process (its CPU is not ours)."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:  # the same as exporter.app._metrics
        body, content_type = renderer.render_sync(request.headers.get("Accept"))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--load-client", f"http://127.0.0.1:{port}/metrics", str(clients), str(seconds),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return json.loads(out)
    finally:
        await runner.cleanup()


async def load_client(url: str, clients: int, seconds: float) -> None:
    """Child-process mode: `clients` concurrent aiohttp clients GET `url` for `seconds`; print counts as JSON."""
    import aiohttp

    done = 0
    nbytes = 0
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        async with session.get(url) as resp:  # warm-up
            await resp.read()
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, nbytes, errors
            while time.perf_counter() < deadline:
                async with session.get(url) as resp:
                    body = await resp.read()
                if resp.status == 200:
                    done += 1
                    nbytes += len(body)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    print(json.dumps({"requests": done, "errors": errors, "bytes": nbytes, "seconds": elapsed}))


# ---------------------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=10_000, help="targets in the snapshot (default 10000)")
    ap.add_argument("--per-target", type=int, default=1, help="microservices per target (1 = topology a)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions of ours and baseline (default 7)")
    ap.add_argument("--no-freeze", action="store_true", help="do not gc.freeze() the heap after setup")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one render even if the goal is met")
    ap.add_argument("--http-clients", type=int, default=8, help="concurrent clients for the HTTP part (default 8)")
    ap.add_argument("--http-seconds", type=float, default=3.0, help="duration of the HTTP part; 0 skips it")
    ap.add_argument("--load-client", nargs=3, metavar=("URL", "N", "SECONDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_client:
        url, n, secs = args.load_client
        asyncio.run(load_client(url, int(n), float(secs)))
        return

    t0 = time.perf_counter()
    store = build_store(args.targets, args.per_target)
    setup_s = time.perf_counter() - t0
    renderer = make_renderer(store)

    base_registry = CollectorRegistry()
    base_registry.register(Precomputed(precomputed_families(store)))  # type: ignore[arg-type]

    bump(store)
    ours_body, ctype = renderer.render_sync(None)
    base_body = generate_latest(base_registry)
    if ours_body != base_body:
        raise SystemExit("baseline body differs from ours: the comparison would not be like for like")
    series = sum(1 for line in ours_body.splitlines() if line and not line.startswith(b"#"))
    n_ms = len(store.current.microservices)
    body_mb = len(ours_body) / 1e6
    del ours_body, base_body
    gc.collect()
    if not args.no_freeze:
        gc.freeze()

    ours_t: list[float] = []
    base_t: list[float] = []
    ours_gc, base_gc = [0, 0, 0], [0, 0, 0]

    def run_ours() -> None:
        bump(store)  # outside the timer: a new snapshot version, as after a poll
        ours_t.append(timed(lambda: renderer.render_sync(None), ours_gc))

    def run_base() -> None:
        base_t.append(timed(lambda: generate_latest(base_registry), base_gc))

    for i in range(args.reps):
        for fn in (run_ours, run_base) if i % 2 == 0 else (run_base, run_ours):
            fn()

    # Breakdown of an uncached render, measured directly (no profiler): entries, collect, encode.
    entries_t, collect_t, collect_nogc_t, render_nogc_t, brk_base_t = [], [], [], [], []
    collector = HorizonCollector(store)
    for _ in range(3):
        brk_base_t.append(timed(lambda: generate_latest(base_registry)))  # the what-ifs' own baseline
        bump(store)
        entries_t.append(timed(lambda: store.current.microservices))
        bump(store)
        collect_t.append(timed(lambda: list(collector.collect())))  # includes Snapshot.microservices
        bump(store)
        collect_nogc_t.append(timed(lambda: list(collector.collect()), gc_off=True))
        bump(store)
        render_nogc_t.append(timed(lambda: renderer.render_sync(None), gc_off=True))

    # Cached path: the same version rendered again.
    renderer.render_sync(None)
    cached = []
    for _ in range(5):
        n = 20_000
        t = time.perf_counter()
        for _ in range(n):
            renderer.render_sync(None)
        cached.append((time.perf_counter() - t) / n)

    med_ours, med_base = statistics.median(ours_t), statistics.median(base_t)
    ratio = med_ours / med_base
    med_entries, med_collect = statistics.median(entries_t), statistics.median(collect_t)
    med_collect_nogc, med_render_nogc = statistics.median(collect_nogc_t), statistics.median(render_nogc_t)
    med_brk_base = statistics.median(brk_base_t)

    print(f"render_metrics: {args.targets} targets × {args.per_target} microservice(s) = {n_ms} microservices, "
          f"setup {setup_s:.1f} s")  # fmt: skip
    print(f"series (sample lines): {series}   body: {body_mb:.2f} MB   content type: {ctype}")
    print(f"repetitions: {args.reps} (interleaved); heap {'not ' if args.no_freeze else ''}frozen after setup")
    print()
    print(f"{'':38} {'median ms':>10} {'min ms':>9} {'max ms':>9}")
    print(f"{'ours: MetricsRenderer.render (uncached)':38} {med_ours * 1e3:10.1f} {min(ours_t) * 1e3:9.1f} "
          f"{max(ours_t) * 1e3:9.1f}")  # fmt: skip
    print(f"{'baseline: generate_latest precomputed':38} {med_base * 1e3:10.1f} {min(base_t) * 1e3:9.1f} "
          f"{max(base_t) * 1e3:9.1f}")  # fmt: skip
    print(f"{'ratio ours / baseline (median)':38} {ratio:10.3f}   (min/min {min(ours_t) / min(base_t):.3f})")
    per = args.reps
    print(
        f"GC passes inside the timed calls, per call (gen0/gen1/gen2): ours "
        f"{'/'.join(f'{c / per:.0f}' for c in ours_gc)}, baseline {'/'.join(f'{c / per:.0f}' for c in base_gc)}"
    )
    print()
    print("breakdown of an uncached render (medians of 3, measured separately):")
    print(f"  Snapshot.microservices build   {med_entries * 1e3:8.1f} ms")
    print(f"  HorizonCollector.collect()     {med_collect * 1e3:8.1f} ms  (the OpenMetrics path's object building)")
    print(f"  ... same with gc disabled      {med_collect_nogc * 1e3:8.1f} ms  (difference = cyclic GC passes)")
    print(f"  encode (≈ baseline)            {med_base * 1e3:8.1f} ms")
    print(f"  baseline again                 {med_brk_base * 1e3:8.1f} ms")
    nogc_ratio = med_render_nogc / med_brk_base
    print(
        f"  render with gc disabled        {med_render_nogc * 1e3:8.1f} ms  → ratio {nogc_ratio:.3f} "
        "(the text format is written directly, so the GC has little to do)"
    )
    print(f"cached path (same version again): {statistics.median(cached) * 1e6:.2f} µs per render")

    if args.http_seconds > 0:
        r = asyncio.run(http_throughput(renderer, args.http_clients, args.http_seconds))
        rps = r["requests"] / r["seconds"]
        print(f"HTTP (cached body, aiohttp on 127.0.0.1, {args.http_clients} clients in a child process, "
              f"{r['seconds']:.1f} s): {rps:.1f} req/s, {r['bytes'] / r['seconds'] / 1e6:.0f} MB/s, "
              f"{r['errors']} errors (report only)")  # fmt: skip

    if args.profile or ratio > GOAL:
        profile_render(store, renderer, top=15)

    verdict = "MEETS" if ratio <= GOAL else "MISSES"
    print(f"\nVERDICT: {verdict} goal — uncached render is {ratio:.2f}× bare prometheus_client "
          f"for {series} series (goal ≤ {GOAL}×)")  # fmt: skip


if __name__ == "__main__":
    main()
