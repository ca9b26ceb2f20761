"""Load and validate the exporter's configuration (YAML file and/or flags) into frozen dataclasses.

Everything is checked here, once, before anything serves: a problem raises `ConfigError` naming the file, the
key and what was expected. Nothing deeper re-checks or guesses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from .http import BasicAuth
from .jsonexp.modules import Module, parse_modules
from .mapping import Fixed, Pattern, Rule
from .sharding import Sharding
from .tls import TLSConfig
from .yamlreader import ConfigError, Reader, has_authorization, read_auth, read_headers, read_tls

DEFAULT_LISTEN = "127.0.0.1:9108"
# A shard keeps polling a target it gave away this long (unless --handoff-grace says otherwise): mounted ConfigMaps
# reach pods up to a kubelet sync period (1 min by default) plus its cache delay apart, so after a reshard by
# ConfigMap the new owner may start polling that much later than the old one stopped owning (README "Sharding").
HANDOFF_GRACE_MIN = 120.0
HANDOFF_GRACE_POLLS = 3


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
    stats_interval: float = 10.0
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
    shard: int | None = None  # this pod's ordinal (--shard, or its StatefulSet name or pod-index label)
    total_shards: int = 1  # --total-shards, or the file's sharding.total_shards
    handoff_grace: float | None = None  # None: max(HANDOFF_GRACE_MIN, HANDOFF_GRACE_POLLS polls)

    @property
    def host_port(self) -> tuple[str, int]:
        """`listen` split into host and port (validated at load)."""
        return split_listen(self.listen, self.source)

    @property
    def sharding(self) -> Sharding:
        """This exporter's shard and the number of shards (sharding.py)."""
        return Sharding(self.shard, self.total_shards)

    @property
    def handoff_grace_seconds(self) -> float:
        """How long a target this shard gave away in a reshard is still polled (and kept in the snapshot)."""
        if self.handoff_grace is not None:
            return self.handoff_grace
        return max(HANDOFF_GRACE_MIN, HANDOFF_GRACE_POLLS * self.poll_interval)


def redact_url(url: str) -> str:
    """`url` fit for a message or a log line: userinfo, query values and fragment shown as `***`.

    `https://user:pw@host/path?token=abc` becomes `https://***@host/path?token=***`. Works on strings that do not
    parse as URLs too, since those are exactly the ones an error message echoes.
    """
    if "@" in url:
        # Everything up to the last "@" may be userinfo: a password may hold "/", "?" or "#", which end a URL's
        # authority, so no parse of the string can be trusted to find where it stops. Over-redacting is safe.
        scheme, sep, _ = url.partition("://")
        kept = url.rsplit("@", 1)[1]
        prefix = scheme + "://" if sep and "@" not in scheme and "/" not in scheme else ""
        return prefix + "***@" + redact_url(kept)
    rest, hash_, _ = url.partition("#")
    rest, question, query = rest.partition("?")
    out = rest
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


_TARGET_KEYS = (
    "name", "microservice", "url", "microservices_from", "pattern", "headers",
    "bearer_token_file", "basic_auth", "tls", "timeout",
)  # fmt: skip
_TOP_KEYS = (
    "listen", "poll_interval", "stats_interval", "timeout", "stale_after", "backoff_max", "max_concurrency",
    "max_body_bytes", "probe_concurrency", "probe_timeout_max", "targets", "modules", "sharding",
)  # fmt: skip
_SHARDING_KEYS = ("total_shards", "handoff_grace")


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


def _url(r: Reader) -> str:
    url = r.string("url")
    if not url:
        raise r.error("url", "required: Horizon's base URL, e.g. http://orders/horizon")
    return _check_url(url, r.source, r.key("url"))


def _pattern(r: Reader, source_kind: str) -> Pattern:
    if source_kind not in ("supervisor", "queue"):
        raise r.error("microservices_from", f"expected supervisor or queue, got {source_kind!r}")
    pattern = r.string("pattern")
    if not pattern:
        raise r.error("pattern", "required with microservices_from")
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise r.error("pattern", f"invalid regular expression: {exc}") from None
    if "microservice" not in regex.groupindex:
        raise r.error("pattern", "expected a named group (?P<microservice>...)")
    return Pattern(source_kind, regex)


def _rule(r: Reader) -> Rule:
    """Topology (a), `microservice:`, or (b), `microservices_from:` + `pattern:`; exactly one of them."""
    microservice, source_kind = r.string("microservice"), r.string("microservices_from")
    if microservice is None:
        if source_kind is None:
            raise r.error(
                "microservice", "each target needs microservice (one Horizon per microservice) "
                "or microservices_from + pattern (one Horizon for many)",
            )  # fmt: skip
        return _pattern(r, source_kind)
    if source_kind is not None or r.has("pattern"):
        raise r.error("microservice", "give either microservice or microservices_from/pattern, not both")
    if not microservice:
        raise r.error("microservice", "expected a non-empty name")
    return Fixed(microservice)


def _target(r: Reader, default_timeout: float) -> TargetConfig:
    r.only(_TARGET_KEYS)
    url = _url(r)
    rule = _rule(r)
    headers, _ = read_headers(r)
    basic, bearer = read_auth(r, ("basic_auth", "bearer_token_file"), authorization_header=has_authorization(headers))
    default_name = rule.microservice if isinstance(rule, Fixed) else urlsplit(url).netloc + urlsplit(url).path
    return TargetConfig(
        name=r.string("name") or default_name,
        url=url,
        rule=rule,
        headers=headers,
        bearer_token_file=bearer.credentials_file if bearer else None,
        basic_auth=basic,
        tls=read_tls(r.child("tls")),
        timeout=r.number("timeout", default_timeout, minimum=0.01),
    )


def parse_config(
    data: Any, source: str, env: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> Config:
    """Validate decoded YAML into a `Config`.

    `timeout` (from `--timeout` or its variable) replaces the file's top-level `timeout`, so it is the default of
    every target without a `timeout:` of its own; a target's own `timeout:` is kept.
    """
    r = Reader({} if data is None else data, source, "", os.environ if env is None else env)
    r.only(_TOP_KEYS)
    listen = r.string("listen", DEFAULT_LISTEN) or DEFAULT_LISTEN
    split_listen(listen, source)
    file_timeout = r.number("timeout", 5.0, minimum=0.01)  # checked even when overridden
    timeout = file_timeout if timeout is None else timeout
    targets = [_target(t, timeout) for t in r.readers("targets", "a list of targets")]
    modules = parse_modules(r.child("modules"))
    sharding = r.mapping("sharding")
    sharding.only(_SHARDING_KEYS)
    grace = sharding.number("handoff_grace", 0.0, minimum=0) if sharding.has("handoff_grace") else None
    return Config(
        modules=modules,
        warnings=tuple(r.warnings),
        targets=tuple(targets),
        listen=listen,
        poll_interval=r.number("poll_interval", 1.0, minimum=0.05),
        stats_interval=r.number("stats_interval", 10.0, minimum=0),
        timeout=timeout,
        stale_after=r.number("stale_after", 60.0, minimum=0),
        backoff_max=r.number("backoff_max", 30.0, minimum=0.05),
        max_concurrency=int(r.number("max_concurrency", 32, minimum=1, integer=True)),
        max_body_bytes=int(r.number("max_body_bytes", 4 * 1024 * 1024, minimum=1024, integer=True)),
        probe_concurrency=int(r.number("probe_concurrency", 16, minimum=1, integer=True)),
        probe_timeout_max=r.number("probe_timeout_max", 60.0, minimum=0.1),
        source=source,
        total_shards=int(sharding.number("total_shards", 1, minimum=1, integer=True)),
        handoff_grace=grace,
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
