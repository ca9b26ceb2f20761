"""Which exporter shard polls which Horizon target: FNV-1a (64 bit) of the target's name, then jump consistent hash.

The same two steps as kube-state-metrics' `--shard`/`--total-shards` (its pkg/sharding/listwatch.go hashes an
object's UID with Go's `hash/fnv` New64a and picks the shard with github.com/dgryski/go-jump's `Hash`, Lamping and
Veach's algorithm, arXiv:1406.2294). The unit here is the Horizon *target*, not the microservice: a Horizon serving
many microservices is polled whole by one shard. Going from N to N+1 shards moves about 1/(N+1) of the targets, all
of them to the new shard; going back moves the same ones back.

Pure: no I/O, no clock. `Sharding` is a shard's place (its ordinal and the total); the ordinal comes from a flag, an
environment variable, or a StatefulSet pod's name or `apps.kubernetes.io/pod-index` label (`ordinal_from_pod_name`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FNV64_OFFSET = 14695981039346656037  # 0xcbf29ce484222325
FNV64_PRIME = 1099511628211  # 0x100000001b3
_MASK64 = (1 << 64) - 1
_JUMP_MULTIPLIER = 2862933555777941757  # the paper's 64-bit linear congruential generator
_POD_ORDINAL = re.compile(r"-([0-9]+)\Z")


def fnv64a(data: str | bytes) -> int:
    """FNV-1a, 64 bit, over `data` (a str is hashed as its UTF-8 bytes)."""
    h = FNV64_OFFSET
    for byte in data.encode() if isinstance(data, str) else data:
        h = ((h ^ byte) * FNV64_PRIME) & _MASK64
    return h


def jump(key: int, buckets: int) -> int:
    """Jump consistent hash: the bucket in [0, buckets) of the 64-bit `key`.

    The float steps are IEEE doubles as in the reference code, so every implementation agrees bit for bit.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    key &= _MASK64
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def owner(name: str, total: int) -> int:
    """The shard, in [0, total), that polls the target called `name`."""
    return jump(fnv64a(name), total)


def ordinal_from_pod_name(pod_name: str) -> int | None:
    """A StatefulSet pod's ordinal from its name (`horizon-keda-2` → 2); None when the name does not end in
    `-<digits>` (a Deployment's pods end in a random suffix)."""
    m = _POD_ORDINAL.search(pod_name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class Sharding:
    """A shard's place: its ordinal (None: not known, allowed only unsharded) and the number of shards."""

    shard: int | None = None
    total: int = 1

    @property
    def sharded(self) -> bool:
        """More than one shard: this one polls only the targets it owns."""
        return self.total > 1

    @property
    def effective_shard(self) -> int:
        """The ordinal as exported (`horizon_exporter_shard`): 0 when unsharded, whatever the pod's name says."""
        return self.shard if self.sharded and self.shard is not None else 0

    def owns(self, name: str) -> bool:
        """Whether this shard polls the target called `name` (every target when unsharded; none when the ordinal
        is not below the total, as for a pod a scale-down is about to remove)."""
        if not self.sharded:
            return True
        return self.shard is not None and owner(name, self.total) == self.shard

    def describe(self) -> str:
        """`shard 1 of 3` or `unsharded`, for logs and --check-config."""
        return f"shard {self.effective_shard} of {self.total}" if self.sharded else "unsharded"
