"""The Horizon simulator's model and payload builders: deterministic, bounded like Horizon, shaped like Horizon."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from exporter.horizon import parse_reading
from exporter.mapping import Fixed, Pattern, map_reading
from simulator.balance import Limits, PoolLoad, rebalance, rebalance_one, targets
from simulator.fleet import QUEUE_PATTERN, SUPERVISOR_PATTERN, default_fleet
from simulator.load import CYCLE, FALL_UNTIL, RAMP_UNTIL
from simulator.model import Fleet, HorizonSpec
from simulator.payloads import horizon_payloads, masters_payload, stats_payload, workload_payload

CORE_MICROSERVICES = {"notifications", "inventory", "reports"}


def all_payloads(fleet: Fleet) -> dict[str, Any]:
    return {name: horizon_payloads(h) for name, h in fleet.horizons.items()}


def supervisors(masters: Any) -> list[dict[str, Any]]:
    return [s for m in (masters or {}).values() for s in m["supervisors"]]


def test_same_seed_gives_the_same_payloads_however_time_is_split() -> None:
    once, stepped = default_fleet(seed=3), default_fleet(seed=3)
    once.advance(250)
    for t in (0.4, 1, 2.9, 17, 17, 60.5, 131, 249.99, 250):
        stepped.advance(t)
    assert stepped.time == once.time == 250
    assert all_payloads(stepped) == all_payloads(once)


def test_another_seed_gives_other_pods_and_another_load() -> None:
    a, b = default_fleet(seed=0), default_fleet(seed=1)
    assert set(masters_payload(a.horizon("orders"))) != set(masters_payload(b.horizon("orders")))
    series_a, series_b = [], []
    for t in range(0, 200, 5):
        a.advance(t)
        b.advance(t)
        series_a.append(a.processes())
        series_b.append(b.processes())
    assert series_a != series_b


def test_time_only_runs_forward() -> None:
    fleet = default_fleet()
    fleet.advance(10)
    with pytest.raises(ValueError, match="forward"):
        fleet.advance(9)


def test_every_supervisor_stays_within_min_and_max_processes() -> None:
    fleet = default_fleet(seed=5)
    seen_max = False
    for _ in range(int(CYCLE) * 2):
        fleet.step()
        for h in fleet.horizons.values():
            for master in h.masters:
                for sup in master.supervisors:
                    spec = sup.spec
                    assert all(n >= spec.min_processes for n in sup.pools.values()), (sup.name, sup.pools)
                    assert sup.processes <= spec.max_processes, (sup.name, sup.pools)
                    seen_max |= sup.processes == spec.max_processes and spec.balance == "auto"
    assert seen_max, "no auto-balanced supervisor ever reached maxProcesses: the ramp does not load the fleet"


@pytest.mark.parametrize("t", [0, 45, 90, 150, 240])
def test_stats_processes_equal_the_supervisors_and_the_workload(t: int) -> None:
    fleet = default_fleet(seed=2)
    fleet.advance(t)
    for h in fleet.horizons.values():
        for subset in (None, h.microservices[:1], h.microservices[1:]):
            stats, workload, masters = horizon_payloads(h, subset)
            by_pool: dict[str, int] = {}
            for sup in supervisors(masters):
                for key, n in (sup["processes"] or {}).items():
                    by_pool[key.split(":", 1)[1]] = by_pool.get(key.split(":", 1)[1], 0) + n
            assert stats["processes"] == sum(by_pool.values()) == sum(row["processes"] for row in workload)
            assert {row["name"]: row["processes"] for row in workload} == by_pool
        assert stats_payload(h)["processes"] == sum(h.processes(ms) for ms in h.microservices)


def test_masters_payload_has_horizons_quirks() -> None:
    fleet = default_fleet()
    fleet.advance(90)
    masters = masters_payload(fleet.horizon("orders"))
    assert isinstance(masters, dict) and list(masters) == sorted(masters) and len(masters) == 2
    for name, master in masters.items():
        assert re.fullmatch(r"orders-horizon-[a-z0-9]+-[a-z0-9]{5}-[A-Za-z0-9]{4}", name)
        assert master["name"] == name and master["status"] == "running" and master["environment"] == "production"
        assert isinstance(master["pid"], str) and master["pid"].isdigit()
        live = {s["name"].split(":", 1)[1]: s for s in master["supervisors"] if s["status"] != "inactive"}
        assert set(live) == {"supervisor-1", "supervisor-priority"}
        for sup in live.values():
            opts = sup["options"]
            assert sup["master"] == name and sup["name"].startswith(name + ":") and sup["pid"].isdigit()
            assert opts["force"] is False and opts["name"] == sup["name"] and opts["parentId"] == master["pid"]
            for key in ("maxProcesses", "minProcesses", "timeout", "memory", "balanceCooldown", "balanceMaxShift"):
                assert isinstance(opts[key], str) and opts[key].isdigit(), key
        assert live["supervisor-1"]["options"]["balance"] == "auto"
        assert live["supervisor-1"]["options"]["autoScalingStrategy"] == "time"
        assert set(live["supervisor-1"]["processes"]) == {"redis:default", "redis:emails"}
        priority = live["supervisor-priority"]
        assert priority["options"]["balance"] == "" and priority["options"]["autoScalingStrategy"] is None
        assert list(priority["processes"]) == ["redis:high,low"] and priority["options"]["queue"] == "high,low"
        inactive = [s for s in master["supervisors"] if s["status"] == "inactive"]
        assert inactive == [{
            "name": f"{name}:supervisor-exports", "master": name, "status": "inactive", "processes": [],
            "options": {"queue": "exports", "balance": "simple"},
        }]  # fmt: skip
    shipping = supervisors(masters_payload(fleet.horizon("shipping")))
    assert [s["options"]["balance"] for s in shipping if s["status"] == "inactive"] == [False, False]
    reports = [s for s in supervisors(masters_payload(fleet.horizon("core"))) if s["name"].endswith(":reports-worker")]
    assert [s["options"]["balance"] for s in reports] == ["off"]


def test_workload_rows_strip_the_connection_and_split_comma_pools() -> None:
    fleet = default_fleet()
    h = fleet.horizon("orders")
    h.queues["high"].backlog, h.queues["low"].backlog, h.queues["default"].backlog = 30.7, 12.0, 500.0
    pools = h.pool_processes()
    rows = {row["name"]: row for row in workload_payload(h)}
    assert list(rows) == ["default", "emails", "high,low"]
    p = pools["high,low"]
    high_wait = round(30 * 0.4 / p)
    assert rows["high,low"] == {
        "name": "high,low", "length": 42, "wait": round((30 * 0.4 + 12 * 2.0) / p), "processes": p,
        "split_queues": {
            "high": {"name": "high", "length": 30, "wait": high_wait},
            "low": {"name": "low", "length": 12, "wait": high_wait + round(12 * 2.0 / p)},
        },
    }  # fmt: skip
    assert rows["default"]["split_queues"] is None and rows["default"]["length"] == 500
    assert stats_payload(h)["wait"] == {"redis:default": round(500 * 0.6 / pools["default"])}


def test_an_empty_horizon_answers_inactive_with_empty_arrays() -> None:
    fleet = default_fleet()
    fleet.advance(100)
    stats, workload, masters = horizon_payloads(fleet.horizon("core"), ())
    assert masters == [] and workload == [] and stats["wait"] == []
    assert stats["status"] == "inactive" and stats["processes"] == 0
    assert stats["queueWithMaxRuntime"] is None and stats["queueWithMaxThroughput"] is None
    empty = Fleet([HorizonSpec("empty", ())])
    empty.advance(30)
    assert masters_payload(empty.horizon("empty")) == [] and stats_payload(empty.horizon("empty"))["wait"] == []
    with pytest.raises(ValueError, match="no microservice"):
        stats_payload(fleet.horizon("core"), ["orders"])


def test_stats_fields_have_horizons_types() -> None:
    fleet = default_fleet()
    fleet.advance(120)
    stats = stats_payload(fleet.horizon("payments"))
    assert set(stats) == {
        "failedJobs", "jobsPerMinute", "pausedMasters", "periods", "processes", "queueWithMaxRuntime",
        "queueWithMaxThroughput", "recentJobs", "status", "wait",
    }  # fmt: skip
    assert stats["periods"] == {"failedJobs": 10080, "recentJobs": 60} and stats["status"] == "running"
    assert stats["queueWithMaxRuntime"] == "default" and stats["queueWithMaxThroughput"] in ("default", "webhooks")
    assert all(isinstance(stats[k], int) for k in ("failedJobs", "jobsPerMinute", "recentJobs", "processes"))
    assert stats["jobsPerMinute"] > 0 and stats["recentJobs"] >= stats["jobsPerMinute"]
    (key,) = stats["wait"]
    assert key in ("redis:default", "redis:webhooks")


def test_counts_move_within_the_first_minute() -> None:
    fleet = default_fleet()
    start = fleet.processes()
    before = horizon_payloads(fleet.horizon("orders"))
    fleet.advance(60)
    assert fleet.processes() != start
    assert horizon_payloads(fleet.horizon("orders")) != before


def test_the_ramp_takes_some_microservice_above_eight_and_back() -> None:
    fleet = default_fleet()
    series: dict[str, list[int]] = {ms: [] for ms in fleet.processes()}
    for _ in range(int(CYCLE)):
        fleet.step()
        for ms, n in fleet.processes().items():
            series[ms].append(n)
    crossed = {
        ms for ms, s in series.items()
        if s[0] <= 8 and max(s[: int(RAMP_UNTIL) + 30]) > 8 and max(s[int(FALL_UNTIL) + 30 :]) <= 8
    }  # fmt: skip
    assert "orders" in crossed and "notifications" in crossed
    assert max(series["payments"]) <= 8, "payments tops out at its single pod's maxProcesses"


def test_queues_back_up_at_the_peak_and_drain_when_quiet() -> None:
    fleet = default_fleet()
    fleet.advance(RAMP_UNTIL + 60)
    assert fleet.horizon("orders").queues["default"].length > 50
    fleet.advance(CYCLE)
    assert all(q.length <= 2 for h in fleet.horizons.values() for q in h.queues.values())


def test_auto_balance_moves_one_process_per_cycle_toward_the_time_share() -> None:
    limits = Limits("auto", min_processes=1, max_processes=10)
    loads = {"a": PoolLoad(size=300, time=300.0), "b": PoolLoad(size=100, time=100.0)}
    assert targets(limits, loads) == {"a": 7.5, "b": 2.5}
    pools = {"a": 1, "b": 1}
    history = [pools]
    for _ in range(20):
        pools = rebalance(limits, pools, loads)
        history.append(pools)
    for before, after in itertools.pairwise(history):
        assert all(abs(after[p] - before[p]) <= 1 for p in after)
        assert sum(after.values()) <= 10 and min(after.values()) >= 1
    assert pools == {"a": 7, "b": 3}
    idle = {"a": PoolLoad(0, 0.0), "b": PoolLoad(0, 0.0)}
    assert rebalance(limits, pools, idle) == {"a": 6, "b": 2}  # both drift to min, one a cycle
    assert targets(Limits("auto", 1, 10, strategy="size"), {"a": PoolLoad(1, 90.0), "b": PoolLoad(3, 10.0)}) == {
        "a": 2.5, "b": 7.5,
    }  # fmt: skip


def test_balance_off_follows_ready_jobs_and_simple_never_moves() -> None:
    off = Limits("", min_processes=1, max_processes=4)
    assert rebalance(off, {"high,low": 1}, {"high,low": PoolLoad(3, 9.0)}) == {"high,low": 2}
    assert rebalance(off, {"high,low": 4}, {"high,low": PoolLoad(2, 9.0)}) == {"high,low": 3}
    assert rebalance(off, {"high,low": 4}, {"high,low": PoolLoad(9, 9.0)}) == {"high,low": 4}
    simple = Limits("simple", 1, 2)
    assert rebalance(simple, {"a": 1, "b": 1}, {"a": PoolLoad(50, 50.0), "b": PoolLoad(0, 0.0)}) == {"a": 1, "b": 1}


def test_core_names_match_the_documented_supervisor_and_queue_patterns() -> None:
    fleet = default_fleet()
    fleet.advance(100)
    core = fleet.horizon("core")
    _, workload, masters = horizon_payloads(core)
    keys = {s["name"].split(":", 1)[1] for s in supervisors(masters)}
    by_supervisor = {m.group("microservice") for k in keys if (m := re.search(SUPERVISOR_PATTERN, k))}
    by_queue = {m.group("microservice") for r in workload if (m := re.search(QUEUE_PATTERN, r["name"]))}
    assert by_supervisor == by_queue == CORE_MICROSERVICES
    assert keys - {f"{ms}-worker" for ms in CORE_MICROSERVICES} == {"scheduler"}


def test_the_exporters_mapping_agrees_with_the_model() -> None:
    fleet = default_fleet(seed=4)
    fleet.advance(130)
    core = fleet.horizon("core")
    reading = parse_reading(*horizon_payloads(core))
    expected = {ms: float(core.processes(ms)) for ms in CORE_MICROSERVICES}
    for source, pattern in (("supervisor", SUPERVISOR_PATTERN), ("queue", QUEUE_PATTERN)):
        mapped = map_reading(reading, Pattern(source, re.compile(pattern)))
        assert {ms: v.processes for ms, v in mapped.items()} == expected, source
    orders = fleet.horizon("orders")
    mapped = map_reading(parse_reading(*horizon_payloads(orders)), Fixed("orders"))
    assert mapped["orders"].processes == stats_payload(orders)["processes"] == orders.processes("orders") > 0


def test_paused_masters_are_reported_and_stop_taking_jobs() -> None:
    fleet = default_fleet()
    orders = fleet.horizon("orders")
    orders.masters[0].status = "paused"
    stats, _, masters = horizon_payloads(orders)
    assert stats["status"] == "running" and stats["pausedMasters"] == 1
    paused = masters[orders.masters[0].name]
    assert paused["status"] == "paused" and {s["status"] for s in paused["supervisors"]} == {"paused", "inactive"}
    for master in orders.masters:
        master.status = "paused"
    fleet.advance(60)
    stats = stats_payload(orders)
    assert stats["status"] == "paused" and stats["pausedMasters"] == 2 and stats["processes"] == 6
    assert orders.queues["default"].length > 50, "nobody works the queue while every master is paused"


@pytest.mark.parametrize("balance", ["auto", "off", "", "simple"])
def test_single_pool_shortcut_matches_rebalance(balance: str) -> None:
    for lo, hi, shift in itertools.product((1, 2), (2, 5, 8), (1, 2)):
        limits = Limits(balance, lo, hi, "time", shift)
        for current in range(lo, hi + 1):
            for size in (0, 1, 3, 9):
                pools = {"q": current}
                want = rebalance(limits, pools, {"q": PoolLoad(size, size * 2.0)})["q"]
                assert rebalance_one(limits, current, size) == want, (limits, current, size)
