"""Source that evaluates one PromQL query per trigger through Prometheus' `/api/v1/query` (several exporters)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from .metadata import Trigger
from .readings import Unavailable
from .source import Source

log = logging.getLogger("horizon_keda.scaler.prometheus")

_SERIES = {
    ("processes", False): "horizon_microservice_processes",
    ("processes", True): "horizon_queue_processes",
    ("queueLength", True): "horizon_queue_length",
    ("queueLength", False): "horizon_queue_length",
    ("waitSeconds", True): "horizon_queue_wait_seconds",
    ("waitSeconds", False): "horizon_queue_wait_seconds",
}


def _label(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def promql(trigger: Trigger) -> tuple[str, str]:
    """The value query and the sample-age query for a trigger.

    `max` folds the identical series of several exporter replicas scraping the same Horizon; a backlog over
    all queues is the sum of the per-queue maxima. An unknown microservice gives an empty result: unavailable.
    """
    series = _SERIES[(trigger.metric, trigger.queue is not None)]
    labels = f"microservice={_label(trigger.microservice)}"
    if trigger.queue is not None:
        labels += f",queue={_label(trigger.queue)}"
    selector = f"{series}{{{labels}}}"
    if trigger.metric == "queueLength" and trigger.queue is None:
        value = f"sum(max by (queue) ({selector}))"
    else:
        value = f"max({selector})"
    return value, f"min(timestamp({selector}))"


def scalar(body: Any, query: str) -> float:
    """The single number of an instant-vector answer; empty, NaN or malformed → Unavailable (never 0)."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise Unavailable(f"prometheus query {query!r} failed: {error or 'malformed answer'}")
    result = body.get("data", {}).get("result")
    if not isinstance(result, list) or not result:
        raise Unavailable(f"prometheus query {query!r} returned no series (not scraped, or no such microservice)")
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise Unavailable(f"prometheus query {query!r}: malformed sample {result[0]!r}") from None
    if not math.isfinite(value):
        raise Unavailable(f"prometheus query {query!r} returned {value}")
    return value


class PrometheusSource(Source):
    """Asks Prometheus on every read; a timer re-checks `/-/ready` and wakes the streams every `interval`."""

    def __init__(
        self,
        prometheus_url: str,
        max_staleness: float,
        *,
        interval: float = 5.0,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.url = prometheus_url.rstrip("/")
        self.max_staleness = max_staleness
        self.interval = interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._ready = False
        self._error = "not checked yet"
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})
        await self._check()
        self._task = asyncio.create_task(self._tick(), name="prometheus-tick")

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
        return self._ready

    @property
    def description(self) -> str:
        return f"prometheus {self.url}: {'ready' if self._ready else self._error}"

    async def _check(self) -> None:
        assert self._session is not None
        try:
            async with self._session.get(f"{self.url}/-/ready", timeout=self._timeout) as resp:
                ready, error = resp.status == 200, f"/-/ready answered HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ready, error = False, f"unreachable: {exc or type(exc).__name__}"
        if ready != self._ready:
            level = logging.INFO if ready else logging.WARNING
            log.log(level, "prometheus %s: %s", self.url, "ready" if ready else error)
        self._ready, self._error = ready, error

    async def _tick(self) -> None:
        # Prometheus cannot push, so this one loop is a timer: streams re-evaluate once per interval.
        while True:
            await asyncio.sleep(self.interval)
            await self._check()
            self.changes.publish()

    async def _query(self, query: str) -> float:
        assert self._session is not None
        try:
            async with self._session.get(
                f"{self.url}/api/v1/query", params={"query": query}, timeout=self._timeout
            ) as resp:
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"prometheus {self.url} unreachable: {exc or type(exc).__name__}") from None
        return scalar(body, query)

    async def read(self, trigger: Trigger) -> float:
        if self._session is None:
            raise Unavailable(f"prometheus {self.url}: source not started")
        value_query, age_query = promql(trigger)
        value, sampled_at = await asyncio.gather(self._query(value_query), self._query(age_query))
        age = self._clock() - sampled_at
        if age > self.max_staleness:
            raise Unavailable(f"{trigger.microservice}: newest sample is {age:.1f}s old (max staleness "
                              f"{self.max_staleness:g}s)")  # fmt: skip
        return value
