"""Lock-free counters' building block for the scaler's /metrics: a histogram of plain floats, read at scrape."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from prometheus_client.utils import floatToGoString


class Histogram:
    """Bucket counts, sum and count of observations; touched only on the event loop, so it needs no lock (and,
    unlike prometheus_client's Histogram, costs one bisect per observation and emits no `_created` series)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds or math.isinf(bounds[-1]):
            raise ValueError(f"bounds: expected finite, strictly increasing numbers, got {bounds!r}")
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Count `value` in the first bucket whose upper bound is ≥ it."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs as HistogramMetricFamily.add_metric takes them, +Inf last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((floatToGoString(bound), running))
        return out
