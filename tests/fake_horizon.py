"""A fake Laravel Horizon for tests: an aiohttp app serving /horizon/api/{stats,workload,masters} from plain data.

Tests set `payloads` and `fault` to make it answer like a healthy, broken or hostile Horizon.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HTML = "<!doctype html><html><head><title>Horizon</title></head><body><div id='horizon'></div></body></html>"


@dataclass
class FakeHorizon:
    """State behind the fake: payloads per endpoint and an optional fault applied to every endpoint."""

    payloads: dict[str, Any] = field(default_factory=dict)
    fault: str | None = None  # "html", "invalid_json", "huge", "stall", "redirect", or "http_<code>"
    requests: list[web.Request] = field(default_factory=list)
    stall: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0
    in_flight: int = 0
    peak_in_flight: int = 0

    def set(self, stats: Any, workload: Any, masters: Any) -> None:
        self.payloads = {"stats": stats, "workload": workload, "masters": masters}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        fault = self.fault
        if fault == "html" or endpoint not in self.payloads:
            return web.Response(text=HTML, content_type="text/html")  # Horizon's catch-all: HTML with 200
        if fault == "invalid_json":
            return web.Response(text='{"processes": 3,', content_type="application/json")
        if fault == "huge":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"pad": "')
            chunk = b"x" * (1024 * 1024)
            for _ in range(50):
                await resp.write(chunk)
            await resp.write(b'"}')
            return resp
        if fault == "stall":
            await self.stall.wait()
        if fault == "redirect":
            raise web.HTTPFound("/login")
        if fault and fault.startswith("http_"):
            return web.Response(status=int(fault[5:]), text="<html>error</html>", content_type="text/html")
        return web.Response(text=json.dumps(self.payloads[endpoint]), content_type="application/json")

    def app(self, prefix: str = "/horizon") -> web.Application:
        app = web.Application()
        app.router.add_get(prefix + "/api/{endpoint}", self.handle)
        return app
