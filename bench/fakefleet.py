"""The fake Horizon fleet of the benchmarks: N fake Horizons in one aiohttp process, changing and failing on cue.

Horizon 5's exact payload shapes (`simulator.payloads`), one path prefix per Horizon (`/<name>/horizon/api/...`),
bodies pre-serialised. Every second `--churn` of the microservices change (queue length and wait, jobs per
minute, ±1 process). With `--faults SHARE`, up to that share of the Horizons fail at once, each for a while, then
recover (below). Used by fleet.py and soak.py; run on its own:

    .venv/bin/python bench/fakefleet.py a:200 --port 9300 --faults 0.05
    curl -s 127.0.0.1:9300/-/info; curl -s 127.0.0.1:9300/-/faults
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# How a failing Horizon answers: 500 with an HTML page, Horizon's catch-all HTML with 200 (a login page), the
# connection closed without an answer, or no answer until the client gives up.
FAULT_KINDS = ("http_500", "html", "close", "hang")
HANG_SECONDS = 10.0  # longer than the exporter's and the probes' timeouts in soak.py
HTML = "<!doctype html><html><head><title>Horizon</title></head><body><div id='horizon'></div></body></html>"


def _specs(kind: str, n: int) -> list[Any]:
    from simulator.model import HorizonSpec, MicroserviceSpec, QueueSpec, SupervisorSpec

    if kind == "a":  # one Horizon per microservice, two queues, one balanced supervisor, two pods
        return [
            HorizonSpec(f"ms{i:05d}", (MicroserviceSpec(
                f"ms{i:05d}",
                queues=(QueueSpec("default", 0.6, 1.0, 10.0), QueueSpec("emails", 1.5, 0.2, 2.0)),
                supervisors=(SupervisorSpec("supervisor-1", ("default", "emails"), max_processes=20),),
                pods=2,
            ),))
            for i in range(n)
        ]  # fmt: skip
    microservices = tuple(
        MicroserviceSpec(
            f"ms{i:05d}",
            queues=(QueueSpec(f"ms{i:05d}-jobs", 0.5, 0.5, 5.0),),
            supervisors=(SupervisorSpec(f"ms{i:05d}-worker", (f"ms{i:05d}-jobs",), max_processes=20),),
        )
        for i in range(n)
    )
    return [HorizonSpec("core", microservices)]


@dataclass
class FakeHorizon:
    """One fake Horizon's payloads (mutable dicts) and their serialised bodies."""

    name: str
    payloads: dict[str, Any]
    bodies: dict[str, bytes] = field(default_factory=dict)
    dirty: bool = True

    def serialise(self) -> None:
        if self.dirty:
            self.bodies = {k: json.dumps(v).encode() for k, v in self.payloads.items()}
            self.dirty = False


class Fleet:
    """The fake fleet: payloads per Horizon and, per microservice, the dicts to change."""

    def __init__(self, kind: str, n: int, seed: int = 1) -> None:
        from simulator.model import Fleet as ModelFleet
        from simulator.payloads import horizon_payloads

        self.rng = random.Random(seed)
        model = ModelFleet(_specs(kind, n), seed)
        self.horizons: dict[str, FakeHorizon] = {}
        self.supervisors: dict[str, list[dict[str, Any]]] = {}  # microservice -> its supervisors (every master)
        self.rows: dict[str, list[dict[str, Any]]] = {}  # microservice -> its workload rows
        self.owner: dict[str, FakeHorizon] = {}
        for name, state in model.horizons.items():
            stats, workload, masters = horizon_payloads(state)
            h = FakeHorizon(name, {"stats": stats, "workload": workload, "masters": masters})
            self.horizons[name] = h
            for master in masters.values():
                for sup in master["supervisors"]:
                    ms = name if kind == "a" else sup["name"].split(":", 1)[1].removesuffix("-worker")
                    self.supervisors.setdefault(ms, []).append(sup)
                    self.owner[ms] = h
            for row in workload:
                ms = name if kind == "a" else row["name"].removesuffix("-jobs")
                self.rows.setdefault(ms, []).append(row)
        self.microservices = sorted(self.supervisors)
        for h in self.horizons.values():
            h.serialise()

    def set_processes(self, microservice: str, processes: int) -> None:
        sup = self.supervisors[microservice][0]
        first = next(iter(sup["processes"]))
        sup["processes"] = {k: (processes if k == first else v) for k, v in sup["processes"].items()}
        h = self.owner[microservice]
        h.dirty = True
        h.serialise()

    def churn(self, fraction: float, frozen: set[str]) -> int:
        pool = [m for m in self.microservices if m not in frozen]
        chosen = self.rng.sample(pool, min(len(pool), round(fraction * len(self.microservices))))
        for ms in chosen:
            for row in self.rows.get(ms, []):
                row["length"] = self.rng.randint(0, 40)
                row["wait"] = row["length"] // 2
            sup = self.supervisors[ms][-1]
            key = next(iter(sup["processes"]))
            moved = max(1, min(6, sup["processes"][key] + self.rng.choice((-1, 1))))
            sup["processes"] = {**sup["processes"], key: moved}
            h = self.owner[ms]
            h.payloads["stats"]["jobsPerMinute"] = self.rng.randint(0, 500)
            h.dirty = True
        for h in {self.owner[ms].name: self.owner[ms] for ms in chosen}.values():
            h.serialise()
        return len(chosen)


@dataclass(frozen=True)
class Fault:
    """One Horizon failing from `start` to `end` (Unix times; the end is planned when the fault starts)."""

    horizon: str
    kind: str
    start: float
    end: float


class Faults:
    """Horizons failing for a while and then recovering: each second, while fewer than `share` of them fail, one
    more starts failing, in one of `FAULT_KINDS`, for `durations` seconds (uniform). Its history is the record
    that tells an expected error (the Horizon was failing) from an unexpected one."""

    def __init__(self, horizons: list[str], share: float, seed: int = 2, durations: tuple[float, float] = (3.0, 45.0),
                 exempt: set[str] | frozenset[str] = frozenset()) -> None:  # fmt: skip
        self.rng = random.Random(seed)
        self.pool = [h for h in horizons if h not in exempt]
        self.limit = min(len(self.pool), round(share * len(horizons)))
        self.durations = durations
        self.active: dict[str, Fault] = {}
        self.history: list[Fault] = []

    def tick(self, now: float) -> None:
        """End the faults that are over; start one more when fewer than the share fail."""
        for name, f in list(self.active.items()):
            if f.end <= now:
                del self.active[name]
        if len(self.active) < self.limit:
            name = self.rng.choice([h for h in self.pool if h not in self.active])
            f = Fault(name, self.rng.choice(FAULT_KINDS), now, now + self.rng.uniform(*self.durations))
            self.active[name] = f
            self.history.append(f)

    def kind(self, horizon: str, now: float) -> str | None:
        """How `horizon` fails at `now`, or None (exact to the planned end, whenever the next tick comes)."""
        f = self.active.get(horizon)
        return f.kind if f is not None and f.start <= now < f.end else None


async def failing_answer(request: Any, kind: str) -> Any:
    """The answer of a Horizon failing in `kind`."""
    from aiohttp import web

    if kind == "http_500":
        return web.Response(status=500, text="<html>Server Error</html>", content_type="text/html")
    if kind == "html":
        return web.Response(text=HTML, content_type="text/html")
    if kind == "close":
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # never written: the connection is gone
    await asyncio.sleep(HANG_SECONDS)
    return web.Response(status=503, text="late", content_type="text/plain")


def serve(kind: str, n: int, port: int, churn: float, subjects: int, faults: float = 0.0, seed: int = 2) -> None:
    """The fake fleet on 127.0.0.1:port until SIGTERM."""
    from aiohttp import web

    fleet = Fleet(kind, n)
    frozen = set(fleet.microservices[:subjects])
    for ms in frozen:
        fleet.set_processes(ms, 1)
    # Subjects (fleet.py's push-latency flips) never fail.
    failing = Faults(list(fleet.horizons), faults, seed, exempt=frozen) if faults > 0 else None

    async def endpoint(request: web.Request) -> web.Response:
        name = request.match_info["horizon"]
        h = fleet.horizons.get(name)
        what = request.match_info["endpoint"]
        if h is None or what not in h.bodies:
            return web.Response(status=404, text="not found")
        fault = failing.kind(name, time.time()) if failing is not None else None
        if fault is not None:
            return await failing_answer(request, fault)
        return web.Response(body=h.bodies[what], content_type="application/json")

    async def set_processes(request: web.Request) -> web.Response:
        body = await request.json()
        fleet.set_processes(body["microservice"], int(body["processes"]))
        return web.json_response({"applied_at": time.time()})

    async def info(request: web.Request) -> web.Response:
        sizes = {k: len(v) for k, v in next(iter(fleet.horizons.values())).bodies.items()}
        return web.json_response({"horizons": list(fleet.horizons), "microservices": fleet.microservices,
                                  "subjects": sorted(frozen), "bytes": sizes})  # fmt: skip

    async def fault_history(request: web.Request) -> web.Response:
        return web.json_response([asdict(f) for f in failing.history] if failing is not None else [])

    async def churning(app: web.Application) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(1.0)
                fleet.churn(churn, frozen)
                if failing is not None:
                    failing.tick(time.time())

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app = web.Application()
    app.cleanup_ctx.append(churning)
    app.router.add_get("/{horizon}/horizon/api/{endpoint}", endpoint)
    app.router.add_post("/-/set", set_processes)
    app.router.add_get("/-/info", info)
    app.router.add_get("/-/faults", fault_history)
    # shutdown_timeout: requests of a Horizon failing with "hang" must not hold the shutdown for HANG_SECONDS.
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, shutdown_timeout=1.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", help="kind:N, a = N Horizons with one microservice each, b = one Horizon with N")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--churn", type=float, default=0.05, help="share of microservices changing per second")
    p.add_argument("--subjects", type=int, default=0, help="microservices kept at 1 process (fleet.py's flips)")
    p.add_argument("--faults", type=float, default=0.0, help="share of the Horizons failing at once")
    p.add_argument("--seed", type=int, default=2, help="of the faults")
    args = p.parse_args()
    kind, n = args.case.split(":")
    serve(kind, int(n), args.port, args.churn, args.subjects, args.faults, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
