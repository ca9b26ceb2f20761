"""Random durations as scenario files write them: a number (fixed) or `{dist: …}`; drawn from seeded streams."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

KINDS = ("fixed", "exponential", "lognormal", "gamma", "uniform")


@dataclass(frozen=True, slots=True)
class Dist:
    """A distribution of non-negative seconds. `mean` and `cv` (std / mean) for exponential, lognormal and gamma;
    `low`..`high` for uniform; `mean` alone for fixed."""

    kind: str = "fixed"
    mean: float = 0.0
    cv: float = 1.0
    low: float = 0.0
    high: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"dist: expected one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def expected(self) -> float:
        """The distribution's mean."""
        return (self.low + self.high) / 2 if self.kind == "uniform" else self.mean

    def draw(self, rng: random.Random) -> float:
        """One sample from `rng` (a stream of its own per use, so the draws of one use never shift another's)."""
        if self.kind == "fixed":
            return self.mean
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "lognormal":
            sigma2 = math.log1p(self.cv * self.cv)
            return rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))
        shape = 1.0 / (self.cv * self.cv)  # gamma
        return rng.gammavariate(shape, self.mean / shape)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.mean:g}"
        if self.kind == "uniform":
            return f"uniform {self.low:g}–{self.high:g}"
        if self.kind == "exponential":
            return f"exponential, mean {self.mean:g}"
        return f"{self.kind}, mean {self.mean:g}, cv {self.cv:g}"


def stream(seed: int, *names: str) -> random.Random:
    """An independent random stream for (seed, names): the same in every pipeline and every run (string seeds are
    hashed with SHA-512, not with `hash()`, so PYTHONHASHSEED does not change them)."""
    return random.Random("/".join((str(seed), *names)))
