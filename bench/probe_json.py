"""Probes per second of `/probe`'s work on a 1 MB body with 20 metric definitions, against a bare baseline.

Ours: decode the body once, run the module's 20 definitions (`exporter.jsonexp.extract`), render the text format.
Baseline, same run: `json.loads` of the same body plus bare prometheus_client rendering the very same samples
(pre-built GaugeMetricFamily objects). The ratio is what the mapping engine costs on top of parse + render.

Second part, event-loop stall: whole probes through a running exporter against a loopback upstream serving a
4 MB body, while a ticker measures how late the event loop wakes it. Baseline, same run: the same CPU work
(`read_document`) called on the loop, as /probe did before it moved to a worker thread. json.loads holds the GIL
for its whole call, so the thread cannot hide the decode itself — only the extraction and rendering around it.

    .venv/bin/python bench/probe_json.py [--seconds 3] [--probes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from exporter.app import create_app
from exporter.config import parse_config
from exporter.jsonexp.probe import ModuleClient, read_document

CONFIG = r"""
modules:
  default:
    allowed_targets: ['~http://127\.0\.0\.1:[0-9]+/.*']   # the loopback upstream below
    metrics:
      - {name: app_counter, path: '{.counter}', valuetype: gauge}
      - {name: app_build, path: '{.build.number}', labels: {version: '{.build.version}'}}
      - {name: app_state, path: '{.state}', value_map: {running: 1, paused: 0}}
      - {name: app_items, path: '{.items.length()}'}
      - {name: app_active, path: '{.items[?(@.state == "ACTIVE")].count()}'}
      - {name: app_total, path: '{.items[*].count.sum()}'}
      - {name: app_location, path: '{.meta.replicas}', labels: {location: 'planet-{.location}'}}
      - {name: app_meta_a, path: '{.meta.a}'}
      - {name: app_meta_b, path: '{.meta.b}'}
      - {name: app_meta_c, path: '{.meta.c}'}
      - {name: item, type: object, path: '{.items[*]}', labels: {id: '{.id}', zone: '{.zone}'},
         values: {count: '{.count}', size: '{.size}'}}
      - {name: active_item, type: object, path: '{.items[?(@.state == "ACTIVE")]}', labels: {id: '{.id}'},
         values: {count: '{.count}'}}
      - {name: item_up, type: object, path: '{.items[*]}', labels: {id: '{.id}'},
         values: {up: '{.up}'}}
      - {name: item_load, type: object, path: '{.items[*]}', labels: {id: '{.id}'},
         values: {one: '{.load.one}', five: '{.load.five}'}}
      - {name: pool, type: object, path: '{.pools.*}', labels: {pool: '{@key}'}, values: {size: '{@}'}}
      - {name: region, type: object, path: '{.regions[*]}', labels: {region: '{.name}'}, values: {nodes: '{.nodes}'}}
      - {name: app_meta_d, path: '{.meta.d}'}
      - {name: app_meta_e, path: '{.meta.e}'}
      - {name: app_meta_f, path: '{.meta.f}'}
      - {name: app_meta_g, path: '{.meta.g}'}
"""


def make_body(target_bytes: int = 1_000_000) -> bytes:
    rnd = random.Random(7)
    items = []
    doc = {
        "counter": 1234, "state": "running", "location": "mars", "build": {"number": 42, "version": "1.2.3"},
        "meta": {k: rnd.randint(0, 100) for k in "abcdefg"} | {"replicas": 3},
        "pools": {f"redis:q{i}": rnd.randint(0, 9) for i in range(50)},
        "regions": [{"name": f"r{i}", "nodes": i} for i in range(10)],
        "items": items,
    }  # fmt: skip
    while len(json.dumps(doc)) < target_bytes:
        for _ in range(200):
            n = len(items)
            items.append({
                "id": f"id-{n:06d}", "zone": f"z{n % 7}", "state": "ACTIVE" if n % 3 else "IDLE",
                "count": rnd.randint(0, 1000), "size": rnd.random() * 100, "up": n % 5 != 0,
                "load": {"one": rnd.random(), "five": rnd.random()}, "tags": ["a", "b"], "note": "x" * 20,
            })  # fmt: skip
    return json.dumps(doc).encode()


def baseline_families(ex) -> list[GaugeMetricFamily]:
    fams = []
    for name, family in ex.families.items():
        labels = [k for k, _ in family.samples[0].labels] if family.samples else []
        g = GaugeMetricFamily(name, family.help, labels=labels)
        for s in family.samples:
            g.add_metric([v for _, v in s.labels], s.value)
        fams.append(g)
    return fams


class _Static:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per side (default 3)")
    parser.add_argument("--probes", type=int, default=10, help="whole probes per side in the stall part")
    args = parser.parse_args()
    module = parse_config(yaml.safe_load(CONFIG), "bench", env={}).modules["default"]
    mc = ModuleClient(module)
    body = make_body()
    _, ex, errors, _ = read_document(mc, body, "application/json", "bench", {})
    assert not errors, errors
    n_samples = sum(len(f.samples) for f in ex.families.values())
    registry = CollectorRegistry()
    registry.register(_Static(baseline_families(ex)))

    def ours() -> None:
        lines, _, _, _ = read_document(mc, body, "application/json", "bench", {})
        "\n".join(lines)

    def bare() -> None:
        json.loads(body)
        generate_latest(registry)

    ours_t, bare_t = [], []
    deadline = time.perf_counter() + 2 * args.seconds
    while time.perf_counter() < deadline or len(ours_t) < 5:
        for fn, out in ((ours, ours_t), (bare, bare_t)):  # interleaved: both sides share the machine's noise
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    o, b = statistics.median(ours_t), statistics.median(bare_t)
    print(f"body {len(body) / 1e6:.2f} MB, {len(module.metrics)} metric definitions, {n_samples} samples")
    print(f"{'':24}{'median ms':>10}{'probes/s':>10}")
    print(f"{'horizon-keda /probe':24}{o * 1e3:10.1f}{1 / o:10.1f}")
    print(f"{'json.loads + bare render':24}{b * 1e3:10.1f}{1 / b:10.1f}")
    print(f"ratio (ours / baseline time): {o / b:.2f}   repetitions: {len(ours_t)}")
    asyncio.run(loop_stall(mc, args.probes))


async def _max_lag(work: Callable[[], Awaitable[None]]) -> float:
    """Run `work` while a 1 ms ticker records the worst lateness of the event loop."""
    worst = 0.0
    done = False

    async def tick() -> None:
        nonlocal worst
        while not done:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t0 - 0.001)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)  # the ticker is running before the work starts
    await work()
    done = True
    await ticker
    return worst


async def loop_stall(mc: ModuleClient, probes: int) -> None:
    body = make_body(4_000_000)
    upstream = web.Application()
    upstream.router.add_get("/doc", lambda _: web.Response(body=body, content_type="application/json"))
    up_runner = web.AppRunner(upstream)
    await up_runner.setup()
    await web.TCPSite(up_runner, "127.0.0.1", 0).start()
    up_port = up_runner.addresses[0][1]
    config = parse_config(yaml.safe_load(CONFIG + "max_body_bytes: 8000000\n"), "bench", env={})
    ex_runner = web.AppRunner(create_app(config))
    await ex_runner.setup()
    await web.TCPSite(ex_runner, "127.0.0.1", 0).start()
    probe_url = f"http://127.0.0.1:{ex_runner.addresses[0][1]}/probe"
    target = f"http://127.0.0.1:{up_port}/doc"
    try:
        async with aiohttp.ClientSession() as session:

            async def through_exporter() -> None:
                for _ in range(probes):
                    async with session.get(probe_url, params={"target": target}) as resp:
                        text = await resp.text()
                        assert "probe_success 1" in text, text[-400:]

            async def on_the_loop() -> None:
                for _ in range(probes):
                    read_document(mc, body, "application/json", "bench", {})
                    await asyncio.sleep(0.01)  # let the ticker see each stall

            t0 = time.perf_counter()
            ours = await _max_lag(through_exporter)
            per_probe = (time.perf_counter() - t0) / probes
            before = await _max_lag(on_the_loop)
    finally:
        await ex_runner.cleanup()
        await up_runner.cleanup()
    t0 = time.perf_counter()
    json.loads(body)
    decode = time.perf_counter() - t0
    print(f"\nevent-loop stall, {len(body) / 1e6:.1f} MB body, {probes} probes per side")
    print(f"  whole probe (HTTP, fetch, read, render): {per_probe * 1e3:.0f} ms; one json.loads: {decode * 1e3:.0f} ms")
    print(f"  worst loop lag, /probe (worker thread):  {ours * 1e3:.0f} ms")
    print(f"  worst loop lag, same work on the loop:   {before * 1e3:.0f} ms")
    print(f"  ratio (thread / on the loop): {ours / before:.2f}")


if __name__ == "__main__":
    main()
