"""Tenant isolation: which ScaledObject namespaces may read which microservices (`--tenants FILE`).

```yaml
tenants:
  shop:
    namespaces: [shop, shop-staging]       # ScaledObjectRef.namespace values of this tenant
    microservices: [orders, "payments-*"]  # names or globs (fnmatch: * ? [..]) this tenant may read
```

Pure policy (`parse_tenants`, `Tenants.allows`) apart from the file that reloads it when it changes
(`TenantsFile`): a file that stops validating keeps the previous policy and says why in the log.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

log = logging.getLogger("horizon_keda.scaler.tenants")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a Kubernetes namespace name (RFC 1123 label)


class TenantsError(ValueError):
    """A tenants file that does not validate: the message names the file, the key and what was expected."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant: its namespaces and the microservice names or globs it may read."""

    name: str
    namespaces: frozenset[str]
    microservices: tuple[str, ...]

    def may_read(self, microservice: str) -> bool:
        """Whether a name or glob of this tenant admits `microservice` (case-sensitive)."""
        return any(fnmatch.fnmatchcase(microservice, pattern) for pattern in self.microservices)


@dataclass(frozen=True, slots=True)
class Tenants:
    """The whole policy: the tenant of each namespace."""

    by_namespace: Mapping[str, Tenant]

    def allows(self, namespace: str, microservice: str) -> bool:
        """A ScaledObject in `namespace` may read `microservice`: its namespace belongs to a tenant that lists it."""
        tenant = self.by_namespace.get(namespace)
        return tenant is not None and tenant.may_read(microservice)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise TenantsError(f"{where}: expected a non-empty list of names, got {value!r}"[:300])
    return value


def parse_tenants(data: Any, source: str) -> Tenants:
    """Validate decoded YAML into `Tenants`; `TenantsError` names the file, the key and what was expected."""
    if not isinstance(data, dict) or set(data) != {"tenants"} or not isinstance(data["tenants"], dict):
        raise TenantsError(f"{source}: expected one key `tenants:` holding an object of tenants")
    by_namespace: dict[str, Tenant] = {}
    for name, raw in data["tenants"].items():
        where = f"{source}: tenants.{name}"
        if not isinstance(raw, dict):
            raise TenantsError(f"{where}: expected an object with namespaces and microservices")
        unknown = set(raw) - {"namespaces", "microservices"}
        if unknown:
            raise TenantsError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected namespaces, microservices)")
        namespaces = _strings(raw.get("namespaces"), f"{where}.namespaces")
        for ns in namespaces:
            if not _NAME.match(ns):
                raise TenantsError(f"{where}.namespaces: {ns!r} is not a Kubernetes namespace name")
            if ns in by_namespace:
                raise TenantsError(f"{where}.namespaces: {ns!r} also belongs to tenant {by_namespace[ns].name!r}")
        tenant = Tenant(str(name), frozenset(namespaces), tuple(_strings(raw.get("microservices"),
                                                                         f"{where}.microservices")))  # fmt: skip
        by_namespace.update(dict.fromkeys(namespaces, tenant))
    return Tenants(by_namespace)


def load_tenants(path: str) -> Tenants:
    """Read and validate a tenants file."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise TenantsError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TenantsError(f"{path}: invalid YAML: {exc}") from None
    return parse_tenants(data, path)


class TenantsFile:
    """The policy of a file, re-read when its inode, mtime or size changes (checked at most once a second)."""

    def __init__(self, path: str, *, check_every: float = 1.0) -> None:
        self.path = path
        self.check_every = check_every
        self.current = load_tenants(path)  # a bad file at start is an error, not an open door
        self._stamp = self._file_stamp()
        self._checked_at = 0.0

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def policy(self, now: float) -> Tenants:
        """The policy in force at `now` (monotonic seconds), reloaded first when the file changed."""
        if now - self._checked_at >= self.check_every:
            self._checked_at = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.current = load_tenants(self.path)
                    log.info("tenants reloaded from %s: %d namespaces", self.path, len(self.current.by_namespace))
                except TenantsError as exc:
                    log.error("tenants reload failed, keeping the previous policy: %s", exc)
        return self.current
