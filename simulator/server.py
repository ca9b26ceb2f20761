"""The simulator's aiohttp app: every simulated Horizon at `/<name>/horizon/api/…`, a clock-driven model, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .model import Fleet, HorizonState
from .payloads import masters_payload, stats_payload, workload_payload

# Fault kinds for `--fault NAME=KIND`: what a Horizon (or, for `down`, also one microservice) answers instead.
FAULTS: dict[str, str] = {
    "forbidden": "403, as Horizon's gate answers a client it does not admit",
    "html": "200 with the HTML dashboard, as a wrong path or a login page does",
    "error": "500 HTML error page",
    "maintenance": "503, as `artisan down` answers",
    "down": "no live master: its pods are gone from the API (stats inactive, masters [], wait [])",
}

HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Horizon - {name}</title></head>
<body><div id="horizon" v-cloak><router-view></router-view></div>
<script>window.Horizon = {{"path": "{name}/horizon"}};</script></body></html>
"""
_ERRORS = {"forbidden": 403, "error": 500, "maintenance": 503}
_ENDPOINTS = {"stats": stats_payload, "workload": workload_payload, "masters": masters_payload}


@dataclass(slots=True)
class Simulator:
    """A fleet bound to a clock: simulated time = `start_at` + (clock() − clock at start) × `speed`.

    `clock` defaults to the running event loop's clock; tests pass their own and move it by hand.
    `faults` maps a Horizon (or, for `down`, a microservice) to a kind from `FAULTS`; it may change at runtime.
    """

    fleet: Fleet
    speed: float = 1.0
    clock: Callable[[], float] | None = None
    start_at: float = 0.0
    faults: dict[str, str] = field(default_factory=dict)
    interval: float = 0.25  # real seconds between background advances
    _origin: float | None = None

    def start(self) -> None:
        if self.clock is None:
            self.clock = asyncio.get_running_loop().time
        self._origin = self.clock()
        self.fleet.advance(max(self.start_at, self.fleet.time))

    def now(self) -> float:
        """Simulated seconds since the fleet's t = 0."""
        if self.clock is None or self._origin is None:
            return self.start_at
        return self.start_at + max(0.0, self.clock() - self._origin) * self.speed

    def sync(self) -> None:
        """Bring the fleet up to the clock."""
        self.fleet.advance(max(self.now(), self.fleet.time))


SIMULATOR = web.AppKey("simulator", Simulator)


def check_fault(fleet: Fleet, name: str, kind: str) -> None:
    """Raise ValueError unless `kind` is known and `name` is a Horizon (or, for `down`, a microservice)."""
    if kind not in FAULTS:
        raise ValueError(f"unknown fault {kind!r}; expected one of: {', '.join(FAULTS)}")
    microservices = {ms for h in fleet.horizons.values() for ms in h.microservices}
    if name not in fleet.horizons and not (kind == "down" and name in microservices):
        allowed = sorted(fleet.horizons) + (sorted(microservices - set(fleet.horizons)) if kind == "down" else [])
        raise ValueError(f"fault {kind} applies to one of: {', '.join(allowed)}; got {name!r}")


def _horizon(request: web.Request) -> HorizonState:
    sim = request.app[SIMULATOR]
    name = request.match_info["horizon"]
    if name not in sim.fleet.horizons:
        raise web.HTTPNotFound(text=f"no simulated Horizon {name!r}; see /\n")
    sim.sync()
    return sim.fleet.horizons[name]


def _error_fault(sim: Simulator, h: HorizonState) -> web.Response | None:
    kind = sim.faults.get(h.name)
    if kind == "html":
        return web.Response(text=HTML.format(name=h.name), content_type="text/html")
    if kind in _ERRORS:
        status = _ERRORS[kind]
        return web.Response(status=status, text=f"<html><body>{status}</body></html>", content_type="text/html")
    return None


async def _api(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    h = _horizon(request)
    faulted = _error_fault(sim, h)
    if faulted is not None:
        return faulted
    if sim.faults.get(h.name) == "down":
        live: list[str] = []
    else:
        live = [ms for ms in h.microservices if sim.faults.get(ms) != "down"]
    payload: Any = _ENDPOINTS[request.match_info["endpoint"]](h, live)
    return web.Response(text=json.dumps(payload), content_type="application/json")


async def _catch_all(request: web.Request) -> web.Response:
    # Horizon's `/{view?}` route: any other path under the prefix, even a mistyped /api/…, is the dashboard.
    h = _horizon(request)
    dashboard = web.Response(text=HTML.format(name=h.name), content_type="text/html")
    return _error_fault(request.app[SIMULATOR], h) or dashboard


async def _index(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    sim.sync()
    base = str(request.url.origin())
    lines = [
        f"horizon-simulator: t={sim.fleet.time}s, speed {sim.speed:g}x, seed {sim.fleet.seed}",
        "Horizon base URLs (each serves /api/stats, /api/workload, /api/masters):",
    ]
    loop = request.app.get(LOOP)
    if loop is not None:
        lines.insert(1, f"simulated KEDA + HPA + cluster scaling pods through the scaler: {base}/-/live")
    for h in sim.fleet.horizons.values():
        kind = "topology (a)" if h.spec.dedicated else "topology (b), shared"
        fault = f"  [fault: {sim.faults[h.name]}]" if h.name in sim.faults else ""
        lines.append(f"  {base}/{h.name}/horizon    {kind}{fault}")
        for ms in h.microservices:
            down = "  [fault: down]" if sim.faults.get(ms) == "down" else ""
            pods = sum(1 for m in h.masters if m.microservice == ms)
            lines.append(f"      {ms}: processes {h.processes(ms)}, pods {pods}{down}")
    return web.Response(text="\n".join(lines) + "\n")


async def _advance_in_background(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIMULATOR]
    sim.start()

    async def run() -> None:
        while True:
            sim.sync()
            await asyncio.sleep(sim.interval)

    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


LOOP = web.AppKey("live_loop", object)


async def _live(request: web.Request) -> web.Response:
    loop = request.app.get(LOOP)
    if loop is None:
        raise web.HTTPNotFound(text="no simulated KEDA here: start horizon-simulator with --keda HOST:PORT\n")
    request.app[SIMULATOR].sync()
    return web.json_response(loop.status())  # type: ignore[attr-defined]


def _run_loop_in_background(factory: Callable[[Simulator], Any]) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        loop = factory(app[SIMULATOR])
        app[LOOP] = loop
        task = asyncio.create_task(loop.run(), name="live-loop")

        def report(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log = logging.getLogger("horizon_keda.simulator.live")
                log.error("the live loop stopped", exc_info=done.exception())

        task.add_done_callback(report)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def create_app(sim: Simulator, live: Callable[[Simulator], Any] | None = None) -> web.Application:
    """The aiohttp application serving every Horizon of `sim.fleet`; the model advances with `sim`'s clock.

    `live`, when given, builds the closed loop (simulator.live.LiveLoop) that scales the fleet's pods; it runs
    beside the server and `/-/live` shows its state.
    """
    for name, kind in sim.faults.items():
        check_fault(sim.fleet, name, kind)
    app = web.Application()
    app[SIMULATOR] = sim
    app.cleanup_ctx.append(_advance_in_background)
    if live is not None:
        app.cleanup_ctx.append(_run_loop_in_background(live))
    app.router.add_get("/-/live", _live)
    app.router.add_get("/", _index)
    app.router.add_get("/{horizon}/horizon/api/{endpoint:stats|workload|masters}", _api)
    app.router.add_get("/{horizon}/horizon{tail:(/.*)?}", _catch_all)
    return app
