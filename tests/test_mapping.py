"""Mapping readings to microservices: topology (a) fixed, (b) by supervisor or queue name."""

import re

from exporter.horizon import parse_reading
from exporter.mapping import Fixed, Pattern, map_reading
from tests.payloads import core_masters, core_stats, core_workload, topology_a

COUNTS = {"notifications": [3, 4], "inventory": [2, 0], "reports": [5]}


def test_fixed_sums_every_supervisor_of_every_master_and_equals_stats_processes():
    stats, workload, masters = topology_a()
    reading = parse_reading(stats, workload, masters)
    (ms,) = map_reading(reading, Fixed("orders")).values()
    assert ms.processes == 9.0 == reading.stats.processes
    assert ms.max_processes == 14.0  # 10 + 4; the inactive placeholder has no maxProcesses
    assert ms.supervisors == {"running": 2, "paused": 0, "inactive": 1}
    assert ms.queues["default"].processes == 6.0 and ms.queues["default"].length == 42.0
    assert ms.queues["high,low"].processes == 2.0 and ms.queues["high,low"].wait_seconds == 5.0


def test_fixed_with_no_masters_is_a_real_zero_from_a_healthy_horizon():
    stats, _, _ = topology_a()
    reading = parse_reading(stats | {"processes": 0, "wait": []}, [], [])
    assert map_reading(reading, Fixed("orders"))["orders"].processes == 0.0


def test_two_masters_add_up():
    stats, workload, masters = topology_a()
    second = {k.replace("Ab3d", "Zz9y"): v for k, v in masters.items()}
    for m in second.values():
        m["name"] = m["name"].replace("Ab3d", "Zz9y")
    reading = parse_reading(stats, workload, masters | second)
    assert map_reading(reading, Fixed("orders"))["orders"].processes == 18.0


def test_supervisor_names_split_one_horizon_into_microservices():
    reading = parse_reading(core_stats(COUNTS), core_workload(COUNTS, {"reports": 30}), core_masters(COUNTS))
    rule = Pattern("supervisor", re.compile(r"^(?P<microservice>[a-z0-9-]+)-worker$"))
    result = map_reading(reading, rule)
    assert set(result) == {"notifications", "inventory", "reports"}  # the scheduler matches nothing
    assert result["notifications"].processes == 7.0
    assert result["inventory"].processes == 2.0
    assert result["inventory"].supervisors["running"] == 2
    assert result["reports"].queues["reports-jobs"].length == 30.0
    assert "cron" not in result["reports"].queues


def test_queue_names_split_one_horizon_into_microservices():
    reading = parse_reading(core_stats(COUNTS), core_workload(COUNTS, {}), core_masters(COUNTS))
    rule = Pattern("queue", re.compile(r"^(?P<microservice>[a-z]+)-jobs$"))
    result = map_reading(reading, rule)
    assert {k: v.processes for k, v in result.items()} == {"notifications": 7.0, "inventory": 2.0, "reports": 5.0}


def test_comma_joined_pool_belongs_to_its_first_matching_member():
    stats, workload, masters = topology_a()
    reading = parse_reading(stats, workload, masters)
    rule = Pattern("queue", re.compile(r"^(?P<microservice>high|low|default)$"))
    result = map_reading(reading, rule)
    assert result["high"].processes == 2.0
    assert "low" not in result
    assert result["default"].processes == 6.0


def test_nothing_matching_makes_no_microservice():
    reading = parse_reading(core_stats(COUNTS), core_workload(COUNTS, {}), core_masters(COUNTS))
    assert map_reading(reading, Pattern("supervisor", re.compile(r"^(?P<microservice>x)-nope$"))) == {}
