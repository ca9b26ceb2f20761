"""The fast parsing path gives exactly what the checked path gives, or leaves the decision (and the error) to it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.horizon import (
    SchemaError,
    parse_masters,
    parse_masters_checked,
    parse_workload,
    parse_workload_checked,
)
from tests.payloads import MASTERS, WORKLOAD

numbers = st.one_of(
    st.integers(-5, 50), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
        ["12", "0", "", "nan", "inf", "1e999", " 7 ", "1_0", "x"]), st.booleans(), st.none(), st.just(10**400),
)  # fmt: skip
names = ["m-1", "redis:default", "m-1:supervisor-1", "m-1:a:b", "é", "\ud800"]
texts = st.one_of(st.sampled_from(names), st.integers(0, 3))
supervisor = st.fixed_dictionaries(
    {"name": texts},
    optional={"status": texts, "processes": st.one_of(st.dictionaries(st.sampled_from(["redis:a", "redis:b", "ü"]),
              numbers, max_size=3), st.just([]), st.just([1])), "options": st.one_of(
              st.fixed_dictionaries({}, optional={"maxProcesses": numbers}), st.none())},
)  # fmt: skip
master = st.fixed_dictionaries(
    {}, optional={"name": texts, "status": texts, "supervisors": st.one_of(st.lists(supervisor, max_size=3),
                  st.just({}))},
)  # fmt: skip
masters_payloads = st.one_of(st.dictionaries(st.sampled_from(["m-1", "m-2", "ß"]), master, max_size=3),
                             st.just([]), st.just([1]), st.none())  # fmt: skip
row = st.fixed_dictionaries({"name": texts}, optional={"length": numbers, "wait": numbers, "processes": numbers})
workload_payloads = st.one_of(st.lists(row, max_size=4), st.just({}), st.just([1]))


def _outcome(fn: Any, payload: Any) -> Any:
    try:
        return ("ok", fn(payload))
    except SchemaError as exc:
        return ("error", str(exc))


@settings(max_examples=400, deadline=None)
@given(masters_payloads)
def test_masters_fast_path_agrees_with_the_checked_path(payload: Any):
    assert _outcome(parse_masters, payload) == _outcome(parse_masters_checked, payload)


@settings(max_examples=400, deadline=None)
@given(workload_payloads)
def test_workload_fast_path_agrees_with_the_checked_path(payload: Any):
    assert _outcome(parse_workload, payload) == _outcome(parse_workload_checked, payload)


@pytest.mark.parametrize(("fn", "checked", "payload"), [
    (parse_masters, parse_masters_checked, MASTERS), (parse_workload, parse_workload_checked, WORKLOAD),
])  # fmt: skip
def test_the_reference_payloads_take_the_same_result(fn: Any, checked: Any, payload: Any):
    assert fn(payload) == checked(payload) and fn(payload)
