"""Poll every target on its own timer: jittered start, bounded concurrency, capped exponential backoff.

One loop per target, so one target never has two polls in flight; each result goes through `snapshot.advance`
into the store. A reading the client hands back unchanged (same bodies) is not mapped again, and a changed one
only for the microservices the change touched (`mapping.Mapper`). A failing target's kept values are dropped on
time even while backoff spaces its polls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping

import aiohttp

from .client import TargetClient
from .config import Config, TargetConfig
from .gcpause import gc_paused
from .horizon import HorizonReading
from .http import FetchError
from .mapping import Mapper, MicroserviceValues
from .snapshot import PollOutcome, TargetError, TargetState, advance, expire
from .store import SnapshotStore

log = logging.getLogger("horizon_keda.poller")


def initial_state(target: TargetConfig) -> TargetState:
    """The state of a target never polled."""
    return TargetState(name=target.name, url=target.url, fixed_microservice=getattr(target.rule, "microservice", None))


def initial_states(config: Config) -> dict[str, TargetState]:
    """A never-polled state for every configured target, in config order."""
    return {t.name: initial_state(t) for t in config.targets}


def backoff_delay(interval: float, failures: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Delay before the next poll after `failures` consecutive failures: interval × 2^n, capped, ±10 % jitter."""
    if failures <= 0:
        return interval
    base = min(cap, interval * (2 ** min(failures, 30)))
    return max(interval, base * (0.9 + 0.2 * rand()))


class Poller:
    """Runs one polling loop per target until cancelled."""

    def __init__(
        self,
        config: Config,
        store: SnapshotStore,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._session = session
        self._clock = clock
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._targets = {t.name: t for t in config.targets}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = False
        # Per target: the last reading mapped and what it mapped to (one entry per target).
        self._mapped: dict[str, tuple[HorizonReading, Mapping[str, MicroserviceValues]]] = {}
        self._mappers: dict[str, Mapper] = {}  # per target: redoes only the microservices a change touched

    def start(self) -> None:
        """Start one task per target."""
        self._running = True
        for target in self._targets.values():
            self._start(target)

    def _start(self, target: TargetConfig) -> None:
        self._tasks[target.name] = asyncio.create_task(self._loop(target), name=f"poll:{target.name}")

    def reconfigure(self, targets: tuple[TargetConfig, ...]) -> None:
        """Poll `targets` from now on: new ones start, removed ones stop and leave the snapshot at once, unchanged
        ones keep their state and timers; a target whose settings changed starts afresh (it may be another
        Horizon)."""
        states = []
        wanted = {t.name: t for t in targets}
        for name, old in list(self._targets.items()):
            if wanted.get(name) != old:
                task = self._tasks.pop(name, None)
                if task is not None:
                    task.cancel()
                self._mapped.pop(name, None)
                self._mappers.pop(name, None)
        for target in targets:
            kept = self._store.state(target.name) if self._targets.get(target.name) == target else None
            states.append(kept if kept is not None else initial_state(target))
        self._store.replace_targets(states)
        started = [t for t in targets if self._targets.get(t.name) != t]
        removed = len(set(self._targets) - set(wanted))
        self._targets = wanted
        if self._running:
            for target in started:
                self._start(target)
        log.info("targets: %d polled; %d new or changed, %d removed", len(wanted), len(started), removed)

    async def stop(self) -> None:
        """Cancel every loop and wait for them to end."""
        self._running = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def poll_once(self, client: TargetClient) -> PollOutcome:
        """Poll one target once (under the concurrency bound) and map its reading to microservices."""
        async with self._semaphore:
            started = self._clock()
            t0 = time.perf_counter()
            try:
                reading = await client.fetch()
            except FetchError as exc:
                return PollOutcome(started, time.perf_counter() - t0, error=TargetError(exc.reason, str(exc)))
            duration = time.perf_counter() - t0
        name = client.target.name
        last = self._mapped.get(name)
        if last is not None and last[0] is reading:
            microservices = last[1]
        else:
            mapper = self._mappers.get(name)
            if mapper is None:
                mapper = self._mappers[name] = Mapper(client.target.rule)
            with gc_paused():
                microservices = mapper.map(reading)
        return PollOutcome(started, duration, reading=reading, microservices=microservices)

    async def _loop(self, target: TargetConfig) -> None:
        client: TargetClient | None = None
        interval = self._config.poll_interval
        # Spread the first polls over one interval so a thousand targets do not start in the same millisecond.
        await asyncio.sleep(random.uniform(0, min(interval, 1.0)))
        failures = 0
        while True:
            try:
                # Built inside the try: a target whose client cannot be built shows an error instead of a task
                # that died before its first poll.
                if client is None:
                    client = TargetClient(
                        target, self._session, self._config.max_body_bytes, stats_interval=self._config.stats_interval
                    )
                outcome = await self.poll_once(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not kill the loop; it is counted and shown instead
                log.exception("target %s: poll failed unexpectedly", target.name)
                outcome = PollOutcome(self._clock(), 0.0, error=TargetError("internal", repr(exc)))
            previous = self._store.state(target.name)
            if previous is None:
                return  # the target left the configuration while this poll ran
            with gc_paused():
                state = advance(previous, outcome, self._config.stale_after)
                self._store.update(state)
            if outcome.reading is not None and state.up:
                self._mapped[target.name] = (outcome.reading, state.microservices)
            else:
                self._mapped.pop(target.name, None)
                if client is not None:
                    client.forget()
            if outcome.error is None:
                if failures:
                    log.info("target %s: recovered after %d failed polls", target.name, failures)
                failures = 0
            else:
                failures += 1
                if failures == 1 or previous.error is None or previous.error.reason != outcome.error.reason:
                    log.warning("target %s: %s (%s)", target.name, outcome.error.message, outcome.error.reason)
            delay = backoff_delay(interval, failures, max(self._config.backoff_max, interval))
            if failures == 0:
                # Fixed rate, not fixed gap: a poll that took 300 ms is followed 700 ms later at a 1 s interval.
                delay = max(0.0, delay - (self._clock() - outcome.started_at))
            await self._sleep_until_next(target, state, delay)

    async def _sleep_until_next(self, target: TargetConfig, state: TargetState, delay: float) -> None:
        # A failing target's kept values must vanish on time even while backoff stretches the polls apart.
        if state.stale and state.last_success_at is not None:
            expires_in = state.last_success_at + self._config.stale_after - self._clock()
            if 0 <= expires_in < delay:
                await asyncio.sleep(expires_in)
                current = self._store.state(target.name)
                if current is None:
                    return
                expired = expire(current, self._clock(), self._config.stale_after)
                if expired is not current:
                    self._store.update(expired)
                delay -= expires_in
        await asyncio.sleep(max(0.0, delay))
