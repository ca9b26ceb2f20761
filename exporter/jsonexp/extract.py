"""Turn one decoded JSON document into samples by a module's metric definitions (pure).

The document is parsed once per probe and every path runs against that one tree. Each failure is collected with
its reason and metric, never silently dropped; duplicate label sets keep the first sample and are counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonpath_ng import DatumInContext

from .modules import MetricDef, Module
from .path import Missing, Template, render, to_number, value_of


@dataclass(frozen=True, slots=True)
class Sample:
    """One sample: labels in definition order, value, optional timestamp in milliseconds."""

    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None = None


@dataclass(slots=True)
class Family:
    """All samples of one metric name."""

    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)
    seen: set[tuple[tuple[str, str], ...]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ExtractError:
    """A metric (or one of its values) that could not be read: reason is a label value, message for logs."""

    metric: str
    reason: str  # missing_path | not_a_number | bad_timestamp
    message: str


class ErrorLog(list):
    """Extraction errors: every one counted by reason, only the first `KEEP` kept (a hostile document can make
    millions)."""

    KEEP = 20

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def append(self, error: ExtractError) -> None:  # type: ignore[override]
        self.counts[error.reason] = self.counts.get(error.reason, 0) + 1
        if len(self) < self.KEEP:
            super().append(error)


@dataclass(slots=True)
class Extraction:
    """Everything one document gave: families in definition order, errors, dropped duplicates."""

    families: dict[str, Family] = field(default_factory=dict)
    errors: ErrorLog = field(default_factory=ErrorLog)
    duplicates: int = 0

    def add(self, d: MetricDef, name: str, sample: Sample) -> None:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = Family(name, d.valuetype, d.help)
        if sample.labels in family.seen:
            self.duplicates += 1  # json_exporter fails the whole scrape with 500 here
            return
        family.seen.add(sample.labels)
        family.samples.append(sample)


def _utf8(value: str) -> str:
    """`value` with any lone surrogate (valid JSON, not valid UTF-8) replaced by `?` — before the duplicate check,
    so two such strings that render alike count as duplicates instead of giving two identical series."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _labels(
    d: MetricDef, datum: DatumInContext, errors: list[ExtractError], params: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    out = []
    for name, template in d.labels:
        try:
            value = render(template, datum, params)
            out.append((name, value if value.isascii() else _utf8(value)))
        except Missing as exc:
            # json_exporter logs and uses "" for a label whose path fails; so do we, but visibly.
            errors.append(ExtractError(d.name, "missing_path", f"{d.name}: label {name}: {exc}"))
            out.append((name, ""))
        except ValueError as exc:  # .sum() over something that is not a number
            errors.append(ExtractError(d.name, "not_a_number", f"{d.name}: label {name}: {exc}"))
            out.append((name, ""))
    return tuple(out)


def _timestamp(d: MetricDef, datum: DatumInContext, errors: list[ExtractError]) -> int | None:
    if d.epochtimestamp is None:
        return None
    try:
        raw = value_of(d.epochtimestamp, datum)
        # json_exporter's ParseInt fails on 1.757568506e+09; a float parse reads it.
        ts = int(float(raw))
        if not -(2**63) <= ts < 2**63:  # Prometheus reads an int64; a longer one would fail the whole scrape
            raise ValueError("timestamp out of range")
        return ts
    except Missing as exc:
        if not d.allow_missing_key:
            errors.append(ExtractError(d.name, "missing_path", f"{d.name}: epochtimestamp: {exc}"))
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e400 reads as inf, which has no int
        errors.append(ExtractError(d.name, "bad_timestamp", f"{d.name}: epochtimestamp is not a finite number"))
    return None


def _number(d: MetricDef, template: Template, datum: DatumInContext, what: str, out: Extraction) -> float | None:
    if template.static:
        try:
            return to_number(template.source, d.value_map)  # a constant such as `active: 1`
        except ValueError as exc:
            out.errors.append(ExtractError(d.name, "not_a_number", f"{d.name}: {what}: {exc}"))
            return None
    try:
        raw: Any = value_of(template, datum)
        return to_number(raw, d.value_map)
    except Missing as exc:
        if not d.allow_missing_key:
            out.errors.append(ExtractError(d.name, "missing_path", f"{d.name}: {what}: {exc}"))
        return None
    except ValueError as exc:
        out.errors.append(ExtractError(d.name, "not_a_number", f"{d.name}: {what}: {exc}"))
        return None


def extract(module: Module, document: Any, params: Mapping[str, str] | None = None) -> Extraction:
    """Apply every metric of `module` to `document` (already decoded JSON); `params` are the probe's query."""
    params = params or {}
    out = Extraction()
    root = DatumInContext(document)
    for d in module.metrics:
        if d.type == "value":
            value = _number(d, d.path, root, "path", out)
            if value is not None:
                out.add(d, d.name, Sample(_labels(d, root, out.errors, params), value, _timestamp(d, root, out.errors)))
            continue
        expr = d.path.single
        if expr is None:
            out.errors.append(ExtractError(d.name, "missing_path", f"{d.name}: type object needs one {{path}}"))
            continue
        try:
            elements = expr.find(root)
        except ValueError as exc:  # .sum() over something that is not a number
            out.errors.append(ExtractError(d.name, "not_a_number", f"{d.name}: path: {exc}"))
            continue
        if not elements and not expr.iterates and not d.allow_missing_key:
            out.errors.append(
                ExtractError(d.name, "missing_path", f"{d.name}: path {expr.source.strip()} is not found")
            )
            continue
        for element in _elements(elements):
            labels = _labels(d, element, out.errors, params)
            ts = _timestamp(d, element, out.errors)
            for suffix, template in d.values:
                value = _number(d, template, element, f"values.{suffix}", out)
                if value is not None:
                    out.add(d, f"{d.name}_{suffix}", Sample(labels, value, ts))
    return out


def _elements(matches: list[DatumInContext]) -> list[DatumInContext]:
    # json_exporter lists the matches; a single match that is an array is iterated, as `{.values}` is in k8s.
    if len(matches) == 1 and isinstance(matches[0].value, list):
        arr = matches[0]
        return [DatumInContext(v, path=_index(i), context=arr) for i, v in enumerate(arr.value)]
    return matches


def _index(i: int) -> Any:
    from jsonpath_ng import Index

    return Index(i)


def format_value(value: float) -> str:
    """A sample value in the text format (Go's strconv 'g'-like: 1234, 0.5, NaN, +Inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
