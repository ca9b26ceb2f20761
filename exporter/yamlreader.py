"""The typed YAML reader that targets (config.py) and json_exporter modules (jsonexp/modules.py) are read with,
including the blocks both have — headers, credentials, TLS — read here once, by the same rules.

A `Reader` is one mapping at a dotted key path; every problem is a `ConfigError` naming the file, the key and what
was expected, and warnings (a setting accepted but not applied as written) go to one list for the whole file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .http import Authorization, BasicAuth
from .tls import TLS_VERSIONS, TLSConfig, TLSFileError, load_tls

TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure_skip_verify")


class ConfigError(ValueError):
    """A configuration problem: `source` is the file (or `--target`), `key` the dotted key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source, self.key = source, key
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


_INF = float("inf")
_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: str, source: str, key: str, env: Mapping[str, str]) -> str:
    """Replace `${VAR}` and `${VAR:-default}` from the environment; `$$` is a literal `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(source, key, f"environment variable {name} is not set (write ${{{name}:-}} for empty)")

    return _ENV.sub(sub, value)


class Reader:
    """Typed access to one YAML mapping at `path`: unknown keys are errors, `${VAR}` is expanded in strings.

    A null string or block reads as absent (a null number or boolean is an error). Children share the file's
    environment and warnings list.
    """

    def __init__(
        self, data: Any, source: str, path: str, env: Mapping[str, str], warnings: list[str] | None = None
    ) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)", f"expected a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = {str(k): v for k, v in data.items()}
        self.source, self.path, self.env = source, path, env
        self.warnings: list[str] = [] if warnings is None else warnings

    def key(self, name: str) -> str:
        """The dotted key of `name` in this mapping."""
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        """A `ConfigError` at `name` (for the caller to raise)."""
        return ConfigError(self.source, self.key(name), message)

    def warn(self, name: str, message: str) -> None:
        """Record a warning at `name`: shown by --check-config and logged at (re)load."""
        self.warnings.append(f"{self.source}: {self.key(name)}: {message}")

    def has(self, name: str) -> bool:
        """Whether `name` is given (a null value is not)."""
        return self.data.get(name) is not None

    def only(self, allowed: Sequence[str], *, unsupported: Sequence[str] = (), case_variants: bool = False) -> None:
        """Reject keys not in `allowed`; with `case_variants`, read `valueType` as `valuetype` and warn."""
        for name in list(self.data):
            if name in allowed:
                continue
            if case_variants and name.lower() in allowed:
                self.warn(name, f"read as {name.lower()!r} (json_exporter ignores this spelling)")
                self.data[name.lower()] = self.data.pop(name)
                continue
            hint = " (not supported by horizon-keda)" if name in unsupported else ""
            raise self.error(name, f"unknown key{hint}; expected one of: {', '.join(allowed)}")

    def string(self, name: str, default: str | None = None, *, expand: bool = True) -> str | None:
        """A string (a number is read as its text); `${VAR}` expanded unless `expand` is false."""
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(name, f"expected a string, got {type(value).__name__}")
        text = str(value)
        return interpolate(text, self.source, self.key(name), self.env) if expand else text

    def file(self, name: str) -> str | None:
        """A file path (`${VAR}` expanded), or None when not given; an empty path is an error."""
        path = self.string(name)
        if path == "":
            raise self.error(name, "expected a file path, got ''")
        return path

    def number(self, name: str, default: float, *, minimum: float, integer: bool = False) -> float:
        """A number at least `minimum`; a string is expanded and parsed (`timeout: ${TIMEOUT:-5}`)."""
        value = self.data.get(name, default)
        if isinstance(value, str):
            value = interpolate(value, self.source, self.key(name), self.env)
            try:
                value = float(value)
            except ValueError:
                raise self.error(name, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (_INF, -_INF):
            raise self.error(name, f"expected a number, got {value!r}")
        if value < minimum or (integer and value != int(value)):
            kind = "an integer" if integer else "a number"
            raise self.error(name, f"expected {kind} >= {minimum:g}, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        """true or false, nothing else."""
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def child(self, name: str) -> Reader | None:
        """The mapping at `name`, or None when it is not given."""
        if not self.has(name):
            return None
        return Reader(self.data[name], self.source, self.key(name), self.env, self.warnings)

    def mapping(self, name: str) -> Reader:
        """The mapping at `name`; an empty one when it is not given."""
        return self.child(name) or Reader({}, self.source, self.key(name), self.env, self.warnings)

    def sequence(self, name: str, expected: str) -> list[Any]:
        """The list at `name` (empty when not given), or an error saying `expected` (e.g. "a list of targets")."""
        value = self.data.get(name) or []
        if not isinstance(value, list):
            raise self.error(name, f"expected {expected}")
        return value

    def readers(self, name: str, expected: str) -> list[Reader]:
        """The list of mappings at `name`, each as a Reader at `name[i]`."""
        return [
            Reader(item, self.source, f"{self.key(name)}[{i}]", self.env, self.warnings)
            for i, item in enumerate(self.sequence(name, expected))
        ]


def read_headers(r: Reader) -> tuple[dict[str, str], tuple[str, ...]]:
    """`headers:` with `${VAR}` expanded, and the names of those whose value came from the environment."""
    h = r.mapping("headers")
    headers: dict[str, str] = {}
    for name in h.data:
        value = h.string(name)
        if value is None:
            raise h.error(name, "expected a string value")
        headers[name] = value
    return headers, tuple(name for name in h.data if "${" in str(h.data[name]))


def has_authorization(headers: Mapping[str, str]) -> bool:
    """Whether `headers` set Authorization themselves."""
    return any(name.lower() == "authorization" for name in headers)


def _at_most_one(r: Reader, first: str, second: str) -> None:
    if r.has(first) and r.has(second):
        raise r.error(second, f"give at most one of {first} or {second}")


def _basic_auth(r: Reader | None) -> BasicAuth | None:
    # Prometheus' rules: the password may be empty, and so may the username.
    if r is None:
        return None
    r.only(("username", "password", "password_file"))
    _at_most_one(r, "password", "password_file")
    username, password, password_file = r.string("username", "") or "", r.string("password"), r.file("password_file")
    if not username and password is None and password_file is None:
        raise r.error("username", "expected a username, a password or a password_file")
    return BasicAuth(username, password, password_file)


def _authorization(r: Reader) -> Authorization | None:
    a = r.child("authorization")
    if a is None:  # bearer_token and bearer_token_file are json_exporter's older spelling of the same
        auth_type, credentials, credentials_file = "Bearer", r.string("bearer_token"), r.file("bearer_token_file")
    else:
        a.only(("type", "credentials", "credentials_file"))
        _at_most_one(a, "credentials", "credentials_file")
        auth_type = (a.string("type") or "").strip() or "Bearer"
        if auth_type.lower() == "basic":
            raise a.error("type", f"expected a type other than Basic, got {auth_type!r}: use basic_auth instead")
        credentials, credentials_file = a.string("credentials"), a.file("credentials_file")
    if credentials is None and credentials_file is None:
        return None
    return Authorization(auth_type, credentials, credentials_file)


def read_auth(
    r: Reader, keys: Sequence[str], *, authorization_header: bool
) -> tuple[BasicAuth | None, Authorization | None]:
    """The credentials among `keys` (basic_auth, authorization, bearer_token, bearer_token_file) of `r`.

    At most one may be given, and none next to an `Authorization` header: each would set that header, and which
    one wins is not something a reader of the file should have to know.
    """
    given = [k for k in keys if r.has(k)]
    if authorization_header:
        given.insert(0, "an Authorization header")
    if len(given) > 1:
        raise r.error(given[1], f"give only one of {given[1]} or {given[0]}: both set the Authorization header")
    return _basic_auth(r.child("basic_auth")), _authorization(r)


def _min_version(r: Reader) -> str | None:
    version = r.string("min_version")
    if version is not None and version not in TLS_VERSIONS:
        raise r.error("min_version", f"expected one of {', '.join(TLS_VERSIONS)}, got {version!r}")
    return version


def _check_loads(r: Reader, tls: TLSConfig) -> None:
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is not None and not os.path.isfile(path):
            raise r.error(name, f"file not found: {path}")
    try:  # a file that exists but does not load fails here, not at the first request
        load_tls(tls)
    except TLSFileError as exc:
        raise r.error(exc.key, str(exc)) from None


def read_tls(r: Reader | None, keys: Sequence[str] = TLS_KEYS) -> TLSConfig:
    """A `tls:` (target) or `tls_config:` (module) block; its files are loaded now, so one that does not load is a
    ConfigError naming its key. `keys` adds server_name and min_version for modules."""
    if r is None:
        return TLSConfig()
    r.only(keys)
    tls = TLSConfig(
        ca_file=r.file("ca_file"),
        cert_file=r.file("cert_file"),
        key_file=r.file("key_file"),
        insecure_skip_verify=r.boolean("insecure_skip_verify", False),
        server_name=r.string("server_name") or None,  # empty: the URL's host, as in Go's tls.Config
        min_version=_min_version(r),
    )
    if (tls.cert_file is None) != (tls.key_file is None):
        raise r.error("cert_file", "cert_file and key_file go together")
    _check_loads(r, tls)
    return tls
