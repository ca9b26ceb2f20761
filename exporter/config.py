"""Load and validate the exporter's configuration (YAML file and/or flags) into frozen dataclasses.

Everything is checked here, once, before anything serves: a problem raises `ConfigError` naming the file, the
key and what was expected. Nothing deeper re-checks or guesses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from .http import BasicAuth
from .mapping import Fixed, Pattern, Rule
from .tls import TLSConfig, TLSFileError, load_tls

if TYPE_CHECKING:
    from .jsonexp.modules import Module

DEFAULT_LISTEN = "127.0.0.1:9108"


class ConfigError(ValueError):
    """A configuration problem: `source` is the file (or `--target`), `key` the dotted key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source, self.key = source, key
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """One Horizon to poll. `url` is Horizon's base (`…/horizon`); `rule` says which microservices it holds."""

    name: str
    url: str
    rule: Rule
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None
    tls: TLSConfig = field(default_factory=TLSConfig)
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole exporter configuration."""

    targets: tuple[TargetConfig, ...]
    listen: str = DEFAULT_LISTEN
    poll_interval: float = 1.0
    timeout: float = 5.0
    stale_after: float = 60.0
    backoff_max: float = 30.0
    max_concurrency: int = 32
    max_body_bytes: int = 4 * 1024 * 1024
    probe_concurrency: int = 16
    probe_timeout_max: float = 60.0
    source: str = "flags"
    modules: Mapping[str, Module] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def host_port(self) -> tuple[str, int]:
        """`listen` split into host and port (validated at load)."""
        return split_listen(self.listen, self.source)


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


_USERINFO = re.compile(r"^(?:([^:/?#]+:)//)?[^/?#]*@")


def redact_url(url: str) -> str:
    """`url` fit for a message or a log line: userinfo, query values and fragment shown as `***`.

    `https://user:pw@host/path?token=abc` becomes `https://***@host/path?token=***`. Works on strings that do not
    parse as URLs too, since those are exactly the ones an error message echoes.
    """
    rest, hash_, _ = url.partition("#")
    rest, question, query = rest.partition("?")
    out = _USERINFO.sub(lambda m: (m.group(1) + "//" if m.group(1) else "") + "***@", rest)
    if question:
        pairs = (p.partition("=") for p in query.split("&"))
        out += "?" + "&".join(f"{k}=***" if eq else ("***" if k else "") for k, eq, _ in pairs)
    return out + ("#***" if hash_ else "")


def split_listen(listen: str, source: str = "--listen") -> tuple[str, int]:
    """Split `host:port`, `[v6]:port` or `:port` (all interfaces)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(source, "listen", f"expected host:port, got {listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Reader:
    """Typed access to one YAML mapping, rejecting unknown keys; errors carry the dotted key path."""

    def __init__(self, data: Any, source: str, path: str, env: Mapping[str, str]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)", f"expected a mapping, got {type(data).__name__}")
        self.data, self.source, self.path, self.env = data, source, path, env

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def only(self, allowed: Sequence[str]) -> None:
        for name in self.data:
            if name not in allowed:
                raise ConfigError(
                    self.source, self.key(str(name)), f"unknown key; expected one of: {', '.join(allowed)}"
                )

    def string(self, name: str, default: str | None = None) -> str | None:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(self.source, self.key(name), f"expected a string, got {type(value).__name__}")
        return interpolate(str(value), self.source, self.key(name), self.env)

    def number(self, name: str, default: float, *, minimum: float, integer: bool = False) -> float:
        value = self.data.get(name, default)
        if isinstance(value, str):
            value = interpolate(value, self.source, self.key(name), self.env)
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(self.source, self.key(name), f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.source, self.key(name), f"expected a number, got {value!r}")
        if value < minimum or (integer and value != int(value)):
            kind = "an integer" if integer else "a number"
            raise ConfigError(self.source, self.key(name), f"expected {kind} >= {minimum:g}, got {value!r}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.source, self.key(name), f"expected true or false, got {value!r}")
        return value

    def child(self, name: str) -> _Reader | None:
        if self.data.get(name) is None:
            return None
        return _Reader(self.data[name], self.source, self.key(name), self.env)


_TARGET_KEYS = (
    "name", "microservice", "url", "microservices_from", "pattern", "headers",
    "bearer_token_file", "basic_auth", "tls", "timeout",
)  # fmt: skip
_TOP_KEYS = (
    "listen", "poll_interval", "timeout", "stale_after", "backoff_max", "max_concurrency",
    "max_body_bytes", "probe_concurrency", "probe_timeout_max", "targets", "modules",
)  # fmt: skip


def _check_url(url: str, source: str, key: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigError(source, key, f"expected an http(s) URL, got {redact_url(url)!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(source, key, f"expected an http(s) URL of Horizon's base path, got {redact_url(url)!r}")
    if parts.username or parts.password:
        raise ConfigError(source, key, "credentials in the URL would leak into logs; use basic_auth instead")
    if parts.query or parts.fragment:
        raise ConfigError(source, key, f"expected no query or fragment, got {redact_url(url)!r}")
    return url.rstrip("/")


def _target(r: _Reader, default_timeout: float) -> TargetConfig:
    r.only(_TARGET_KEYS)
    url = r.string("url")
    if not url:
        raise ConfigError(r.source, r.key("url"), "required: Horizon's base URL, e.g. http://orders/horizon")
    url = _check_url(url, r.source, r.key("url"))
    microservice = r.string("microservice")
    source_kind = r.string("microservices_from")
    pattern = r.string("pattern")
    rule: Rule
    if microservice is not None:
        if source_kind is not None or pattern is not None:
            raise ConfigError(
                r.source, r.key("microservice"), "give either microservice or microservices_from/pattern, not both"
            )
        if not microservice:
            raise ConfigError(r.source, r.key("microservice"), "expected a non-empty name")
        rule = Fixed(microservice)
    elif source_kind is not None:
        if source_kind not in ("supervisor", "queue"):
            raise ConfigError(
                r.source, r.key("microservices_from"), f"expected supervisor or queue, got {source_kind!r}"
            )
        if not pattern:
            raise ConfigError(r.source, r.key("pattern"), "required with microservices_from")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(r.source, r.key("pattern"), f"invalid regular expression: {exc}") from None
        if "microservice" not in regex.groupindex:
            raise ConfigError(r.source, r.key("pattern"), "expected a named group (?P<microservice>...)")
        rule = Pattern(source_kind, regex)
    else:
        raise ConfigError(
            r.source, r.key("microservice"), "each target needs microservice (one Horizon per microservice) "
            "or microservices_from + pattern (one Horizon for many)",
        )  # fmt: skip
    name = r.string("name") or microservice or (urlsplit(url).netloc + urlsplit(url).path)
    headers: dict[str, str] = {}
    h = r.child("headers")
    if h is not None:
        for hname in h.data:
            value = h.string(str(hname))
            if value is None:
                raise ConfigError(r.source, h.key(str(hname)), "expected a string value")
            headers[str(hname)] = value
    basic = None
    b = r.child("basic_auth")
    if b is not None:
        b.only(("username", "password", "password_file"))
        username = b.string("username")
        if not username:
            raise ConfigError(r.source, b.key("username"), "required in basic_auth")
        password, password_file = b.string("password"), b.string("password_file")
        if (password is None) == (password_file is None):
            raise ConfigError(r.source, b.key("password"), "give exactly one of password or password_file")
        basic = BasicAuth(username, password, password_file)
    bearer = r.string("bearer_token_file")
    auth_header = any(k.lower() == "authorization" for k in headers)
    if sum((basic is not None, bearer is not None, auth_header)) > 1:
        raise ConfigError(
            r.source, r.key("bearer_token_file"),
            "give only one of bearer_token_file, basic_auth or an Authorization header",
        )  # fmt: skip
    tls = TLSConfig()
    t = r.child("tls")
    if t is not None:
        t.only(("ca_file", "cert_file", "key_file", "insecure_skip_verify"))
        tls = TLSConfig(
            ca_file=t.string("ca_file"),
            cert_file=t.string("cert_file"),
            key_file=t.string("key_file"),
            insecure_skip_verify=t.boolean("insecure_skip_verify", False),
        )
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ConfigError(r.source, t.key("cert_file"), "cert_file and key_file go together")
    for key, path in (("tls.ca_file", tls.ca_file), ("tls.cert_file", tls.cert_file),
                      ("tls.key_file", tls.key_file)):  # fmt: skip
        if path is not None and not os.path.isfile(path):
            raise ConfigError(r.source, r.key(key), f"file not found: {path}")
    if t is not None:
        try:  # a file that exists but does not load fails here, not silently at the first poll
            load_tls(tls)
        except TLSFileError as exc:
            raise ConfigError(r.source, r.key(f"tls.{exc.key}"), str(exc)) from None
    return TargetConfig(
        name=name,
        url=url,
        rule=rule,
        headers=headers,
        bearer_token_file=bearer,
        basic_auth=basic,
        tls=tls,
        timeout=r.number("timeout", default_timeout, minimum=0.01),
    )


def parse_config(
    data: Any, source: str, env: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> Config:
    """Validate decoded YAML into a `Config`.

    `timeout` (from `--timeout` or its variable) replaces the file's top-level `timeout`, so it is the default of
    every target without a `timeout:` of its own; a target's own `timeout:` is kept.
    """
    r = _Reader({} if data is None else data, source, "", os.environ if env is None else env)
    r.only(_TOP_KEYS)
    listen = r.string("listen", DEFAULT_LISTEN) or DEFAULT_LISTEN
    split_listen(listen, source)
    file_timeout = r.number("timeout", 5.0, minimum=0.01)  # checked even when overridden
    timeout = file_timeout if timeout is None else timeout
    raw_targets = r.data.get("targets") or []
    if not isinstance(raw_targets, list):
        raise ConfigError(source, "targets", "expected a list of targets")
    targets = [_target(_Reader(t, source, f"targets[{i}]", r.env), timeout) for i, t in enumerate(raw_targets)]
    from .jsonexp.modules import parse_modules  # late: jsonexp builds on this module

    warnings: list[str] = []
    modules = parse_modules(r.data.get("modules"), source, r.env, warnings)
    return Config(
        modules=modules,
        warnings=tuple(warnings),
        targets=tuple(targets),
        listen=listen,
        poll_interval=r.number("poll_interval", 1.0, minimum=0.05),
        timeout=timeout,
        stale_after=r.number("stale_after", 60.0, minimum=0),
        backoff_max=r.number("backoff_max", 30.0, minimum=0.05),
        max_concurrency=int(r.number("max_concurrency", 32, minimum=1, integer=True)),
        max_body_bytes=int(r.number("max_body_bytes", 4 * 1024 * 1024, minimum=1024, integer=True)),
        probe_concurrency=int(r.number("probe_concurrency", 16, minimum=1, integer=True)),
        probe_timeout_max=r.number("probe_timeout_max", 60.0, minimum=0.1),
        source=source,
    )


def load_config(path: str, env: Mapping[str, str] | None = None, *, timeout: float | None = None) -> Config:
    """Read and validate a YAML config file (`timeout`: see `parse_config`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {exc}") from None
    return parse_config(data, path, env, timeout=timeout)


def target_from_flag(value: str, timeout: float) -> TargetConfig:
    """Parse `--target NAME=URL` (topology (a): one Horizon per microservice)."""
    name, sep, url = value.partition("=")
    # "://" in the name: a URL without MICROSERVICE=, split at its query's "=" (whose value may be a token).
    if not sep or not name or not url or "://" in name:
        shown = redact_url(value)
        raise ConfigError("--target", redact_url(name) or shown, f"expected MICROSERVICE=URL, got {shown!r}")
    url = _check_url(url, "--target", redact_url(name))
    return TargetConfig(name=name, url=url, rule=Fixed(name), timeout=timeout)


def validate(config: Config) -> Config:
    """Cross-target checks: unique names, one owner per fixed microservice, at least one target."""
    if not config.targets and not config.modules:
        raise ConfigError(
            config.source, "targets", "no targets and no modules: give --target NAME=URL or a config file"
        )
    names: set[str] = set()
    fixed: set[str] = set()
    for i, t in enumerate(config.targets):
        if t.name in names:
            raise ConfigError(config.source, f"targets[{i}].name", f"duplicate target name {t.name!r}")
        names.add(t.name)
        if isinstance(t.rule, Fixed):
            if t.rule.microservice in fixed:
                raise ConfigError(
                    config.source, f"targets[{i}].microservice", f"microservice {t.rule.microservice!r} twice"
                )
            fixed.add(t.rule.microservice)
    return config
