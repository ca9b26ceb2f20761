"""Source that follows, on one timer, the PromQL of every trigger KEDA asks about (Prometheus' `/api/v1/query`;
several exporters behind one Prometheus) and answers from memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from .metadata import Trigger
from .readings import NotFound, Stale, Unavailable
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
    data = body.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or not result:
        raise Unavailable(f"prometheus query {query!r} returned no series (not scraped, or no such microservice)")
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise Unavailable(f"prometheus query {query!r}: malformed sample {result[0]!r}") from None
    if not math.isfinite(value):
        raise Unavailable(f"prometheus query {query!r} returned {value}")
    return value


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation of a trigger's two queries: the value and its newest sample's time, or the failure (its
    class and message; each read raises a fresh exception, so tracebacks never pile up on one instance)."""

    value: float = 0.0
    sampled_at: float = 0.0
    failure: tuple[type[Exception], str] | None = None

    def seen(self, now: float, max_staleness: float) -> tuple[object, ...]:
        """What a reader would see at `now`; a change of it wakes the streams."""
        if self.failure is not None:
            return self.failure
        return self.value, now - self.sampled_at > max_staleness


@dataclass(slots=True)
class _Followed:
    """A trigger KEDA asked about: when it last asked, the latest evaluation, what the last tick saw of it, and its
    first (on-demand) evaluation while that is in flight."""

    asked_at: float
    evaluation: Evaluation | None = None
    seen: tuple[object, ...] = ()
    first: asyncio.Task[Evaluation] | None = None


class PrometheusSource(Source):
    """Follows every trigger KEDA asks about on one timer and answers from memory (kedacore/http-add-on's pattern).

    Every `interval` seconds one task re-checks `/-/ready` and re-evaluates the followed triggers, at most
    `concurrency` at once (two queries each). A trigger first seen by a read is evaluated on demand once, then
    joins the timer. A trigger nobody asked about for `forget_after` seconds (default 10 × interval, at least 60 s:
    KEDA asks at least every pollingInterval, 30 s by default, or every 15 s HPA sync) is forgotten, and at most
    `max_triggers` are followed (the least recently asked goes first), so memory stays bounded whatever triggers
    clients invent. `clock` is wall time: it ages Prometheus' sample timestamps and idle triggers.
    """

    def __init__(
        self,
        prometheus_url: str,
        max_staleness: float,
        *,
        interval: float = 5.0,
        timeout: float = 2.0,
        concurrency: int = 8,
        forget_after: float | None = None,
        max_triggers: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.url = prometheus_url.rstrip("/")
        self.max_staleness = max_staleness
        self.interval = interval
        self.forget_after = max(10 * interval, 60.0) if forget_after is None else forget_after
        self.max_triggers = max_triggers
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        # Separate bounds, so a new trigger's first answer never queues behind a long tick.
        self._tick_slots = asyncio.Semaphore(concurrency)
        self._demand_slots = asyncio.Semaphore(concurrency)
        self._followed: dict[Trigger, _Followed] = {}  # least recently asked first
        self._ready = False
        self._ready_at: float | None = None  # clock() of the last /-/ready that answered 200
        self._error = "not checked yet"
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"Accept": "application/json"})
        await self._check()
        self._task = asyncio.create_task(self._follow(), name="prometheus-follow")

    async def close(self) -> None:
        tasks = [e.first for e in self._followed.values() if e.first is not None]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        self._task = self._session = None
        self._followed.clear()

    @property
    def fresh(self) -> bool:
        return self._ready

    @property
    def age(self) -> float | None:
        return None if self._ready_at is None else self._clock() - self._ready_at

    @property
    def description(self) -> str:
        state = "ready" if self._ready else self._error
        return f"prometheus {self.url}: {state}, following {len(self._followed)} trigger(s)"

    @property
    def followed(self) -> frozenset[Trigger]:
        """The triggers the timer re-evaluates."""
        return frozenset(self._followed)

    async def read(self, trigger: Trigger) -> float:
        if self._session is None:
            raise Unavailable(f"prometheus {self.url}: source not started")
        now = self._clock()
        followed = self._followed
        entry = followed.pop(trigger, None)
        if entry is None:
            entry = _Followed(now)
            while len(followed) >= self.max_triggers:
                del followed[next(iter(followed))]
        entry.asked_at = now
        followed[trigger] = entry  # (re)inserted last: the dict's order is the LRU order
        evaluation = entry.evaluation
        if evaluation is None:
            if entry.first is None:
                entry.first = asyncio.create_task(self._evaluate_first(trigger, entry), name="prometheus-first")
            # Shielded: a caller giving up (deadline) must not cancel the answer others are waiting for.
            evaluation = await asyncio.shield(entry.first)
        if evaluation.failure is not None:
            raise evaluation.failure[0](evaluation.failure[1])
        age = self._clock() - evaluation.sampled_at
        if age > self.max_staleness:
            raise Stale(f"{trigger.microservice}: newest sample is {age:.1f}s old (max staleness "
                              f"{self.max_staleness:g}s)")  # fmt: skip
        return evaluation.value

    async def refresh(self) -> None:
        """One tick: forget idle triggers, re-check `/-/ready`, re-evaluate every followed trigger, and publish
        when readiness or anything a reader would see changed."""
        now = self._clock()
        idle = [t for t, e in self._followed.items() if now - e.asked_at > self.forget_after and e.first is None]
        for trigger in idle:
            del self._followed[trigger]
        if idle:
            log.debug("prometheus %s: forgot %d trigger(s) not asked about for %gs", self.url, len(idle),
                      self.forget_after)  # fmt: skip
        was_ready = self._ready
        await self._check()
        due = [(t, e) for t, e in self._followed.items() if e.evaluation is not None]
        results = await asyncio.gather(*(self._evaluate(t, self._tick_slots) for t, _ in due), return_exceptions=True)
        changed = self._ready != was_ready
        now = self._clock()
        for (trigger, entry), result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                # A bug: keep the last evaluation (its samples still age) rather than stop following.
                log.error("prometheus %s: evaluating %s failed", self.url, trigger.metric_name, exc_info=result)
                continue
            entry.evaluation = result
            seen = result.seen(now, self.max_staleness)
            if seen != entry.seen:
                entry.seen, changed = seen, True
        if changed:
            self.changes.publish()

    async def _follow(self) -> None:
        # Prometheus cannot push, so this one loop is a timer; an overrunning tick delays the next, never doubles up.
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                await self.refresh()
            except Exception:
                log.exception("prometheus %s: tick failed", self.url)
            next_at += self.interval
            if next_at < loop.time():
                next_at = loop.time() + self.interval

    async def _evaluate_first(self, trigger: Trigger, entry: _Followed) -> Evaluation:
        try:
            evaluation = await self._evaluate(trigger, self._demand_slots)
        finally:
            entry.first = None  # after a bug the next read tries again
        if entry.evaluation is None:
            entry.evaluation = evaluation
            entry.seen = evaluation.seen(self._clock(), self.max_staleness)
        return entry.evaluation

    async def _evaluate(self, trigger: Trigger, slots: asyncio.Semaphore) -> Evaluation:
        value_query, age_query = promql(trigger)
        async with slots:
            # Both answers awaited (no orphan query outlives its slot); the value query's failure is reported first.
            answers = await asyncio.gather(self._query(value_query), self._query(age_query), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, NotFound | Unavailable):
                return Evaluation(failure=(type(answer), str(answer)))
            if isinstance(answer, BaseException):
                raise answer
        value, sampled_at = answers
        assert isinstance(value, float) and isinstance(sampled_at, float)
        return Evaluation(value, sampled_at)

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
        if ready:
            self._ready_at = self._clock()

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
