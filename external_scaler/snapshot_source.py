"""Source that follows the exporter's snapshot feed (the sidecar topology): one full document, then deltas.

`/api/v1/snapshot?after=VERSION&timeout=S&since=REVISION&instance=ID` answers when something visible changed (or
after S seconds) with what changed since the copy the scaler holds; an exporter that does not know that copy (it
restarted, or the scaler fell too far behind) answers with the full document, and so does an older exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import aiohttp

from .exporter_auth import ExporterCredentials
from .feed import Feed, OutOfStep
from .metadata import Trigger
from .readings import ExporterView, Located, Stale, Unavailable, read_value
from .source import Broadcast, Source

log = logging.getLogger("horizon_keda.scaler.snapshot")

MAX_BODY_BYTES = 8 * 1024 * 1024


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ValueError as soon as it is known to exceed `limit` bytes (stops reading there).

    `resp.content.read(n)` returns only what has arrived so far, so a document larger than one chunk must be
    read to EOF. (exporter.http has the same loop; the scaler knows the exporter only by its HTTP contract.)
    """
    if resp.content_length is not None and resp.content_length > limit:
        raise ValueError(f"snapshot of {resp.content_length} bytes is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ValueError(f"snapshot over the limit of {limit} bytes")
    return bytes(body)


def failure(exc: BaseException) -> str:
    """What went wrong, in words that never quote the answer: aiohttp's message for an answer that is not valid
    HTTP quotes the offending line, which can echo the scaler's own Authorization header back."""
    if isinstance(exc, TimeoutError):
        return "no complete answer in time"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "the answer is not valid HTTP"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON at line {exc.lineno} column {exc.colno}"
    return str(exc) or type(exc).__name__


class SnapshotSource(Source):
    """Keeps the newest snapshot document; each answer of the long-poll replaces it and wakes the streams."""

    def __init__(
        self,
        exporter_url: str,
        max_staleness: float,
        *,
        clock: Callable[[], float] = time.time,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        min_gap: float = 0.05,
        credentials: ExporterCredentials | None = None,
        server_hostname: str | None = None,
        changes: Broadcast | None = None,
    ) -> None:
        """`credentials`: TLS trust, client certificate and basic auth for a protected exporter (re-read on change).
        `server_hostname`: the name an https exporter's certificate is checked against (and sent as SNI) when the
        URL names one of its addresses instead. `changes`: publish there (a fan-in's broadcast) instead of our own.
        """
        super().__init__()
        if changes is not None:
            self.changes = changes
        self.credentials = credentials
        self.server_hostname = server_hostname
        self.base_url = exporter_url.rstrip("/")
        self.url = self.base_url + "/api/v1/snapshot"
        self.max_staleness = max_staleness
        self.max_body_bytes = max_body_bytes
        # The exporter answers a long-poll at the latest after `wait` seconds; that answer carries the targets'
        # freshness (a poll that changed nothing visible wakes no one), so the data the scaler holds is at most
        # wait + one poll interval old: `wait` leaves room for both within max_staleness.
        self.wait = min(30.0, max(0.5, max_staleness / 2))
        self._feed: Feed | None = None
        # After an answer, wait this long before asking again: in a busy fleet, changes arriving within it come
        # in one answer, so the scaler's cost follows min(changes, 1 / min_gap); a push comes at most min_gap later.
        self.min_gap = min_gap
        self.fulls = self.deltas = 0  # documents applied, by kind (tests and logs)
        self._clock = clock
        self._backoff = (backoff_initial, backoff_max)
        self._view: ExporterView | None = None
        self._error: str | None = "no snapshot received yet"
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})
        self._task = asyncio.create_task(self._follow(), name="snapshot-follow")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        self._task = self._session = None

    @property
    def fresh(self) -> bool:
        view = self._view
        return self._error is None and view is not None and self._clock() - view.received_at <= self.max_staleness

    @property
    def age(self) -> float | None:
        view = self._view
        return None if view is None else self._clock() - view.received_at

    def microservices(self) -> Mapping[str, Mapping[str, Any]]:
        """The newest document's microservices (kept while the exporter is unreachable; empty before the first)."""
        view = self._view
        return view.microservices if view is not None else MappingProxyType({})

    @property
    def description(self) -> str:
        state = self._error or f"snapshot version {self._view.version if self._view else '-'}"
        return f"exporter {self.url}: {state}"

    @property
    def view(self) -> ExporterView | None:
        """The newest snapshot received (kept while the exporter is unreachable); None before the first."""
        return self._view

    def upstreams(self) -> list[tuple[str, bool, float | None]]:
        return [(self.base_url, self.fresh, self.age)]

    async def read(self, trigger: Trigger) -> float:
        return self.read_now(trigger)

    def read_now(self, trigger: Trigger) -> float:
        """Synchronous `read`: the snapshot is already in memory."""
        view, now = self._view, self._clock()
        if self._error is not None or view is None:
            raise Unavailable(f"exporter {self.url}: {self._error}")
        if now - view.received_at > self.max_staleness:
            raise Stale(f"exporter {self.url}: no answer for {now - view.received_at:.1f}s")
        return read_value(view, trigger, now, self.max_staleness)

    def _wait_for(self, feed: Feed) -> float:
        poll = feed.poll_interval
        return min(self.wait, max(0.5, (self.max_staleness - poll) / 2)) if poll is not None else self.wait

    async def _fetch(self, feed: Feed | None) -> tuple[Any, float]:
        assert self._session is not None
        params: dict[str, str] = {}
        wait = 0.0
        if feed is not None:
            wait = self._wait_for(feed)
            params = {"after": str(feed.version), "timeout": f"{wait:g}"}
            if feed.can_follow_deltas:
                params.update(since=str(feed.revision), instance=str(feed.instance))
        timeout = aiohttp.ClientTimeout(total=wait + 5.0, connect=2.0)
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            self.credentials.refresh()  # a rotated password or certificate applies to the next request
            kwargs = {"headers": self.credentials.headers, "ssl": self.credentials.ssl}
        if self.server_hostname is not None:
            kwargs["server_hostname"] = self.server_hostname
        async with self._session.get(self.url, params=params, timeout=timeout, **kwargs) as resp:
            if resp.status == 401:
                raise ValueError("HTTP 401 from the snapshot API: the exporter wants credentials these are not "
                                 "(--exporter-username, --exporter-password-file)")  # fmt: skip
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} from the snapshot API")
            if resp.content_type != "application/json":
                raise ValueError("not JSON (the Content-Type is not application/json)")
            body = await read_capped(resp, self.max_body_bytes)
        return json.loads(body), self._clock()

    def _take(self, doc: Any, received_at: float) -> ExporterView:
        """Apply one answer to the copy and make the view readers use (memos kept for untouched microservices)."""
        old = self._view
        if isinstance(doc, dict) and doc.get("kind") == "delta" and self._feed is not None:
            touched: set[str] | None = self._feed.apply(doc)
            self.deltas += 1
        else:
            self._feed = Feed.from_document(doc)
            touched = None
            self.fulls += 1
        feed = self._feed
        located: dict[Trigger, Located] = {}
        if old is not None and touched is not None:
            located = {t: loc for t, loc in old.located.items() if t.microservice not in touched}
        return ExporterView(feed.version, received_at, MappingProxyType(feed.microservices), located,
                            MappingProxyType(feed.targets))  # fmt: skip

    async def _follow(self) -> None:
        backoff = self._backoff[0]
        while True:
            try:
                doc, received_at = await self._fetch(self._feed)
                view = self._take(doc, received_at)
            except OutOfStep as exc:
                log.info("exporter %s: %s; asking for the full snapshot", self.url, exc)
                self._feed = None
                continue
            except (aiohttp.ClientError, TimeoutError, ValueError, TypeError, AttributeError) as exc:
                # ExporterAuthError is a ValueError; TypeError/AttributeError: a document of an unexpected shape
                # that got past the checks must cost one answer, not the follower.
                reason = failure(exc)
                if self._error is None:
                    log.warning("exporter %s unreachable: %s; retrying with backoff", self.url, reason)
                self._error = f"unreachable: {reason}"
                self.changes.publish()
                # Ask for the whole snapshot on reconnect: a restarted exporter may never pass our old version.
                self._feed = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff[1])
                continue
            if self._error is not None and self._view is not None:
                log.info("exporter %s reachable again at snapshot version %d", self.url, view.version)
            backoff = self._backoff[0]
            self._view, self._error = view, None
            self.changes.publish()
            await asyncio.sleep(self.min_gap)
