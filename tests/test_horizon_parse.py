"""Parsing Horizon's payloads: every quirk of the reference (B1, B5) and clear errors for a wrong shape."""

import json

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
        (
            parse_workload,
            [{"name": "d", "length": "lots"}],
            "/api/workload $[0].length: expected a number, got a string of 4 characters",
        ),
        (parse_masters, "none", "/api/masters $: expected an object, got a string of 4 characters"),
        (
            parse_masters,
            {"m": {"name": "m", "supervisors": [{"name": "m:s", "processes": {"redis:q": "x"}}]}},
            "/api/masters $[#0].supervisors[0].processes[#0]: expected a number, got a string of 1 character",
        ),
    ],
)
def test_wrong_shape_names_endpoint_path_and_expectation(call, payload, message):
    with pytest.raises(SchemaError) as exc:
        call(payload)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("call", "text", "message"),
    [
        (parse_stats, '{"processes": NaN}', "/api/stats $.processes: expected a finite number, got nan"),
        (parse_stats, '{"processes": 1, "jobsPerMinute": Infinity}',
         "/api/stats $.jobsPerMinute: expected a finite number, got inf"),
        (parse_stats, '{"processes": 1e999}', "/api/stats $.processes: expected a finite number, got inf"),
        (parse_stats, '{"processes": "NaN"}', "/api/stats $.processes: expected a finite number, got 'NaN'"),
        (parse_stats, '{"processes": "-Infinity"}',
         "/api/stats $.processes: expected a finite number, got '-Infinity'"),
        (parse_stats, '{"processes": 1' + "0" * 400 + "}", "/api/stats $.processes: expected a finite number, got 1"),
        (parse_workload, '[{"name": "d", "length": 1, "wait": -Infinity}]',
         "/api/workload $[0].wait: expected a finite number, got -inf"),
        (parse_masters, '{"m": {"name": "m", "supervisors": [{"name": "m:s", "processes": {"redis:q": NaN}}]}}',
         "/api/masters $[#0].supervisors[0].processes[#0]: expected a finite number, got nan"),
        (parse_masters, '{"m": {"name": "m", "supervisors": [{"name": "m:s", "options": {"maxProcesses": "inf"}}]}}',
         "/api/masters $[#0].supervisors[0].options.maxProcesses: expected a finite number, got 'inf'"),
    ],
)  # fmt: skip
def test_non_finite_numbers_are_schema_errors_naming_the_field(call, text, message):
    # Python's json.loads accepts NaN, Infinity and 1e999; PHP's json_encode never writes them.
    with pytest.raises(SchemaError) as exc:
        call(json.loads(text))
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize(
    ("call", "text", "message"),
    [
        (parse_workload, r'[{"name": "\ud800", "length": 1}]',
         "/api/workload $[0].name: expected a valid Unicode string, got a string of 1 character"),
        (parse_stats, r'{"processes": 1, "status": "run\udfffning"}',
         "/api/stats $.status: expected a valid Unicode string, got a string of 8 characters"),
        (parse_masters, r'{"m": {"name": "m", "supervisors": [{"name": "m:\ud800-worker"}]}}',
         "/api/masters $[#0].supervisors[0].name: expected a valid Unicode string, got a string of 10 characters"),
        (parse_masters, r'{"m": {"name": "m", "supervisors": [{"name": "m:s", "processes": {"redis:\ud83d": 1}}]}}',
         r"/api/masters $[#0].supervisors[0].processes[#0]: expected a valid Unicode string"),
        (parse_masters, r'{"m": {"name": "m", "supervisors": [{"name": "m:s", "status": "\ud800"}]}}',
         r"/api/masters $[#0].supervisors[0].status: expected a valid Unicode string"),
        (parse_masters, r'{"m\ud800": {"status": "running", "supervisors": []}}',
         r"/api/masters $[#0]: expected a valid Unicode string"),
        (parse_masters, r'{"m": {"name": "\ud800", "supervisors": []}}',
         r"/api/masters $[#0].name: expected a valid Unicode string"),
    ],
)  # fmt: skip
def test_lone_surrogates_are_schema_errors_naming_the_field(call, text, message):
    # A kept string becomes a label value; one that cannot be encoded as UTF-8 would make /metrics answer 500.
    with pytest.raises(SchemaError) as exc:
        call(json.loads(text))
    assert str(exc.value).startswith(message)
    str(exc.value).encode("utf-8")  # the message itself is safe to log and serve


def test_valid_non_ascii_names_are_kept():
    (row,) = parse_workload(json.loads(r'[{"name": "caf\u00e9-\ud83d\ude80", "length": 1}]'))
    assert row.name == "café-🚀"


def test_keys_an_upstream_sent_are_named_by_position_never_copied():
    """A Horizon (or whatever answers in its place) echoing the exporter's token as a JSON key: the error names the
    key's position, so the token reaches neither the log nor the snapshot."""
    token = "Bearer CANARY-KEY-0f3a"
    for payload in ({token: "x"}, {"m": {"supervisors": [{"name": "s", "processes": {token: "nine"}}]}}):
        with pytest.raises(SchemaError) as info:
            parse_masters(payload)
        assert "CANARY" not in str(info.value) and "#0" in str(info.value)
