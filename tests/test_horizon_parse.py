"""Parsing Horizon's payloads: every quirk of the reference (B1, B5) and clear errors for a wrong shape."""

import pytest

from exporter.horizon import SchemaError, parse_masters, parse_reading, parse_stats, parse_workload
from tests.payloads import topology_a


def test_reference_payloads_parse_with_string_options_and_inactive_placeholder():
    stats, workload, masters = topology_a()
    reading = parse_reading(stats, workload, masters)
    assert reading.stats.processes == 9.0
    assert reading.stats.jobs_per_minute == 128.0
    (master,) = reading.masters
    assert master.name == "orders-horizon-7d9f8-x2kqz-Ab3d"
    sup1, prio, reports = master.supervisors
    assert sup1.key == "supervisor-1"
    assert sup1.processes == {"redis:default": 6.0, "redis:emails": 1.0}
    assert sup1.max_processes == 10.0  # "10" arrives as a JSON string
    assert prio.processes == {"redis:high,low": 2.0}
    assert reports.status == "inactive" and reports.processes == {} and reports.max_processes is None
    assert [r.name for r in reading.workload] == ["default", "emails", "high,low"]


def test_empty_masters_and_wait_arrive_as_empty_arrays():
    stats, _, _ = topology_a()
    stats.update(wait=[], status="inactive", processes=0)
    reading = parse_reading(stats, [], [])
    assert reading.masters == ()
    assert reading.stats.status == "inactive"


def test_numbers_may_be_floats_or_numeric_strings():
    stats = parse_stats({"processes": 9.0, "jobsPerMinute": "12.5", "status": "running"})
    assert stats.processes == 9.0 and stats.jobs_per_minute == 12.5
    (row,) = parse_workload([{"name": "default", "length": 4.0, "wait": "3", "processes": 2.0}])
    assert (row.length, row.wait, row.processes) == (4.0, 3.0, 2.0)


def test_extra_fields_from_newer_horizon_are_ignored():
    stats, workload, masters = topology_a()
    stats["navigationCounts"] = {"failed": 1}
    workload[0].update(connection="redis", paused=False, pausedUntil=None, throughput=3)
    reading = parse_reading(stats, workload, masters)
    assert reading.workload[0].length == 42.0


def test_missing_optional_stats_are_none_not_zero():
    stats = parse_stats({"processes": 1, "status": "running"})
    assert stats.jobs_per_minute is None and stats.failed_jobs is None and stats.recent_jobs is None


@pytest.mark.parametrize(
    ("call", "payload", "message"),
    [
        (parse_stats, [], "/api/stats $: expected an object, got list"),
        (parse_stats, {"status": "running"}, "/api/stats $.processes: expected a number, got None"),
        (parse_stats, {"processes": True}, "/api/stats $.processes: expected a number, got True"),
        (parse_workload, {"default": 1}, "/api/workload $: expected an array, got dict"),
        (parse_workload, [{"name": "d", "length": "lots"}], "/api/workload $[0].length: expected a number, got 'lots'"),
        (parse_masters, "none", "/api/masters $: expected an object, got 'none'"),
        (
            parse_masters,
            {"m": {"name": "m", "supervisors": [{"name": "m:s", "processes": {"redis:q": "x"}}]}},
            "/api/masters $['m'].supervisors[0].processes['redis:q']: expected a number, got 'x'",
        ),
    ],
)
def test_wrong_shape_names_endpoint_path_and_expectation(call, payload, message):
    with pytest.raises(SchemaError) as exc:
        call(payload)
    assert str(exc.value) == message
