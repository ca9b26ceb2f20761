"""Serving the web configuration: the TLS context new connections get, basic auth, headers, rate limit, reloads.

Like every exporter-toolkit exporter, the file and the certificates it names are re-read when they change (checked
at most once a second, on new connections and requests), so cert-manager's rotations apply without a restart. A
file that stops validating keeps the running configuration and says so in the log and in
`horizon_exporter_web_config_last_reload_successful`. `/healthz` and `/readyz` need no password (kubelet probes
carry none) and are not rate-limited; they tell nothing but up/ready.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import bcrypt
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .webconfig import WebConfig, load_web_config
from .yamlreader import ConfigError

log = logging.getLogger("horizon_keda.web")

# Reachable without credentials: kubelet's probes cannot carry a password (it would sit in the pod spec).
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})
REFUSAL_REASONS = ("unauthenticated", "rate_limited", "client_certificate")
# Compared against when the user is unknown, so a wrong user name costs what a wrong password costs.
_DUMMY_HASH = b"$2b$10$G3XOsHu5iMUQBxagRqZmMuVBLsSVDGrwASi9Tt5r9NivdrQhZZ61G"
_CACHE_SIZE = 256
_RECHECK_SECONDS = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SwappingContext(ssl.SSLContext):
    """A server context whose every new connection is set up by the context in force at that moment.

    asyncio (and uvloop) call `wrap_bio` once per accepted connection; delegating it lets a reload replace
    certificates, client CAs, versions and suites for new connections while open ones keep theirs.
    """

    current: ssl.SSLContext
    on_connection: Callable[[], None] = staticmethod(lambda: None)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:  # type: ignore[override]
        self.on_connection()
        return self.current.wrap_bio(*args, **kwargs)


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    # inode too: a Kubernetes Secret volume swaps a ..data symlink, which can keep mtime and size.
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _check_password(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # over 72 bytes (bcrypt's limit, refused as Go's bcrypt refuses it) or a bad hash
        return False


def basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    """User and password of an `Authorization: Basic …` header, or None when it is absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class TokenBucket:
    """`burst` tokens, one more every `interval` seconds."""

    def __init__(self, interval: float, burst: int, clock: Callable[[], float]) -> None:
        self.interval, self.burst, self._clock = interval, burst, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class WebGuard(Collector):
    """The web configuration in force and everything that applies it to requests and connections."""

    def __init__(
        self,
        path: str | None,
        config: WebConfig | None = None,
        context: ssl.SSLContext | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`path` is the --web-config-file (None: plain HTTP, open); `config`/`context` its first load."""
        self.path = path
        if path is not None and config is None:
            config, context = load_web_config(path)
        self.config = config or WebConfig()
        self.ssl_context: SwappingContext | None = None
        if context is not None:
            self.ssl_context = SwappingContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_context.current = context
            self.ssl_context.on_connection = self.maybe_reload
        self._clock = clock
        self._stamp = _stamp(self.config.files)
        self._checked_at = clock()
        self._bucket = self._new_bucket()
        self._key = secrets.token_bytes(32)  # cache keys are HMACs: no password is kept in memory after a check
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._bcrypt = asyncio.Semaphore(2)
        self.last_ok = True
        self.last_success_at = time.time()
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)

    @property
    def protects(self) -> bool:
        """Whether requests need credentials."""
        return bool(self.config.users)

    def _new_bucket(self) -> TokenBucket | None:
        rl = self.config.rate_limit
        return TokenBucket(rl.interval, rl.burst, self._clock) if rl is not None else None

    def maybe_reload(self) -> None:
        """Reload when the file or a file it names changed; checked at most once a second."""
        if self.path is None:
            return
        now = self._clock()
        if now - self._checked_at < _RECHECK_SECONDS:
            return
        self._checked_at = now
        stamp = _stamp(self.config.files)
        if stamp != self._stamp:
            self._stamp = stamp
            self.reload()

    def reload(self) -> bool:
        """Re-read the file; apply it when valid, else keep the running configuration."""
        assert self.path is not None
        try:
            config, context = load_web_config(self.path)
            if (context is None) != (self.ssl_context is None):
                turn = "on" if context is not None else "off"
                raise ConfigError(self.path, "tls_server_config", f"turning TLS {turn} needs a restart")
        except ConfigError as exc:
            self.last_ok = False
            log.error("web config reload failed, keeping the running one: %s", exc)
            return False
        except Exception as exc:  # a bug must not fail the request or handshake that noticed the change
            self.last_ok = False
            log.error("web config reload failed unexpectedly, keeping the running one: %s", type(exc).__name__)
            return False
        self._stamp = _stamp(config.files)
        if self.ssl_context is not None and context is not None:
            self.ssl_context.current = context
        rate_changed = config.rate_limit != self.config.rate_limit
        self.config = config
        if rate_changed:
            self._bucket = self._new_bucket()
        self.last_ok = True
        self.last_success_at = time.time()
        log.info("web config reloaded: %s", describe(config))
        return True

    async def authenticate(self, header: str | None) -> bool:
        """Whether `header` carries the password of a configured user (bcrypt, in a thread; successes cached)."""
        creds = basic_credentials(header)
        if creds is None:  # no or malformed credentials: nothing to time, so no bcrypt queue to clog
            return False
        user, password = creds
        hashed = self.config.users.get(user)
        key = b""
        if hashed is not None:
            material = user.encode() + b"\0" + hashed.encode() + b"\0" + password
            key = hmac.new(self._key, material, hashlib.sha256).digest()
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        async with self._bcrypt:  # at most two hashes at once: guessing costs the guesser, not the event loop
            ok = await asyncio.get_running_loop().run_in_executor(
                None, _check_password, password, hashed.encode() if hashed is not None else _DUMMY_HASH
            )
        if ok and hashed is not None and self.config.users.get(user) == hashed:
            self._cache[key] = None
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return True
        return False

    def _refuse(self, reason: str, response: web.Response) -> web.Response:
        self.refused[reason] += 1
        return response

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Rate limit, client-certificate SANs and basic auth, in that order, before any handler runs."""
        self.maybe_reload()
        config = self.config
        if config.tls is not None and config.tls.client_allowed_sans:
            peer = request.transport.get_extra_info("peercert") if request.transport is not None else None
            sans = {value for _, value in (peer or {}).get("subjectAltName", ())}
            if not sans & set(config.tls.client_allowed_sans):
                return self._refuse("client_certificate", web.Response(
                    status=403, text="client certificate not allowed\n", headers={"Connection": "close"}))  # fmt: skip
        if request.path in UNAUTHENTICATED_PATHS:
            return await handler(request)
        if self._bucket is not None and not self._bucket.take():
            return self._refuse("rate_limited", web.Response(status=429, text="Too Many Requests\n"))
        if config.users and not await self.authenticate(request.headers.get("Authorization")):
            challenge = {"WWW-Authenticate": 'Basic realm="horizon-exporter"'}
            return self._refuse("unauthenticated", web.Response(status=401, text="Unauthorized\n", headers=challenge))
        return await handler(request)

    async def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """`http_server_config.headers` on every response, errors included."""
        for name, value in self.config.headers.items():
            response.headers[name] = value

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily(
            "horizon_exporter_web_config_last_reload_successful",
            "1 when the web config file (and the certificates it names) last loaded; 0 keeps the running one.",
        )
        ok.add_metric([], 1.0 if self.last_ok else 0.0)
        ts = GaugeMetricFamily(
            "horizon_exporter_web_config_last_reload_success_timestamp_seconds",
            "Unix time of the latest good load of the web config file.",
        )
        ts.add_metric([], self.last_success_at)
        refused = CounterMetricFamily(
            "horizon_exporter_http_requests_refused",
            "Requests refused before any handler ran, by reason: unauthenticated (basic auth), rate_limited, "
            "client_certificate (a SAN not in client_allowed_sans).",
            labels=["reason"],
        )
        for reason, count in self.refused.items():
            refused.add_metric([reason], count)
        if self.path is not None:
            yield ok
            yield ts
        yield refused


def describe(config: WebConfig) -> str:
    """One line saying what the web config turns on (no secret in it)."""
    parts = []
    if config.tls is not None:
        parts.append(f"TLS {config.tls.min_version}–{config.tls.max_version}, client certificates "
                     f"{config.tls.client_auth_type}")  # fmt: skip
    else:
        parts.append("plain HTTP")
    parts.append(f"basic auth for {len(config.users)} user(s)" if config.users else "no authentication")
    if config.headers:
        parts.append(f"headers {', '.join(config.headers)}")
    if config.rate_limit is not None:
        parts.append(f"rate limit {config.rate_limit.burst} per {config.rate_limit.interval:g}s refill")
    return "; ".join(parts)
