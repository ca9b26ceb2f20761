"""Poll every target on its own timer: jittered start, bounded concurrency, capped exponential backoff.

One loop per target, so one target never has two polls in flight; each result goes through `snapshot.advance`
into the store. A reading the client hands back unchanged (same bodies) is not mapped again, and a changed one
only for the microservices the change touched (`mapping.Mapper`). A failing target's kept values are dropped on
time even while backoff spaces its polls.

Sharded (README "Sharding"), the poller polls only the targets its shard owns. When the number of shards changes
at run time (a reload), targets this shard gains are polled at once, and targets it gives away are polled on, kept
in the snapshot as handed off, until their handoff grace ends: this shard cannot see whether the new owner has
polled them yet, so a time cap is what it has.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

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


def initial_state(target: TargetConfig, *, gained: bool = False) -> TargetState:
    """The state of a target never polled (`gained`: taken over from another shard in a reshard)."""
    fixed = getattr(target.rule, "microservice", None)
    return TargetState(name=target.name, url=target.url, fixed_microservice=fixed, gained=gained)


def initial_states(config: Config) -> dict[str, TargetState]:
    """A never-polled state for every configured target this shard owns, in config order."""
    sharding = config.sharding
    return {t.name: initial_state(t) for t in config.targets if sharding.owns(t.name)}


def first_poll_delay(interval: float) -> float:
    """How long a target that starts polling waits first: spread over one interval (at most 1 s), so a thousand
    targets do not start in the same millisecond."""
    return random.uniform(0, min(interval, 1.0))


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
        self._sharding = config.sharding
        self._configured = frozenset(t.name for t in config.targets)
        # Every target polled: the owned ones, then those handed off in a reshard whose grace has not ended.
        self._targets = {t.name: t for t in config.targets if self._sharding.owns(t.name)}
        self._handoff_ends: dict[str, float] = {}  # handed-off target -> end of its grace (time.monotonic)
        self._handoff_timer: asyncio.TimerHandle | None = None
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

    def _start(self, target: TargetConfig, *, at_once: bool = False) -> None:
        self._tasks[target.name] = asyncio.create_task(self._loop(target, at_once), name=f"poll:{target.name}")

    def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        self._mapped.pop(name, None)
        self._mappers.pop(name, None)

    def reconfigure(self, config: Config) -> None:
        """Poll `config`'s targets from now on: new ones start, removed ones stop and leave the snapshot at once,
        unchanged ones keep their state and timers; a target whose settings changed starts afresh (it may be
        another Horizon).

        Sharded, only the targets this shard owns under `config`'s total. A target it owned and no longer does
        (the total changed) is polled on, with its settings, and kept in the snapshot as handed off, until
        `config.handoff_grace_seconds` have passed; a target it takes over from another shard is polled at once."""
        sharding, grace = config.sharding, config.handoff_grace_seconds
        now = time.monotonic()
        wanted = {t.name: t for t in config.targets}
        polled: dict[str, TargetConfig] = {}
        ends: dict[str, float] = {}
        for name, target in wanted.items():
            if sharding.owns(name):
                polled[name] = target
            elif self._targets.get(name) == target:  # polled now, given away now or earlier
                end = self._handoff_ends.get(name, now + grace)
                if end > now:
                    polled[name], ends[name] = target, end
        # Configured before and not polled here: another shard's until now (a new target starts as at a reload).
        gained = {n for n in polled if n not in ends and n not in self._targets and n in self._configured}
        owned_states: list[TargetState] = []
        handed_states: list[TargetState] = []
        for name, target in polled.items():
            kept = self._store.state(name) if self._targets.get(name) == target else None
            state = kept if kept is not None else initial_state(target, gained=name in gained)
            handed_off = name in ends
            if state.handed_off != handed_off:
                state = replace(state, handed_off=handed_off)
            (handed_states if handed_off else owned_states).append(state)
        for name, old in list(self._targets.items()):
            if polled.get(name) != old:
                self._stop(name)
        self._store.replace_targets(owned_states + handed_states, sharding=(sharding.effective_shard, sharding.total))
        started = [t for t in polled.values() if self._targets.get(t.name) != t]
        removed = len(set(self._targets) - set(polled))
        handed = len(set(ends) - set(self._handoff_ends))
        previous = self._sharding
        self._targets, self._handoff_ends = polled, ends
        self._configured, self._sharding = frozenset(wanted), sharding
        self._schedule_handoff_end()
        if self._running:
            for target in started:
                self._start(target, at_once=target.name in gained)
        log.info("targets: %d polled; %d new or changed, %d removed", len(polled), len(started), removed)
        if sharding != previous:
            log.info(
                "reshard from %s to %s: %d targets gained (polled at once), %d handed off (polled for %gs more, "
                "not on /metrics)", previous.describe(), sharding.describe(), len(gained), handed, grace,
            )  # fmt: skip
        if sharding.sharded and sharding.shard is not None and sharding.shard >= sharding.total:
            log.warning("shard %d is not below the %d shards: it owns no target (a scale-down removes it)",
                        sharding.shard, sharding.total)  # fmt: skip

    def _schedule_handoff_end(self) -> None:
        if self._handoff_timer is not None:
            self._handoff_timer.cancel()
            self._handoff_timer = None
        if not self._handoff_ends:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving: nothing polls either
            return
        delay = max(0.0, min(self._handoff_ends.values()) - time.monotonic())
        self._handoff_timer = loop.call_later(delay, self._end_handoffs)

    def _end_handoffs(self) -> None:
        """Stop polling the handed-off targets whose grace has ended; they leave the snapshot."""
        self._handoff_timer = None
        now = time.monotonic()
        ended = [name for name, end in self._handoff_ends.items() if end <= now]
        for name in ended:
            del self._handoff_ends[name], self._targets[name]
            self._stop(name)
        if ended:
            self._store.remove_targets(ended)
            log.info("handoff grace ended: %d targets no longer polled here", len(ended))
        self._schedule_handoff_end()

    async def stop(self) -> None:
        """Cancel every loop and wait for them to end."""
        self._running = False
        if self._handoff_timer is not None:
            self._handoff_timer.cancel()
            self._handoff_timer = None
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

    async def _loop(self, target: TargetConfig, at_once: bool = False) -> None:
        client: TargetClient | None = None
        interval = self._config.poll_interval
        if not at_once:  # a target taken over in a reshard is polled at once: its last reading is elsewhere
            await asyncio.sleep(first_poll_delay(interval))
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
