"""Parse a KEDA trigger's `scalerMetadata` (all strings) into a validated `Trigger`, or say exactly what is wrong."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

METRICS = ("processes", "queueLength", "waitSeconds")
MODES = ("reached", "average")
DEFAULT_THRESHOLD = 8.0
# Keys KEDA itself reads from the same map; they reach us too and mean nothing here.
KEDA_KEYS = frozenset({"scalerAddress", "enableTLS", "unsafeSsl"})
KNOWN_KEYS = ("microservice", "metric", "queue", "threshold", "activationThreshold", "thresholdMode")

_UNSAFE_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


class MetadataError(ValueError):
    """A trigger metadata problem; the message names the key, the value (unless `shown` is false) and what was
    expected."""

    def __init__(self, key: str, value: str | None, expected: str, *, shown: bool = True) -> None:
        self.key, self.value, self.expected = key, value, expected
        got = "missing" if value is None else f"got {value!r}" if shown else "its value is not shown"
        super().__init__(f"trigger metadata {key}: expected {expected}, {got}")


@dataclass(frozen=True, slots=True)
class Trigger:
    """What one ScaledObject trigger asks for."""

    microservice: str
    metric: str = "processes"
    queue: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    activation_threshold: float = 0.0
    mode: str = "reached"
    # The advertised metric name: lowercase, stable per (microservice, metric, queue). Computed once here because
    # every GetMetrics compares and returns it.
    metric_name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = ["horizon", self.microservice, self.metric]
        if self.queue is not None:
            parts.append(self.queue)
        object.__setattr__(self, "metric_name", _UNSAFE_NAME_CHARS.sub("-", "-".join(parts).lower()).strip("-"))

    @property
    def subject(self) -> str:
        """How log lines and errors name what is measured, e.g. `orders: queueLength[default]`."""
        queue = f"[{self.queue}]" if self.queue is not None else ""
        return f"{self.microservice}: {self.metric}{queue}"


def _number(meta: Mapping[str, str], key: str, default: float, *, positive: bool) -> float:
    raw = meta.get(key)
    if raw is None:
        return default
    expected = "a number > 0" if positive else "a number ≥ 0"
    try:
        value = float(raw.strip())
    except ValueError:
        raise MetadataError(key, raw, expected) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise MetadataError(key, raw, expected)
    return value


def _choice(meta: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    raw = meta.get(key, choices[0])
    if raw not in choices:
        raise MetadataError(key, raw, "one of " + ", ".join(choices))
    return raw


def _resolve_from_env(meta: Mapping[str, str]) -> dict[str, str]:
    out = {k: v for k, v in meta.items() if not (k.endswith("FromEnv") and k[: -len("FromEnv")] in KNOWN_KEYS)}
    for key, value in meta.items():
        base = key[: -len("FromEnv")]
        if key.endswith("FromEnv") and base in KNOWN_KEYS:
            if base in out:
                raise MetadataError(key, value, f"either {base} or {key}, not both")
            out[base] = value
    return out


def parse_metadata(meta: Mapping[str, str]) -> Trigger:
    """Validate `meta` and build a Trigger; raises MetadataError on the first problem.

    Unknown keys are rejected: a typo such as `treshold` would otherwise silently scale at the default.
    KEDA keeps `<key>FromEnv` keys under their own name with the container's env value; they count as `<key>`.
    """
    meta = _resolve_from_env(meta)
    unknown = sorted(k for k in meta if k not in KNOWN_KEYS and k not in KEDA_KEYS)
    if unknown:
        # Not echoed: KEDA resolves `<key>FromEnv` from the workload's environment — Secrets included — so a key
        # copied from another scaler's trigger (`passwordFromEnv`) arrives holding a password, and the status goes to
        # KEDA's log and the ScaledObject's events.
        raise MetadataError(unknown[0], meta[unknown[0]], "one of the keys " + ", ".join(KNOWN_KEYS), shown=False)
    microservice = meta.get("microservice", "").strip()
    if not microservice:
        raise MetadataError("microservice", meta.get("microservice"), "the microservice name the exporter reports")
    queue = meta.get("queue")
    if queue is not None and not queue.strip():
        raise MetadataError("queue", queue, "a queue name, or no queue key at all")
    return Trigger(
        microservice=microservice,
        metric=_choice(meta, "metric", METRICS),
        queue=queue.strip() if queue is not None else None,
        threshold=_number(meta, "threshold", DEFAULT_THRESHOLD, positive=True),
        activation_threshold=_number(meta, "activationThreshold", 0.0, positive=False),
        mode=_choice(meta, "thresholdMode", MODES),
    )
