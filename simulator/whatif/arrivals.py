"""Jobs drawn once per microservice and shared by every pipeline (common random numbers): Poisson arrival times
from a load curve, and one run time per job."""

from __future__ import annotations

from array import array
from collections.abc import Callable

from .dist import Dist, stream


def arrival_times(rate: Callable[[float], float], duration: int, seed: int, name: str) -> array:
    """A Poisson process with rate `rate(t)` jobs/s over [0, duration), by time rescaling.

    The rate is taken as constant within each second, at its midpoint (exact for a load linear within the second,
    as a `load:` list is between its points; the shapes change on scales of tens of seconds or more): unit-rate
    arrivals of the cumulative rate are mapped back through it, one exponential draw per job.
    """
    rng = stream(seed, name, "arrivals")
    out = array("d")
    target = rng.expovariate(1.0)  # next arrival, in units of the cumulative rate
    cum = 0.0
    for second in range(duration):
        lam = max(0.0, rate(second + 0.5))
        if lam <= 0.0:
            continue
        end = cum + lam
        while target < end:
            out.append(second + (target - cum) / lam)
            target += rng.expovariate(1.0)
        cum = end
    return out


def run_times(n: int, dist: Dist, seed: int, name: str) -> array:
    """`n` job run times from `dist`, from their own stream (so a change of load does not reshuffle them)."""
    rng = stream(seed, name, "run-times")
    return array("d", (dist.draw(rng) for _ in range(n)))
