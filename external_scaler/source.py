"""The one interface the servicer reads through, and the change broadcast that wakes StreamIsActive."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from .metadata import Trigger


class Broadcast:
    """A version counter with waiters: `publish` wakes everyone; waiters never poll and hold no tasks."""

    def __init__(self) -> None:
        self.version = 0
        # When the newest version was published (time.monotonic): a push's latency is measured from here.
        self.published_at = time.monotonic()
        self._event = asyncio.Event()

    def publish(self) -> None:
        """Announce that readings may have changed."""
        self.version += 1
        self.published_at = time.monotonic()
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, after: int, timeout: float) -> int:
        """Return the version once it is greater than `after`, or the current one after `timeout` seconds."""
        if self.version > after:
            return self.version
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            pass
        return self.version


class Source(ABC):
    """Where the scaler's numbers come from. `read` raises readings.NotFound / readings.Unavailable, never guesses."""

    def __init__(self) -> None:
        self.changes = Broadcast()

    @abstractmethod
    async def start(self) -> None:
        """Open connections and start following the upstream."""

    @abstractmethod
    async def close(self) -> None:
        """Stop following and release every connection."""

    @property
    @abstractmethod
    def fresh(self) -> bool:
        """The upstream answered recently enough to be trusted (drives grpc.health.v1)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One line for logs: what is followed and how it is doing."""

    @abstractmethod
    async def read(self, trigger: Trigger) -> float:
        """The trigger's current value."""

    @property
    def age(self) -> float | None:
        """Seconds since the upstream last answered successfully; None before its first answer."""
        return None

    def microservices(self) -> Mapping[str, Mapping[str, Any]] | None:
        """Every microservice the upstream reports, as the snapshot document's `microservices` entries (processes,
        up, stale, ...); None when the source has no such list (Prometheus knows only what triggers ask about)."""
        return None

    def upstreams(self) -> list[tuple[str, bool, float | None]]:
        """Each exporter followed, as (base URL, fresh, age): the per-exporter metrics. Empty for other sources."""
        return []
