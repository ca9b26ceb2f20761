"""The scaler's HTTP side (`--metrics-listen HOST:PORT`): an aiohttp app factory and its server on the scaler's
event loop. It serves `/metrics`; the status page (status_web.py) adds `/` and `/events` to the app."""

from __future__ import annotations

import ipaddress

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

REGISTRY = web.AppKey("registry", CollectorRegistry)


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) → (host, port); ValueError saying what was expected."""
    expected = f"expected HOST:PORT (e.g. 0.0.0.0:9109 or [::]:9109), got {value!r}"
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(expected)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(expected) from None
    elif ":" in host or "[" in host or "]" in host or any(c.isspace() for c in host):
        raise ValueError(expected)  # a bare IPv6 address is ambiguous with the port separator
    return host, int(port_text)


def create_app(registry: CollectorRegistry) -> web.Application:
    """The scaler's web application: `/metrics` from `registry` (text or OpenMetrics by `Accept`, gzip on
    request). Add routes to it before it starts."""
    app = web.Application()
    app[REGISTRY] = registry
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app


class WebServer:
    """Serves an application on `host:port` on the running event loop; `start` then `stop`."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Bind and serve; returns the bound port. Raises OSError when the address cannot be bound."""
        # No access log: Prometheus scraping every 15 s would fill the scaler's log with nothing worth reading.
        # shutdown_timeout: what a request still running at stop gets; open status streams end on the app's
        # on_shutdown before that, so only a stuck /metrics render could use it.
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_port=False)
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Close the listener and the application."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
