"""A deterministic fleet of Horizons: specs, state, and `Fleet.advance(t)` in whole simulated seconds."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .balance import Limits, PoolLoad, initial, rebalance, started
from .load import arrival_rate, noisy, stable_id

CONNECTION = "redis"
RECENT_MINUTES = 60  # Horizon's trim.recent default (periods.recentJobs)
FAILED_MINUTES = 10080  # trim.recent_failed default (periods.failedJobs)


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One queue: average job runtime, arrivals when quiet and at the top of the sale, share that fails."""

    name: str
    runtime: float  # seconds a worker spends per job
    base_rate: float  # jobs per second when quiet
    peak_rate: float  # jobs per second at the top of the ramp
    failure_ratio: float = 0.01


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """One supervisor of a Horizon config, run by every master (pod) of its microservice."""

    key: str
    queues: tuple[str, ...]
    balance: str = "auto"  # "auto", "simple", "off", or "" (config `false`, as sprintf prints it)
    min_processes: int = 1
    max_processes: int = 10
    strategy: str = "time"
    balance_cooldown: int = 3
    balance_max_shift: int = 1
    timeout: int = 60
    memory: int = 128
    tries: int = 3

    @property
    def pools(self) -> tuple[str, ...]:
        """Pool queue strings: one per queue when balancing, else the one comma-joined list."""
        return self.queues if self.balance in ("auto", "simple") else (",".join(self.queues),)

    @property
    def limits(self) -> Limits:
        return Limits(self.balance, self.min_processes, self.max_processes, self.strategy, self.balance_max_shift)


@dataclass(frozen=True, slots=True)
class PlaceholderSpec:
    """A supervisor of the provisioning plan that is not running; Horizon lists it as `inactive` on each master."""

    key: str
    queues: tuple[str, ...]
    balance: str | bool | None  # the raw config value: "auto", "simple", False or None


@dataclass(frozen=True, slots=True)
class MicroserviceSpec:
    """A microservice: a Deployment of `pods` Horizon masters working its queues."""

    name: str
    queues: tuple[QueueSpec, ...]
    supervisors: tuple[SupervisorSpec, ...]
    pods: int = 1
    placeholders: tuple[PlaceholderSpec, ...] = ()
    ramp_delay: float = 0.0  # seconds this microservice's sale lags the fleet's


@dataclass(frozen=True, slots=True)
class HorizonSpec:
    """One Horizon installation (one Redis and prefix), served at `/<name>/horizon`."""

    name: str
    microservices: tuple[MicroserviceSpec, ...]

    @property
    def dedicated(self) -> bool:
        """Topology (a): the Horizon holds exactly one microservice, named like it."""
        return len(self.microservices) == 1 and self.microservices[0].name == self.name


@dataclass(slots=True)
class QueueState:
    """A queue's backlog and its completion history (pre-filled with the quiet rate, as if running for days)."""

    spec: QueueSpec
    microservice: str
    delay: float
    phase: float
    uid: int
    backlog: float = 0.0
    last_minute: deque[float] = field(default_factory=deque)  # jobs done per second, last 60 s
    recent: deque[float] = field(default_factory=deque)  # jobs done per minute, last hour
    failed: deque[float] = field(default_factory=deque)  # jobs failed per hour, last week
    minute_acc: float = 0.0
    hour_acc: float = 0.0

    def __post_init__(self) -> None:
        rate = self.spec.base_rate
        self.last_minute = deque([rate] * 60, maxlen=60)
        self.recent = deque([rate * 60] * RECENT_MINUTES, maxlen=RECENT_MINUTES)
        hours = FAILED_MINUTES // 60
        self.failed = deque([rate * 3600 * self.spec.failure_ratio] * hours, maxlen=hours)

    @property
    def length(self) -> int:
        """Ready jobs (`LLEN queues:<name>`)."""
        return int(self.backlog)

    def record(self, done: float, tick: int) -> None:
        self.last_minute.append(done)
        self.minute_acc += done
        self.hour_acc += done * self.spec.failure_ratio
        if tick % 60 == 0:
            self.recent.append(self.minute_acc)
            self.minute_acc = 0.0
        if tick % 3600 == 0:
            self.failed.append(self.hour_acc)
            self.hour_acc = 0.0


@dataclass(slots=True)
class Supervisor:
    """A live supervisor: `pools` maps a pool queue string (`default`, `high,low`) to its worker count."""

    spec: SupervisorSpec
    name: str  # "<master>:<key>"
    pid: int
    pools: dict[str, int]
    phase: int  # balances on ticks where (tick + phase) % balance_cooldown == 0

    @property
    def processes(self) -> int:
        return sum(self.pools.values())


@dataclass(slots=True)
class Master:
    """A master supervisor, i.e. one Horizon pod of one microservice."""

    name: str
    microservice: str
    pid: int
    supervisors: list[Supervisor]
    placeholders: tuple[PlaceholderSpec, ...]
    environment: str = "production"
    status: str = "running"


@dataclass(slots=True)
class HorizonState:
    """Everything one Horizon's API reports on: its masters and its queues (by bare name)."""

    spec: HorizonSpec
    masters: list[Master]
    queues: dict[str, QueueState]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def microservices(self) -> tuple[str, ...]:
        return tuple(ms.name for ms in self.spec.microservices)

    def select(self, microservices: Iterable[str] | None) -> frozenset[str]:
        """Validate a microservice filter (None = all) against this Horizon."""
        known = frozenset(self.microservices)
        if microservices is None:
            return known
        chosen = frozenset([microservices] if isinstance(microservices, str) else microservices)
        if chosen - known:
            raise ValueError(f"Horizon {self.name} has no microservice {sorted(chosen - known)}; has {sorted(known)}")
        return chosen

    def pool_processes(self, microservices: Iterable[str] | None = None) -> dict[str, int]:
        """Workers per pool queue string, summed over every live supervisor of every (selected) master."""
        chosen = self.select(microservices)
        out: dict[str, int] = {}
        for master in self.masters:
            if master.microservice in chosen:
                for sup in master.supervisors:
                    for pool, n in sup.pools.items():
                        out[pool] = out.get(pool, 0) + n
        return out

    def processes(self, microservice: str) -> int:
        """Total workers of one microservice over all its masters."""
        return sum(s.processes for m in self.masters if m.microservice == microservice for s in m.supervisors)


_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' pod-name suffix alphabet
_RANDOM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"  # Str::random


def _new_master(ms: MicroserviceSpec, rng: random.Random, template: str, phase: int, fresh: bool) -> Master:
    """One master (pod) of `ms`: a pod name after Kubernetes' and Horizon's patterns, its supervisors at their
    idle counts (`fresh`: as just started, `scale(maxProcesses)` split over the pools — Horizon ≤ 5.29)."""
    name = "-".join((
        f"{ms.name}-horizon", template, "".join(rng.choices(_HASH_ALPHABET, k=5)),
        "".join(rng.choices(_RANDOM_ALPHABET, k=4)),
    ))  # fmt: skip
    pid = rng.randint(7, 40)
    sups = []
    for i, s in enumerate(ms.supervisors):
        pools = started(s.limits, s.pools) if fresh else initial(s.limits, s.pools)
        sups.append(Supervisor(s, f"{name}:{s.key}", pid + 10 + 4 * i, pools, phase + i))
    return Master(name, ms.name, pid, sups, ms.placeholders)


def _build(spec: HorizonSpec, seed: int) -> HorizonState:
    queues: dict[str, QueueState] = {}
    masters: list[Master] = []
    for ms in spec.microservices:
        rng = random.Random(f"{seed}:{spec.name}:{ms.name}")
        for q in ms.queues:
            if q.name in queues or "," in q.name or ":" in q.name:
                raise ValueError(f"Horizon {spec.name}: queue {q.name!r} is duplicated or contains ',' or ':'")
            phase = rng.uniform(0.0, 2.0 * math.pi)
            queues[q.name] = QueueState(q, ms.name, ms.ramp_delay, phase, stable_id(f"{spec.name}/{q.name}"))
        for s in ms.supervisors:
            unknown = set(s.queues) - {q.name for q in ms.queues}
            if unknown or not s.queues or s.min_processes < 1 or s.max_processes < len(s.pools) * s.min_processes:
                raise ValueError(f"{ms.name}:{s.key}: unknown queues {sorted(unknown)} or bad min/max processes")
        template = "".join(rng.choices(_HASH_ALPHABET, k=rng.choice((5, 9, 10))))
        for pod in range(ms.pods):
            masters.append(_new_master(ms, rng, template, pod, fresh=False))
    return HorizonState(spec, masters, queues)


class Fleet:
    """Several Horizons evolving together, one tick per simulated second; a function of (specs, seed, time)."""

    def __init__(self, specs: Sequence[HorizonSpec], seed: int = 0) -> None:
        names = [ms.name for h in specs for ms in h.microservices]
        if len(set(names)) != len(names) or len({h.name for h in specs}) != len(specs):
            raise ValueError("Horizon and microservice names must be unique across the fleet")
        self.seed = seed
        self.specs = tuple(specs)
        self.horizons = {h.name: _build(h, seed) for h in specs}
        self.time = 0  # whole simulated seconds done
        self._started = 0  # masters added since t = 0 (names stay deterministic)

    def horizon(self, name: str) -> HorizonState:
        return self.horizons[name]

    def horizon_of(self, microservice: str) -> HorizonState:
        """The Horizon that holds a microservice."""
        for h in self.horizons.values():
            if microservice in h.microservices:
                return h
        raise KeyError(microservice)

    def processes(self) -> dict[str, int]:
        """Workers per microservice over the whole fleet."""
        return {ms: h.processes(ms) for h in self.horizons.values() for ms in h.microservices}

    def masters(self, microservice: str) -> list[str]:
        """Names of the microservice's masters (pods), oldest first."""
        return [m.name for m in self.horizon_of(microservice).masters if m.microservice == microservice]

    def add_master(self, microservice: str) -> str:
        """A new pod of `microservice` has started Horizon: its supervisors begin near maxProcesses."""
        h = self.horizon_of(microservice)
        spec = next(ms for ms in h.spec.microservices if ms.name == microservice)
        self._started += 1
        rng = random.Random(f"{self.seed}:{microservice}:pod:{self._started}")
        siblings = [m for m in h.masters if m.microservice == microservice]
        template = siblings[0].name.split("-")[-3] if siblings else "".join(rng.choices(_HASH_ALPHABET, k=9))
        master = _new_master(spec, rng, template, self.time + self._started, fresh=True)
        h.masters.append(master)
        return master.name

    def remove_master(self, microservice: str, name: str) -> None:
        """A pod of `microservice` is gone (scaled down, evicted): its master leaves the API at once."""
        h = self.horizon_of(microservice)
        h.masters = [m for m in h.masters if m.name != name]

    def advance(self, t: float) -> None:
        """Run every whole second up to `t`; the result depends on `t` only, not on how calls split it."""
        if t < self.time:
            raise ValueError(f"time runs forward: at {self.time}s, asked for {t}s")
        while self.time + 1 <= t:
            self.step()

    def step(self) -> None:
        """One simulated second: arrivals, work by the current workers, then due balance cycles."""
        self.time += 1
        for h in self.horizons.values():
            _tick(h, self.time, self.seed)


def _tick(h: HorizonState, tick: int, seed: int) -> None:
    mid = tick - 0.5
    for q in h.queues.values():
        rate = arrival_rate(q.spec.base_rate, q.spec.peak_rate, mid, q.delay, q.phase)
        q.backlog += noisy(rate, seed, q.uid, tick)
    done = dict.fromkeys(h.queues, 0.0)
    working: dict[str, int] = {}  # a paused master's workers still count in the API but take no jobs
    for master in h.masters:
        if master.status == "running":
            for sup in master.supervisors:
                for pool, n in sup.pools.items():
                    working[pool] = working.get(pool, 0) + n
    for pool, workers in sorted(working.items()):
        budget = float(workers)  # worker-seconds this second; members are worked in listed (priority) order
        for name in pool.split(","):
            q = h.queues[name]
            jobs = min(q.backlog, budget / q.spec.runtime)
            q.backlog -= jobs
            budget -= jobs * q.spec.runtime
            done[name] += jobs
    for name, q in h.queues.items():
        q.record(done[name], tick)
    for master in h.masters:
        if master.status != "running":
            continue
        for sup in master.supervisors:
            if (tick + sup.phase) % sup.spec.balance_cooldown == 0:
                sup.pools = rebalance(sup.spec.limits, sup.pools, _loads(h, sup))


def _loads(h: HorizonState, sup: Supervisor) -> dict[str, PoolLoad]:
    out = {}
    for pool in sup.pools:
        members = [h.queues[name] for name in pool.split(",")]
        out[pool] = PoolLoad(sum(q.length for q in members), sum(q.length * q.spec.runtime for q in members))
    return out
