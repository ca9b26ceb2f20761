"""One cycle of Horizon's AutoScaler for one supervisor: per-pool targets, then bounded shifts (reference B3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """The supervisor options that bound balancing (per supervisor, per master)."""

    balance: str  # "auto", "simple", "off" or "" (config `false`)
    min_processes: int
    max_processes: int
    strategy: str = "time"  # autoScalingStrategy for balance auto: "time" or "size"
    max_shift: int = 1


@dataclass(frozen=True, slots=True)
class PoolLoad:
    """What the AutoScaler reads for one pool: ready jobs, and ready jobs × average runtime."""

    size: int
    time: float


def targets(limits: Limits, loads: Mapping[str, PoolLoad]) -> dict[str, float]:
    """Desired processes per pool, as `AutoScaler::numberOfWorkersPerQueue` computes them."""
    total_time = sum(load.time for load in loads.values())
    total_size = sum(load.size for load in loads.values())
    out: dict[str, float] = {}
    for pool, load in loads.items():
        if limits.balance not in ("auto", "simple"):
            # balance off/false (Horizon >= 5.26): the single pool follows the ready jobs, within min..max.
            out[pool] = min(limits.max_processes, max(limits.min_processes, load.size))
        elif limits.balance == "simple":
            out[pool] = limits.max_processes / len(loads)
        elif total_time > 0:
            share = load.size / total_size if limits.strategy == "size" and total_size else load.time / total_time
            out[pool] = share * limits.max_processes
        else:
            out[pool] = limits.max_processes if load.size else limits.min_processes
    return out


def rebalance(limits: Limits, pools: Mapping[str, int], loads: Mapping[str, PoolLoad]) -> dict[str, int]:
    """New process counts after one balance cycle: each pool moves toward its target by at most `max_shift`.

    Pools are scaled in ascending order of target, so shrinking pools free room before growing ones take it.
    Invariants kept: every pool >= min_processes, the supervisor total <= max_processes.
    """
    if limits.balance == "simple":
        return dict(pools)  # `simple` never autoscales: the even split made at start stays
    new = dict(pools)
    wanted = targets(limits, loads)
    reserve = (len(new) - 1) * limits.min_processes
    for pool in sorted(wanted, key=lambda p: (wanted[p], p)):
        current, desired = new[pool], math.ceil(wanted[pool])
        total = sum(new.values())
        if desired > current:
            up = min(max(0, limits.max_processes - total), limits.max_shift)
            new[pool] = min(current + up, limits.max_processes - reserve, desired)
        elif desired < current:
            down = min(total - limits.min_processes, limits.max_shift)
            new[pool] = max(current - down, limits.min_processes, desired)
    return new


def initial(limits: Limits, pool_names: tuple[str, ...]) -> dict[str, int]:
    """Counts of a supervisor that has run a while with empty queues: `simple` splits evenly, others sit at min."""
    if limits.balance == "simple":
        share, extra = divmod(limits.max_processes, len(pool_names))
        return {p: max(limits.min_processes, share + (i < extra)) for i, p in enumerate(pool_names)}
    return dict.fromkeys(pool_names, limits.min_processes)


def rebalance_one(limits: Limits, current: int, size: int) -> int:
    """`rebalance` for a supervisor with a single pool (the what-if engine's pods), without building dicts.

    The time share of the only pool is 1, so `auto` wants max_processes while any job is ready and
    min_processes otherwise; tests/test_simulator_model.py checks it against `rebalance` for every input.
    """
    if limits.balance == "simple":
        return current
    if limits.balance != "auto":
        desired = min(limits.max_processes, max(limits.min_processes, size))
    else:
        desired = limits.max_processes if size else limits.min_processes
    if desired > current:
        return min(current + min(max(0, limits.max_processes - current), limits.max_shift), desired)
    if desired < current:
        return max(current - min(current - limits.min_processes, limits.max_shift), limits.min_processes, desired)
    return current


def start_processes(limits: Limits, how: str = "max") -> int:
    """Workers a supervisor starts with in a fresh pod: `max` as Horizon ≤ 5.29 does (`scale(maxProcesses − already
    running)`), `midpoint` as later releases do (`floor((min + max) / 2)`)."""
    if how == "midpoint":
        return (limits.min_processes + limits.max_processes) // 2
    return limits.max_processes


def started(limits: Limits, pool_names: tuple[str, ...]) -> dict[str, int]:
    """Counts of a supervisor that has just started: `scale(maxProcesses)` (Horizon ≤ 5.29) split evenly over its
    pools, each at least min_processes."""
    share, extra = divmod(limits.max_processes, len(pool_names))
    return {p: max(limits.min_processes, share + (i < extra)) for i, p in enumerate(pool_names)}
