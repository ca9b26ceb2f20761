"""Property: the incremental `Mapper` gives exactly `map_reading`'s result, poll after poll, and keeps the values
object of a microservice nothing touched."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.horizon import HorizonReading, Master, Stats, Supervisor, WorkloadRow
from exporter.mapping import Mapper, Pattern, map_reading

SUPERVISOR_RULE = Pattern("supervisor", re.compile(r"^(?P<microservice>[a-c])-worker$"))
QUEUE_RULE = Pattern("queue", re.compile(r"^(?P<microservice>[a-c])-"))
QUEUES = ("a-jobs", "b-jobs", "c-jobs", "a-mail", "cron", "b-jobs,c-jobs")
STATS = Stats("running", 1.0, None, None, None)

supervisors = st.builds(
    lambda key, status, pools, mp: Supervisor(f"m:{key}", key, status, pools, mp),
    st.sampled_from(("a-worker", "b-worker", "c-worker", "scheduler")),
    st.sampled_from(("running", "paused", "inactive", "unknown")),
    st.dictionaries(st.sampled_from([f"redis:{q}" for q in QUEUES]), st.integers(0, 4).map(float), max_size=3),
    st.one_of(st.none(), st.integers(1, 20).map(float)),
)
masters = st.lists(
    st.builds(lambda name, status, sups: Master(name, status, tuple(sups)), st.sampled_from(("m1", "m2", "m3")),
              st.sampled_from(("running", "paused")), st.lists(supervisors, max_size=3)),
    max_size=3, unique_by=lambda m: m.name,
)  # fmt: skip
rows = st.lists(st.builds(WorkloadRow, st.sampled_from(QUEUES), st.integers(0, 9).map(float),
                          st.integers(0, 9).map(float), st.just(0.0)), max_size=5)  # fmt: skip
readings = st.builds(lambda m, w: HorizonReading(STATS, tuple(w), tuple(m)), masters, rows)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from((SUPERVISOR_RULE, QUEUE_RULE)),
    st.lists(st.tuples(readings, st.sampled_from(("new", "copy", "same", "same_masters"))), max_size=8),
)
def test_the_mapper_equals_map_reading_poll_after_poll(rule: Pattern, polls: list[tuple[Any, str]]):
    mapper = Mapper(rule)
    previous: dict[str, Any] = {}
    last = None
    for reading, how in polls:
        if last is not None and how == "copy":  # the same content as new objects: compared, nothing rebuilt
            reading = HorizonReading(STATS, tuple(last.workload), tuple(Master(*m) for m in last.masters))
        elif last is not None and how == "same":  # the client's unchanged bodies: the very same parsed objects
            reading = last
        elif last is not None and how == "same_masters":  # only /api/workload changed
            reading = HorizonReading(STATS, reading.workload, last.masters)
        got = mapper.map(reading)
        assert got == map_reading(reading, rule)
        if last is not None and how in ("copy", "same"):
            assert all(got[name] is previous[name] for name in got), "an unchanged microservice keeps its object"
        previous, last = got, reading
