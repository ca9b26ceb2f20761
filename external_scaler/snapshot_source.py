"""Source that follows the exporter's `/api/v1/snapshot?after=N&timeout=S` long-poll (the sidecar topology)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import aiohttp

from .metadata import Trigger
from .readings import ExporterView, Unavailable, parse_document, read_value
from .source import Source

log = logging.getLogger("horizon_keda.scaler.snapshot")

MAX_BODY_BYTES = 8 * 1024 * 1024


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ValueError as soon as it is known to exceed `limit` bytes (stops reading there).

    `resp.content.read(n)` returns only what has arrived so far, so a document larger than one chunk must be
    read to EOF. (exporter.client has the same loop; the scaler knows the exporter only by its HTTP contract.)
    """
    if resp.content_length is not None and resp.content_length > limit:
        raise ValueError(f"snapshot of {resp.content_length} bytes is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise ValueError(f"snapshot over the limit of {limit} bytes")
    return bytes(body)


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
    ) -> None:
        super().__init__()
        self.url = exporter_url.rstrip("/") + "/api/v1/snapshot"
        self.max_staleness = max_staleness
        self.max_body_bytes = max_body_bytes
        # The exporter answers a long-poll at the latest after `wait` seconds, which keeps `received_at` fresh.
        self.wait = min(30.0, max(0.5, max_staleness / 2))
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
    def description(self) -> str:
        state = self._error or f"snapshot version {self._view.version if self._view else '-'}"
        return f"exporter {self.url}: {state}"

    async def read(self, trigger: Trigger) -> float:
        return self.read_now(trigger)

    def read_now(self, trigger: Trigger) -> float:
        """Synchronous `read`: the snapshot is already in memory."""
        view, now = self._view, self._clock()
        if self._error is not None or view is None:
            raise Unavailable(f"exporter {self.url}: {self._error}")
        if now - view.received_at > self.max_staleness:
            raise Unavailable(f"exporter {self.url}: no answer for {now - view.received_at:.1f}s")
        return read_value(view, trigger, now, self.max_staleness)

    async def _fetch(self, after: int | None) -> ExporterView:
        assert self._session is not None
        params = {} if after is None else {"after": str(after), "timeout": f"{self.wait:g}"}
        timeout = aiohttp.ClientTimeout(total=self.wait + 5.0, connect=2.0)
        async with self._session.get(self.url, params=params, timeout=timeout) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} from the snapshot API")
            if resp.content_type != "application/json":
                raise ValueError(f"not JSON (Content-Type {resp.content_type})")
            body = await read_capped(resp, self.max_body_bytes)
        return parse_document(json.loads(body), self._clock())

    async def _follow(self) -> None:
        backoff = self._backoff[0]
        after: int | None = None
        while True:
            try:
                view = await self._fetch(after)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
                if self._error is None:
                    log.warning("exporter %s unreachable: %s; retrying with backoff", self.url, reason)
                self._error = f"unreachable: {reason}"
                self.changes.publish()
                # Ask for the current snapshot on reconnect: a restarted exporter may never pass our old version.
                after = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff[1])
                continue
            if self._error is not None and self._view is not None:
                log.info("exporter %s reachable again at snapshot version %d", self.url, view.version)
            backoff = self._backoff[0]
            # Always take the answer: a restarted exporter counts from 1 again.
            self._view, self._error, after = view, None, view.version
            self.changes.publish()
