"""Time to scale, episode by episode: one yardstick for the what-if engine and for `make run`'s live loop."""

from __future__ import annotations

from collections.abc import Callable


class Episodes:
    """Scale-up episodes of one microservice: from the first instant its true value asks for more replicas than are
    ready until one more is ready; one whose need vanishes before that (a momentary peak) is dropped and counted in
    `passing`. Call `update` once per instant, after every change of that instant."""

    __slots__ = ("base", "durations", "passing", "start")

    def __init__(self) -> None:
        self.start: float | None = None
        self.base = 0  # ready replicas when the open episode began
        self.durations: list[float] = []
        self.passing = 0

    def update(self, t: float, ready: int, need: Callable[[], int]) -> None:
        """`need()` gives the replicas the true value asks for now (called only when the answer matters)."""
        if self.start is None:
            if need() > ready:
                self.start, self.base = t, ready
        elif ready > self.base:
            self.durations.append(t - self.start)
            self.start = None
            if need() > ready:
                self.start, self.base = t, ready
        elif need() <= ready:
            self.start = None
            self.passing += 1
