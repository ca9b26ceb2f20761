"""Source over several exporters (shards): one SnapshotSource follower each, merged by microservice.

Every scaler replica follows every shard's change feed, so any replica answers any microservice, and alike. A
microservice is read from the follower with the freshest reading of it by the exporters' own clock (`fetched_at`,
the time the exporter's poll of Horizon succeeded), not by when an answer reached this process: two replicas holding
the same documents pick the same follower. During a reshard both the old owner, which marks its copy `handed_off`,
and the new owner report the microservice; on equal `fetched_at` the owner wins, then the exporter whose URL sorts
first. Followers that are not fresh (unreachable, silent past --max-staleness, never answered) are passed over; a
microservice none of the fresh ones has is UNAVAILABLE when some follower is not fresh — it may be on that shard —
and NOT_FOUND only when every follower answers and none reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .discovery import ExporterSpec, NoAddresses, Resolver, resolve
from .exporter_auth import ExporterCredentials
from .metadata import Trigger
from .readings import ExporterView, Unavailable, UnknownMicroservice
from .snapshot_source import SnapshotSource
from .source import Source

log = logging.getLogger("horizon_keda.scaler.fanin")

# A microservice whose only follower left DNS and was dropped stays UNAVAILABLE (not NOT_FOUND) this long: a shard
# pod being replaced, or a reshard still moving it.
LOST_FOR = 600.0
_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Claim:
    """One follower's copy of a microservice, as the merge compares them."""

    key: str  # the follower's base URL: the last tie-breaker
    fetched_at: float | None
    handed_off: bool
    target: str = ""  # the Horizon target the exporter read it from

    def order(self) -> tuple[bool, str, float, bool, str]:
        """Sort key, best first: a reading before none; then the target whose name sorts first (two targets reporting
        one microservice is a duplicate, as the exporter's `horizon_microservice_duplicate` says: one is chosen for
        good, never whichever polled last); within one target (two shards during a handoff or a rollout) the
        freshest, the owner's before a handed-off copy, the URL."""
        return (self.fetched_at is None, self.target, -(self.fetched_at or 0.0), self.handed_off, self.key)


def claim(key: str, view: ExporterView, name: str) -> Claim | None:
    """What `view` says of microservice `name`; None when it does not report it."""
    entry = view.microservices.get(name)
    if entry is None:
        return None
    raw = entry.get("fetched_at")
    fetched_at = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if fetched_at is not None and not math.isfinite(fetched_at):
        fetched_at = None
    target_name = str(entry.get("target"))
    target = view.targets.get(target_name, {})
    handed_off = entry.get("handed_off") is True or (isinstance(target, dict) and target.get("handed_off") is True)
    return Claim(key, fetched_at, handed_off, target_name)


def ranked(claims: Iterable[Claim]) -> list[Claim]:
    """The claims best first (deterministic: the same claims give the same order on every replica)."""
    return sorted(claims, key=Claim.order)


class FanInSource(Source):
    """Follows every exporter the specs name (re-resolving `dns+` ones) and answers from the merged view."""

    def __init__(
        self,
        specs: Iterable[ExporterSpec],
        max_staleness: float,
        *,
        credentials: ExporterCredentials | None = None,
        resolve_interval: float = 10.0,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.time,
        follower_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`follower_options`: keyword arguments for every SnapshotSource (tests shorten its backoff)."""
        super().__init__()
        self.specs = tuple(specs)
        self.max_staleness = max_staleness
        self.resolve_interval = resolve_interval
        self._credentials = credentials
        self._resolver = resolver
        self._clock = clock
        self._options = dict(follower_options or {})
        self.followers: dict[str, SnapshotSource] = {}
        self._static = {spec.url for spec in self.specs if not spec.dns}
        self._listed: dict[ExporterSpec, set[str]] = {spec: set() for spec in self.specs if spec.dns}
        self._resolved: dict[ExporterSpec, str] = {spec: "not resolved yet" for spec in self.specs if spec.dns}
        self._lost: dict[str, tuple[str, float]] = {}  # microservice -> (dropped follower, when)
        self._memo_version = -1
        self._memo: dict[str, tuple[SnapshotSource, ...]] = {}
        self._duplicates: set[str] = set()  # microservices already logged as reported by two targets
        self._known: str | None = None
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        for url in sorted(self._static):
            self.followers[url] = self._follower(url, None)

    def _follower(self, url: str, server_hostname: str | None) -> SnapshotSource:
        return SnapshotSource(url, self.max_staleness, credentials=self._credentials, server_hostname=server_hostname,
                              changes=self.changes, clock=self._clock, **self._options)  # fmt: skip

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        for follower in self.followers.values():
            await follower.start()
        self._tasks = [asyncio.create_task(self._follow_dns(s), name=f"resolve {s.value}") for s in self._listed]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for follower in self.followers.values():
            await follower.close()

    async def _follow_dns(self, spec: ExporterSpec) -> None:
        while True:
            try:
                await self.resolve_once(spec)
            except Exception:  # a bug must not end discovery for good
                log.exception("%s: following its addresses failed; trying again in %gs", spec.value,
                              self.resolve_interval)  # fmt: skip
            await asyncio.sleep(self.resolve_interval)

    async def resolve_once(self, spec: ExporterSpec) -> None:
        """Look `spec`'s host up, follow addresses that are new, and drop followers nobody lists that went stale."""
        try:
            async with asyncio.timeout(max(self.resolve_interval, 1.0)):
                addresses: list[str] | None = list(await self._resolver(spec.host, spec.port))
        except NoAddresses:
            addresses = []
        except (OSError, TimeoutError) as exc:  # the lookup failed: keep following what it listed last
            reason = f"lookup failed ({exc.strerror or exc})" if isinstance(exc, OSError) else "lookup timed out"
            if self._resolved[spec] != reason:
                log.warning("%s: %s; keeping its %d addresses", spec.value, reason, len(self._listed[spec]))
            self._resolved[spec] = reason
            addresses = None
        if addresses is not None:
            listed = {spec.address_url(a) for a in addresses}
            old = self._listed[spec]
            if listed != old:
                shown = ", ".join(sorted(listed)) or "none"
                log.info("%s resolves to %d address(es): %s", spec.value, len(listed), shown)
            self._listed[spec] = listed
            self._resolved[spec] = f"{len(listed)} address(es)"
            for url in sorted(listed - self.followers.keys()):
                follower = self.followers[url] = self._follower(url, spec.server_hostname)
                if self._started:
                    await follower.start()
                self.changes.publish()
        await self._drop_unlisted()

    async def _drop_unlisted(self) -> None:
        wanted = self._static.union(*self._listed.values())
        now = self._clock()
        for url in [u for u, f in self.followers.items() if u not in wanted and not f.fresh]:
            follower = self.followers.pop(url)
            view = follower.view
            for name in view.microservices if view is not None else ():
                self._lost[name] = (url, now)
            log.info("exporter %s: no longer listed and not fresh; stopped following it", url)
            await follower.close()
            self.changes.publish()
        for name in [n for n, (_, at) in self._lost.items() if now - at > LOST_FOR]:
            del self._lost[name]

    # -- Source ----------------------------------------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        """At least one exporter answers: the scaler answers for its microservices (others are UNAVAILABLE)."""
        return any(f.fresh for f in self.followers.values())

    @property
    def age(self) -> float | None:
        ages = [a for f in self.followers.values() if (a := f.age) is not None]
        return min(ages) if ages else None

    def upstreams(self) -> list[tuple[str, bool, float | None]]:
        return [(url, f.fresh, f.age) for url, f in sorted(self.followers.items())]

    def microservices(self) -> Mapping[str, Mapping[str, Any]]:
        """Every microservice any exporter reports, each from the follower `read_now` would answer it from."""
        names: set[str] = set()
        for follower in self.followers.values():
            names.update(follower.microservices())
        merged: dict[str, Mapping[str, Any]] = {}
        for name in sorted(names):
            candidates = self._candidates(name)
            chosen = next((f for f in candidates if f.fresh), candidates[0] if candidates else None)
            if chosen is not None and (entry := chosen.microservices().get(name)) is not None:
                merged[name] = entry
        return MappingProxyType(merged)

    @property
    def description(self) -> str:
        followers = sorted(self.followers.items())
        fresh = sum(f.fresh for _, f in followers)
        dns = "".join(f"; {spec.value}: {state}" for spec, state in self._resolved.items())
        stale = "".join(f"; {f.description}" for _, f in followers if not f.fresh)
        return f"{len(followers)} exporters, {fresh} fresh{dns}{stale}"

    async def read(self, trigger: Trigger) -> float:
        return self.read_now(trigger)

    def read_now(self, trigger: Trigger) -> float:
        """From the best fresh follower reporting the microservice; else the reason none can answer."""
        candidates = self._candidates(trigger.microservice)
        for follower in candidates:
            if follower.fresh:
                return follower.read_now(trigger)
        if candidates:  # only followers that are not fresh report it: the best one's reason, as with one exporter
            return candidates[0].read_now(trigger)
        return self._missing(trigger.microservice)

    def _candidates(self, name: str) -> tuple[SnapshotSource, ...]:
        """The followers reporting `name`, best claim first; memoized until any follower publishes."""
        if self._memo_version != self.changes.version:
            self._memo.clear()
            self._known = None
            self._memo_version = self.changes.version
        found = self._memo.get(name)
        if found is None:
            claims = {}
            for url, follower in self.followers.items():
                view = follower.view
                if view is not None and (c := claim(url, view, name)) is not None:
                    claims[url] = c
            order = ranked(claims.values())
            found = tuple(self.followers[c.key] for c in order)
            targets = {c.target for c in order}
            if len(targets) > 1 and name not in self._duplicates and len(self._duplicates) < _MEMO_LIMIT:
                self._duplicates.add(name)
                shown = ", ".join(sorted(targets))
                log.warning("%s is reported by %d targets on different exporters (%s); answering from %s, whose "
                            "name sorts first", name, len(targets), shown, order[0].target)  # fmt: skip
            if len(self._memo) < _MEMO_LIMIT:  # bounded even if a client invents microservice names
                self._memo[name] = found
        return found

    def _missing(self, name: str) -> float:
        lost = self._lost.get(name)
        if lost is not None:
            raise Unavailable(f"{name}: its exporter {lost[0]} left DNS and stopped answering; no other reports it")
        silent = [f for _, f in sorted(self.followers.items()) if not f.fresh]
        if not self.followers:
            resolved = "; ".join(f"{spec.value}: {state}" for spec, state in self._resolved.items())
            raise Unavailable(f"no exporter to ask ({resolved})")
        if silent:
            shown = "; ".join(f.description for f in silent[:3]) + ("; …" if len(silent) > 3 else "")
            raise Unavailable(f"unknown microservice {name!r} to the exporters that answer, and {len(silent)} of "
                              f"{len(self.followers)} do not, so it may be theirs ({shown})")  # fmt: skip
        if self._known is None:
            names = set()
            for follower in self.followers.values():
                view = follower.view
                names.update(view.microservices if view is not None else ())
            self._known = ", ".join(sorted(names)) or "none"
        raise UnknownMicroservice(f"unknown microservice {name!r} (the exporters report: {self._known})")
