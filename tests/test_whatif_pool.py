"""The job-level queue: FIFO, one job per worker, Laravel's idle sleep, and workers that finish their job first."""

from __future__ import annotations

from array import array

import pytest

from simulator.whatif.pool import Pool


def pool(arrivals: list[float], durations: list[float], sleep: float = 0.0, workers: int = 1) -> Pool:
    p = Pool(array("d", arrivals), array("d", durations), sleep)
    p.set_workers(workers, 0.0)
    return p


def test_one_worker_runs_jobs_in_arrival_order_one_at_a_time():
    p = pool([1.0, 1.5, 2.0], [2.0, 2.0, 2.0])
    p.advance(10.0)
    assert list(p.waits) == [0.0, 1.5, 3.0]  # starts at 1, 3, 5
    assert p.done == 3 and p.length == 0 and p.running == 0


def test_a_job_arriving_to_an_idle_worker_waits_for_its_next_look_when_it_sleeps():
    # The worker became idle at t = 0 and looks every 3 s: at 3, 6, …; a job arriving at 1 starts at 3.
    p = pool([1.0], [1.0], sleep=3.0)
    p.advance(2.9)
    assert p.length == 1, "still ready: nobody looked yet"
    p.advance(10.0)
    assert list(p.waits) == [2.0]


def test_a_busy_worker_that_finishes_takes_the_next_ready_job_at_once_even_when_it_would_sleep():
    p = pool([0.5, 0.6], [1.0, 1.0], sleep=3.0)
    p.advance(10.0)
    # the first waits for the look at 3.0; the second is taken when the first ends at 4.0
    assert list(p.waits) == pytest.approx([2.5, 3.4])


def test_several_idle_workers_with_spread_looks_serve_sooner():
    p = Pool(array("d", [10.0]), array("d", [1.0]), 3.0)
    for t in (0.0, 1.0, 2.0):  # three workers, becoming idle (and looking) at 0, 1 and 2
        p.set_workers(p.target + 1, t)
    p.advance(20.0)
    assert list(p.waits) == pytest.approx([0.0])  # the worker that looks at 10 (= 1 + 3 × 3) takes it


def test_fewer_workers_let_busy_ones_finish_their_job():
    p = pool([0.0, 0.0, 0.0], [5.0, 5.0, 5.0], workers=3)
    p.advance(1.0)
    assert p.running == 3
    p.set_workers(1, 1.0)
    assert p.target == 1 and p.running == 3, "busy workers are not killed"
    p.advance(100.0)
    assert p.done == 3 and p.workers == 1


def test_more_workers_take_waiting_jobs_at_once():
    p = pool([0.0, 0.0, 0.0], [5.0, 5.0, 5.0])
    p.advance(1.0)
    assert p.length == 2
    p.set_workers(3, 2.0)
    assert p.length == 0 and list(p.waits) == [0.0, 2.0, 2.0]


@pytest.mark.parametrize("sleep", [0.0, 3.0])
def test_jobs_are_conserved_and_served_in_order(sleep: float):
    import random

    rng = random.Random(7)
    arrivals = sorted(rng.uniform(0, 500) for _ in range(2000))
    durations = [rng.expovariate(1 / 2.0) for _ in arrivals]
    p = Pool(array("d", arrivals), array("d", durations), sleep)
    for t in range(0, 600, 7):
        p.set_workers(rng.randint(1, 12), float(t))
        p.advance(t + 3.5)
        assert p.next_job == p.done + p.running + p.length
        assert p.running <= max(p.workers, 0)
    starts = [a + w for a, w in zip(arrivals, p.waits, strict=False)]
    assert starts == sorted(starts), "FIFO: jobs start in arrival order"
    assert all(w >= 0 for w in p.waits)
