"""The scaler's copy of the exporter's snapshot, kept in step by full documents and deltas (docs/snapshot-api.md).

Pure: `Feed.from_document` takes a full document, `Feed.apply` a delta, and says which microservices it touched.
A delta that does not follow from this copy (another exporter instance, another revision) raises `OutOfStep`;
the follower then asks for the full document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_FRESH = ("last_attempt_at", "last_success_at", "duration_seconds")


class OutOfStep(ValueError):
    """A delta that cannot be applied to this copy; ask for the full document."""


def shown(value: object) -> str:
    """`value` as a message may show it: an int as written, anything else by its type (a string by its length).

    The exporter's answer is never copied into a message: whatever answers at its address may echo the scaler's
    own Authorization header back, and these messages reach KEDA, its events and the audit log.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return f"a string of {len(value)} character{'' if len(value) == 1 else 's'}"
    return type(value).__name__


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"snapshot document: {key}: expected an integer, got {shown(value)}")
    return value


def _objects(doc: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    value = doc.get(key)
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError(f"snapshot document: {key}: expected an object of objects")
    return value


def _names(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"snapshot document: {key}: expected a list of names")
    return value


def _poll_interval(doc: dict[str, Any]) -> float | None:
    value = doc.get("poll_interval_seconds")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def derived(entry: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """A microservice entry with `up`, `stale` and `fetched_at` taken from its target, as the exporter makes them."""
    has_values = entry.get("processes") is not None
    up = target.get("up")
    last = target.get("last_success_at")
    fields = {
        "up": up,
        "stale": (not up) and last is not None and has_values,
        "fetched_at": last if has_values else None,
    }
    if all(entry.get(k) == v for k, v in fields.items()):
        return entry
    return {**entry, **fields}


@dataclass
class Feed:
    """Targets and microservices as of one exporter instance's `revision` (None: that exporter sends no deltas)."""

    instance: str | None
    version: int
    revision: int | None
    targets: dict[str, dict[str, Any]]
    microservices: dict[str, dict[str, Any]]
    by_target: dict[str, set[str]] = field(default_factory=dict)
    poll_interval: float | None = None  # the exporter's, from the latest document

    @classmethod
    def from_document(cls, doc: Any) -> Feed:
        """A copy from a full document; raises ValueError when the parts the scaler relies on are missing."""
        if not isinstance(doc, dict):
            raise ValueError("snapshot document: expected a JSON object")
        version = _int(doc, "version")
        microservices = _objects(doc, "microservices")
        targets = _objects(doc, "targets") if "targets" in doc else {}
        revision = doc.get("revision")
        instance = doc.get("instance")
        feed = cls(
            instance=instance if isinstance(instance, str) and instance else None,
            version=version,
            revision=revision if isinstance(revision, int) and not isinstance(revision, bool) else None,
            targets=targets,
            microservices=microservices,
            poll_interval=_poll_interval(doc),
        )
        for name, entry in microservices.items():
            feed.by_target.setdefault(str(entry.get("target")), set()).add(name)
        return feed

    @property
    def can_follow_deltas(self) -> bool:
        """The exporter named itself and its revision: ask it for deltas."""
        return self.instance is not None and self.revision is not None

    def apply(self, doc: dict[str, Any]) -> set[str]:
        """Apply a delta in place; the names of the microservices whose entry changed (or left)."""
        if doc.get("instance") != self.instance or doc.get("since") != self.revision or self.revision is None:
            raise OutOfStep(f"delta since {shown(doc.get('since'))} does not follow revision {self.revision} "
                            "of this exporter instance")  # fmt: skip
        version, revision = _int(doc, "version"), _int(doc, "revision")
        targets, microservices = _objects(doc, "targets"), _objects(doc, "microservices")
        removed_targets, removed = _names(doc, "removed_targets"), _names(doc, "removed_microservices")
        fresh = doc.get("fresh", {})
        if not isinstance(fresh, dict):
            raise ValueError("snapshot document: fresh: expected an object")
        # Everything is checked before anything changes: readers hold this copy, and a rejected delta must leave
        # it as it was (the follower then asks for the full document).
        changed_targets = dict(targets)
        for tname, times in fresh.items():
            old = self.targets.get(tname)
            if old is None or tname in removed_targets or not isinstance(times, list) or len(times) != 3:
                raise OutOfStep("fresh times for a target of this copy do not apply")
            changed_targets[tname] = {**old, **dict(zip(_FRESH, times, strict=True))}
        touched: set[str] = set()
        for name in removed:
            if self._drop(name):
                touched.add(name)
        for name in removed_targets:
            self.targets.pop(name, None)
        for name, entry in microservices.items():
            self._drop(name)
            self.microservices[name] = entry
            self.by_target.setdefault(str(entry.get("target")), set()).add(name)
            touched.add(name)
        for tname, target in changed_targets.items():
            self.targets[tname] = target
            for name in self.by_target.get(tname, ()):
                if name in microservices:
                    continue
                entry = self.microservices[name]
                new = derived(entry, target)
                if new is not entry:
                    self.microservices[name] = new
                    touched.add(name)
        self.version, self.revision = version, revision
        self.poll_interval = _poll_interval(doc)
        return touched

    def _drop(self, name: str) -> bool:
        entry = self.microservices.pop(name, None)
        if entry is None:
            return False
        owners = self.by_target.get(str(entry.get("target")))
        if owners is not None:
            owners.discard(name)
        return True
