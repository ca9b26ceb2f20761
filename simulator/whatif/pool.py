"""One microservice's queue and workers, job by job: a FIFO queue served by a varying number of workers.

Exact in continuous time: each job starts when a worker takes it, and a worker runs one job at a time. A worker that
finds the queue empty sleeps `sleep` seconds before it looks again (Laravel's `--sleep`, 3 by default in Horizon);
`sleep = 0` is a worker blocking on the queue (a Redis connection with `block_for`), which takes a job the moment it
is pushed. Fewer workers: idle ones leave at once, busy ones finish their job first (Horizon terminates a worker
after its current job); more workers: new ones look for a job at once.
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections import deque


class Pool:
    """A FIFO queue over pre-drawn jobs (`arrivals` sorted, `durations` per job), advanced with `advance(t)`."""

    __slots__ = (
        "_busy",
        "_idle",
        "_look",
        "_phases",
        "arrivals",
        "done",
        "durations",
        "next_job",
        "now",
        "queue",
        "sleep",
        "started",
        "target",
        "waits",
        "workers",
    )

    def __init__(self, arrivals: array, durations: array, sleep: float = 0.0) -> None:
        self.arrivals = arrivals
        self.durations = durations
        self.sleep = sleep
        self.now = 0.0
        self.next_job = 0  # index of the next job to arrive
        self.queue: deque[int] = deque()  # jobs ready and waiting, oldest first
        self._busy: list[float] = []  # finish times of the running jobs (heap)
        self._idle = 0  # idle workers (sleep = 0)
        self._phases: list[float] = []  # idle workers' look times modulo `sleep`, sorted (sleep > 0)
        self._look: tuple[float, int] = (math.inf, -1)  # the next look and its index, while phases are unchanged
        self.workers = 0  # live workers: busy, idle, and busy ones that will leave after their job
        self.target = 0  # workers wanted; Horizon reports this (terminating workers excluded)
        self.waits = array("d")  # wait of every started job, in start order
        self.started = 0
        self.done = 0

    # -- what Horizon and the exporter see ---------------------------------------------------------------------

    @property
    def length(self) -> int:
        """Ready jobs (`LLEN queues:<name>`)."""
        return len(self.queue)

    @property
    def running(self) -> int:
        return len(self._busy)

    @property
    def idle(self) -> int:
        return len(self._phases) if self.sleep > 0 else self._idle

    def oldest_wait(self, t: float) -> float:
        """How long the oldest queued job has waited at `t` (0 with an empty queue)."""
        return t - self.arrivals[self.queue[0]] if self.queue else 0.0

    # -- changes -------------------------------------------------------------------------------------------------

    def set_workers(self, n: int, t: float) -> None:
        """From `t` on, `n` workers are wanted."""
        self.advance(t)
        self.target = n
        if n > self.workers:
            for _ in range(n - self.workers):
                self.workers += 1
                self._free_worker(t)
        elif n < self.workers:
            excess = self.workers - n
            if self.sleep > 0:
                gone = min(excess, len(self._phases))
                if gone:
                    del self._phases[-gone:]
                    self._look = (math.inf, -1)
            else:
                gone = min(excess, self._idle)
                self._idle -= gone
            self.workers -= gone  # the rest leave when their job ends

    def advance(self, t: float) -> None:
        """Run arrivals, job ends and idle workers' looks up to and including `t`."""
        arrivals, busy, queue, phases = self.arrivals, self._busy, self.queue, self._phases
        n_jobs, sleep = len(arrivals), self.sleep
        inf = math.inf
        i = self.next_job
        while True:
            a = arrivals[i] if i < n_jobs else inf
            f = busy[0] if busy else inf
            if sleep > 0 and queue and phases:
                look, k = self._look
                if k < 0 or look < self.now:
                    look, k = self._look = self._next_look()
            else:
                look, k = inf, -1
            if f <= a and f <= look:
                if f > t:
                    break
                heapq.heappop(busy)
                self.now = f
                self.done += 1
                if self.workers > self.target:
                    self.workers -= 1  # a terminating worker leaves after its job
                elif queue:
                    self._start(queue.popleft(), f)
                else:
                    self._become_idle(f)
            elif a <= look:
                if a > t:
                    break
                self.now = a
                i += 1
                if sleep <= 0 and self._idle:
                    self._idle -= 1
                    self._start(i - 1, a)
                else:
                    queue.append(i - 1)
            else:
                if look > t:
                    break
                self.now = look
                del phases[k]  # that idle worker takes the oldest job
                self._look = (inf, -1)
                self._start(queue.popleft(), look)
        self.next_job = i
        if t > self.now:
            self.now = t

    # -- internals -----------------------------------------------------------------------------------------------

    def _start(self, job: int, t: float) -> None:
        self.waits.append(t - self.arrivals[job])
        self.started += 1
        heapq.heappush(self._busy, t + self.durations[job])

    def _free_worker(self, t: float) -> None:
        """A worker with nothing to do at `t` looks at the queue now."""
        if self.queue:
            self._start(self.queue.popleft(), t)
        else:
            self._become_idle(t)

    def _become_idle(self, t: float) -> None:
        if self.sleep > 0:
            bisect.insort(self._phases, t % self.sleep)
            self._look = (math.inf, -1)
        else:
            self._idle += 1

    def _next_look(self) -> tuple[float, int]:
        """When the first idle worker looks at the queue at or after `now`, and its index in `_phases`."""
        s, now, phases = self.sleep, self.now, self._phases
        x = now % s
        k = bisect.bisect_left(phases, x - 1e-9)  # a look at `now` itself, give or take rounding, still counts
        base = now - x
        if k < len(phases):
            return max(now, base + phases[k]), k
        return max(now, base + s + phases[0]), 0
