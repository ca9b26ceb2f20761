"""The scaler's live status page on the `--metrics-listen` port: `/` (one HTML file under a hash-based
Content-Security-Policy) and `/events` (Server-Sent Events carrying status.py's state document)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from .metrics import TriggerBook
from .source import Broadcast, Source
from .status import HISTORY_SAMPLES, SAMPLE_INTERVAL, History, build_state, current_processes, message

log = logging.getLogger("horizon_keda.scaler.status")


def host_allowed(host: str | None) -> bool:
    """Whether a Host header may see the page: an IP address or localhost (with any port).

    A web page elsewhere could point a DNS name of its own at 127.0.0.1 (DNS rebinding) and read the page through
    an operator's `kubectl port-forward`; such a request carries that name as its Host, so names are refused.
    """
    if not host:
        return False
    if host.startswith("[") and "]" in host:  # [v6] or [v6]:port
        name = host[1 : host.index("]")]
    elif host.count(":") == 1:  # name:port or v4:port
        name = host.split(":", 1)[0]
    else:  # a name, v4, or a bare v6 address
        name = host
    name = name.lower()
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_host(request: web.Request) -> None:
    """403 for a Host the page must not answer (see `host_allowed`)."""
    if not host_allowed(request.headers.get("Host")):
        raise web.HTTPForbidden(text="the status page answers only to an IP address or localhost in the Host header\n")


MAX_CLIENTS = 32  # open /events streams; more get 503 (each costs a little memory and an encode per update)
MIN_GAP = 0.5  # seconds: at most two updates a second, however often the source changes
HEARTBEAT = 15.0  # seconds of silence before a comment line keeps proxies and port-forwards from closing the stream
RETRY_MS = 2000  # EventSource reconnect delay the page is told

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.S)


def load_page() -> str:
    """The page's HTML, as shipped in the package."""
    return resources.files(__package__).joinpath("status_page.html").read_text(encoding="utf-8")


def content_security_policy(html: str) -> str:
    """A policy admitting exactly the page's one inline script and one inline style (by SHA-256), the page's own
    `/events`, and nothing else: no other script, style, font, frame, form target or remote connection."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    if len(hashes["script"]) != 1 or len(hashes["style"]) != 1:
        raise ValueError("status page: expected exactly one inline <script> and one <style>")
    return (
        f"default-src 'none'; script-src {hashes['script'][0]}; style-src {hashes['style'][0]}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
        "require-trusted-types-for 'script'; trusted-types 'none'"
    )


def sse(kind: str, doc: Any) -> bytes:
    """One Server-Sent Event: `event: KIND` and the document as one `data:` line of compact JSON."""
    return f"event: {kind}\ndata: {json.dumps(doc, separators=(',', ':'), allow_nan=False)}\n\n".encode()


class StatusPage:
    """Samples the source once a `sample_interval` into a bounded history, builds the state document when the
    source or a decision changes (at most every `min_gap` seconds, and only while a page is open), and streams it.

    `attach(app)` adds the routes and ties the sampler to the app's life; on the app's shutdown every open stream
    ends at once, so the scaler's SIGTERM path never waits for a browser.
    """

    def __init__(
        self,
        source: Source,
        book: TriggerBook,
        *,
        sample_interval: float = SAMPLE_INTERVAL,
        history: int = HISTORY_SAMPLES,
        min_gap: float = MIN_GAP,
        heartbeat: float = HEARTBEAT,
        max_clients: int = MAX_CLIENTS,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.source, self.book = source, book
        self.sample_interval, self.min_gap, self.heartbeat = sample_interval, min_gap, heartbeat
        self.max_clients = max_clients
        self.wall = wall
        self.history = History(history)
        self.html = load_page().encode()
        self.headers = {
            "Content-Security-Policy": content_security_policy(self.html.decode()),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
        self.clients = 0
        self.published = Broadcast()  # one version per state document built
        self._state: dict[str, Any] | None = None
        self._built_key: tuple[object, ...] | None = None
        self._built_at = -float("inf")
        self._encoded: dict[int | None, bytes] = {}
        self._closing = False

    # -- state -------------------------------------------------------------------------------------------------

    def _key(self) -> tuple[object, ...]:
        return (self.source.changes.version, self.book.version, self.source.fresh)

    def sample(self) -> None:
        """Take one sample of every microservice's process count."""
        self.history.sample(current_processes(self.source.microservices(), self.book.entries))

    def refresh(self, now: float | None = None) -> bool:
        """Build the state document when the source or the book changed since the last one (or none was built);
        wakes the open streams. True when it built one."""
        self.book.prune()
        key = self._key()
        if key == self._built_key and self._state is not None:
            return False
        self._state = build_state(
            self.source.microservices(), self.book.entries, now=self.wall(), book_now=self.book.clock(),
            fresh=self.source.fresh, age=self.source.age, history=self.history,
        )  # fmt: skip
        self._built_key = key
        self._built_at = asyncio.get_running_loop().time() if now is None else now
        self._encoded = {}
        self.published.publish()
        return True

    def event(self, after: int | None) -> bytes:
        """The current document as an event: `state` (everything) for `after` None, else `update` with the samples
        after tick `after`. Encoded once per document and tick, whichever stream asks."""
        cached = self._encoded.get(after)
        if cached is None:
            assert self._state is not None
            doc = message(self._state, self.history, version=self.published.version, after=after)
            cached = self._encoded[after] = sse(doc["kind"], doc)
        return cached

    @property
    def tick(self) -> int:
        """The history tick the current document goes up to."""
        return self._state["history"]["tick"] if self._state is not None else 0

    # -- tasks and handlers ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sample on the interval; rebuild on changes (throttled to `min_gap`) while a stream is open."""
        loop = asyncio.get_running_loop()
        changes = self.source.changes
        next_sample = loop.time()
        while True:
            now = loop.time()
            wake = now + self.sample_interval
            try:
                if now >= next_sample:
                    self.book.prune()  # triggers nobody asks about leave the page as they leave /metrics
                    self.sample()
                    next_sample = max(next_sample + self.sample_interval, now)  # a late loop skips, never bursts
                wake = next_sample
                if self.clients and self._key() != self._built_key:
                    due = self._built_at + self.min_gap
                    if now >= due:
                        self.refresh(now)
                    else:
                        wake = min(wake, due)
            except Exception:  # one bad sample must not freeze the page for good
                log.exception("status page: sampling failed; trying again at the next interval")
                next_sample = now + self.sample_interval
            version = changes.version
            await changes.wait(version, max(0.0, wake - loop.time()))

    async def page(self, request: web.Request) -> web.Response:
        check_host(request)
        return web.Response(body=self.html, content_type="text/html", charset="utf-8", headers=self.headers)

    async def events(self, request: web.Request) -> web.StreamResponse:
        check_host(request)
        if self._closing:
            raise web.HTTPServiceUnavailable(text="shutting down\n")
        if self.clients >= self.max_clients:
            raise web.HTTPServiceUnavailable(
                text=f"the status page already has {self.max_clients} open streams\n", headers={"Retry-After": "10"}
            )
        self.clients += 1  # counted before the first await: the limit holds under a burst of connections
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                     "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip
        try:
            await response.prepare(request)
            self.refresh()
            version, after = self.published.version, self.tick
            await response.write(f"retry: {RETRY_MS}\n".encode() + self.event(None))
            while not self._closing:
                new = await self.published.wait(version, self.heartbeat)
                if self._closing:
                    break
                if new == version:
                    await response.write(b": keep-alive\n\n")
                    continue
                # No await between reading the document and encoding it: both are the same moment.
                version, data, after = self.published.version, self.event(after), self.tick
                await response.write(data)
        except ConnectionResetError:
            pass  # the page went away; nothing to finish
        finally:
            self.clients -= 1
        return response

    async def close(self, app: web.Application | None = None) -> None:
        """End every open stream now (the app's on_shutdown)."""
        self._closing = True
        self.published.publish()

    async def _sampler(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="status-page")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def attach(self, app: web.Application) -> None:
        """Serve `/` and `/events` from `app`, sampling while it runs."""
        app.router.add_get("/", self.page)
        app.router.add_get("/events", self.events)
        app.cleanup_ctx.append(self._sampler)
        app.on_shutdown.append(self.close)
