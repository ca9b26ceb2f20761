"""The exporter's `--web-config-file`: the Prometheus exporter web configuration (TLS, basic auth, headers).

The format every Prometheus exporter reads (exporter-toolkit's web-configuration.md), parsed into a `WebConfig`
and a server `ssl.SSLContext`; a file this exporter cannot honour as written is a `ConfigError`, never a silent
weakening. Serving it (reload, authentication, headers) is webguard.py.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .tls import TLS_VERSIONS, TLSFileError
from .yamlreader import ConfigError, Reader

# Go's crypto/tls names of the TLS ≤ 1.2 suites it counts as secure (tls.CipherSuites()), as OpenSSL names them.
# TLS 1.3 suites are not configurable in Go either; they are accepted and change nothing.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# Go's curve names → OpenSSL's.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}

# Go's tls.ClientAuthType names. RequestClientCert and RequireAnyClientCert accept a certificate nobody verified:
# the format's own documentation calls them insecure, and they are refused here rather than honoured.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}  # fmt: skip
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")

# The only headers the format lets a file set, with the values it accepts (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}

_BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    """`tls_server_config`: the server's certificate, how clients are verified, versions and suites."""

    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = None  # inline PEM
    key: str | None = field(default=None, repr=False)  # inline PEM: a secret
    client_ca_file: str | None = None
    client_ca: str | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """The files it reads (watched for changes)."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate_limit`: a token bucket of `burst` requests refilled one every `interval` seconds."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    """A whole web configuration file; `WebConfig()` is none (plain HTTP, no authentication)."""

    tls: TLSServerConfig | None = None
    users: Mapping[str, str] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None
    http2: bool = True
    source: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        """The file itself and every file it names: a change to any is a reload."""
        return ((self.source,) if self.source else ()) + (self.tls.files if self.tls else ())


def parse_duration(text: str) -> float:
    """A Go duration ("500ms", "1m30s", "0") in seconds; ValueError otherwise."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected a duration such as 500ms, 1s or 1m30s, got {text!r}")
    return total


def _strings(r: Reader, name: str) -> tuple[str, ...]:
    items = r.sequence(name, "a list of strings")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ConfigError(r.source, f"{r.key(name)}[{i}]", f"expected a non-empty string, got {item!r}")
    return tuple(items)


def _text(r: Reader, name: str) -> str | None:
    # No ${VAR} expansion: the format has none, so a file means the same here as for any other exporter.
    value = r.string(name, expand=False)
    if value == "":
        raise r.error(name, "expected a non-empty value")
    return value


def _tls(r: Reader) -> TLSServerConfig:
    r.only(("cert_file", "key_file", "cert", "key", "client_ca_file", "client_ca", "client_auth_type",
            "client_allowed_sans", "min_version", "max_version", "cipher_suites", "prefer_server_cipher_suites",
            "curve_preferences"))  # fmt: skip
    for inline, path in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
        if r.has(inline) and r.has(path):
            raise r.error(inline, f"give {inline} or {path}, not both")
    has_cert, has_key = r.has("cert") or r.has("cert_file"), r.has("key") or r.has("key_file")
    if not has_cert or not has_key:
        missing = "key_file (or key)" if has_cert else "cert_file (or cert)"
        raise r.error(missing.split(" ")[0], f"missing: TLS needs a certificate and its key; add {missing}")
    auth = _text(r, "client_auth_type") or "NoClientCert"
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise r.error("client_auth_type", f"{auth} accepts client certificates nobody verified and is not supported; "
                      "use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file")  # fmt: skip
    if auth not in CLIENT_AUTH:
        raise r.error("client_auth_type", f"expected one of {', '.join(CLIENT_AUTH)}, got {auth!r}")
    has_ca = r.has("client_ca_file") or r.has("client_ca")
    if auth == "NoClientCert" and has_ca:
        raise r.error("client_auth_type", "client_ca_file is set but client_auth_type is NoClientCert, so no client "
                      "certificate would be asked for; set RequireAndVerifyClientCert")  # fmt: skip
    if auth != "NoClientCert" and not has_ca:
        raise r.error("client_ca_file", f"client_auth_type {auth} verifies client certificates: give client_ca_file")
    sans = _strings(r, "client_allowed_sans")
    if sans and auth != "RequireAndVerifyClientCert":
        raise r.error("client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert (a client without a "
                      "certificate has no SAN to match)")  # fmt: skip
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        version = _text(r, name) or default
        if version not in TLS_VERSIONS:
            raise r.error(name, f"expected one of {', '.join(TLS_VERSIONS)}, got {version!r}")
        versions[name] = version
    order = list(TLS_VERSIONS)
    if order.index(versions["min_version"]) > order.index(versions["max_version"]):
        raise r.error("max_version", f"{versions['max_version']} is below min_version {versions['min_version']}")
    suites = _strings(r, "cipher_suites")
    for i, suite in enumerate(suites):
        if suite not in CIPHER_SUITES and suite not in TLS13_SUITES:
            known = ", ".join(CIPHER_SUITES)
            raise ConfigError(r.source, f"{r.key('cipher_suites')}[{i}]", f"expected one of {known}, got {suite!r}")
    curves = _strings(r, "curve_preferences")
    for i, curve in enumerate(curves):
        if curve not in CURVES:
            raise ConfigError(r.source, f"{r.key('curve_preferences')}[{i}]",
                              f"expected one of {', '.join(CURVES)}, got {curve!r}")  # fmt: skip
    if len(curves) > 1:
        raise r.error("curve_preferences", "this exporter can pin one curve, not a preference list (Python's ssl "
                      f"module has no such setting); give one of {', '.join(curves)}")  # fmt: skip
    return TLSServerConfig(
        cert_file=_text(r, "cert_file"), key_file=_text(r, "key_file"), cert=_text(r, "cert"), key=_text(r, "key"),
        client_ca_file=_text(r, "client_ca_file"), client_ca=_text(r, "client_ca"), client_auth_type=auth,
        client_allowed_sans=sans, min_version=versions["min_version"], max_version=versions["max_version"],
        cipher_suites=suites, prefer_server_cipher_suites=r.boolean("prefer_server_cipher_suites", True),
        curve_preferences=curves,
    )  # fmt: skip


def _users(r: Reader) -> dict[str, str]:
    users: dict[str, str] = {}
    for name, value in r.data.items():
        # Never echo the value: it is a password hash (or, by mistake, a password).
        if not isinstance(value, str) or not _BCRYPT.match(value):
            raise r.error(name, "expected a bcrypt hash ($2y$10$… as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints); "
                          "the value is not shown")  # fmt: skip
        if not name or ":" in name:
            raise r.error(name, "a user name must be non-empty and without ':' (basic auth's separator)")
        users[name] = value
    return users


def _headers(r: Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name in r.data:
        canonical = next((h for h in HEADERS if h.lower() == name.lower()), None)
        if canonical is None:
            raise r.error(name, f"this header cannot be set; expected one of {', '.join(HEADERS)}")
        value = r.string(name, expand=False)
        if not value:
            continue  # blank: unset, as the format says
        allowed = HEADERS[canonical]
        if allowed is not None and value.lower() not in allowed:
            raise r.error(name, f"expected {' or '.join(allowed)}, got {value!r}")
        headers[canonical] = value
    return headers


def parse_web_config(data: Any, source: str) -> WebConfig:
    """The web configuration in `data` (the YAML document of `source`); `ConfigError` naming the key otherwise.

    Pure: files named in it are not opened (see `load_web_config`).
    """
    if data is None:
        return WebConfig(source=source)
    r = Reader(data, source, "", {})
    r.only(("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"))
    tls_reader = r.child("tls_server_config")
    tls = _tls(tls_reader) if tls_reader is not None else None
    http = r.mapping("http_server_config")
    http.only(("http2", "headers"))
    rate_limit = None
    rl = r.child("rate_limit")
    if rl is not None:
        rl.only(("interval", "burst"))
        try:
            interval = parse_duration(_text(rl, "interval") or "0")
        except ValueError as exc:
            raise rl.error("interval", str(exc)) from None
        burst_value = rl.number("burst", 0, minimum=0, integer=True)
        if burst_value > 2**31:
            raise rl.error("burst", f"expected an integer up to {2**31}, got {burst_value!r}")
        burst = int(burst_value)
        if interval > 0:
            if burst < 1:
                raise rl.error("burst", "expected an integer >= 1 when interval is set (0 would refuse everything)")
            rate_limit = RateLimit(interval, burst)
    return WebConfig(tls=tls, users=_users(r.mapping("basic_auth_users")), headers=_headers(http.mapping("headers")),
                     rate_limit=rate_limit, http2=http.boolean("http2", True), source=source)  # fmt: skip


def _inline_file(pem: str, opened: list[int]) -> str:
    # load_cert_chain reads files only: an inline PEM goes to an in-memory file (Linux), never to disk.
    if not hasattr(os, "memfd_create"):
        raise TLSFileError("cert", "inline cert and key need Linux (memfd); use cert_file and key_file")
    fd = os.memfd_create("web-config-pem", os.MFD_CLOEXEC)
    opened.append(fd)
    os.write(fd, pem.encode())
    return f"/proc/self/fd/{fd}"


def server_context(tls: TLSServerConfig) -> ssl.SSLContext:
    """The server context `tls` describes, or `TLSFileError` naming the key whose file or PEM does not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    suites = [CIPHER_SUITES[s] for s in tls.cipher_suites if s in CIPHER_SUITES]
    if suites:
        ctx.set_ciphers(":".join(suites))
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        ctx.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
    opened: list[int] = []
    try:
        cert = _inline_file(tls.cert, opened) if tls.cert is not None else tls.cert_file
        key = _inline_file(tls.key, opened) if tls.key is not None else tls.key_file
        assert cert is not None and key is not None

        def no_passphrase() -> bytes:
            raise TLSFileError("key_file", "the key is passphrase-protected; give an unencrypted key")

        try:
            ctx.load_cert_chain(cert, key, password=no_passphrase)
        except OSError as exc:
            cert_name = tls.cert_file if tls.cert is None else "(inline cert)"
            key_name = tls.key_file if tls.key is None else "(inline key)"
            what = f"{cert_name} with the key {key_name}"
            raise TLSFileError("cert_file", f"cannot load the server certificate {what}: {_reason(exc)}") from None
    finally:
        for fd in opened:
            os.close(fd)
    if tls.client_auth_type != "NoClientCert":
        try:
            if tls.client_ca is not None:
                ctx.load_verify_locations(cadata=tls.client_ca)
            else:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            where = "client_ca" if tls.client_ca is not None else f"client_ca_file {tls.client_ca_file}"
            raise TLSFileError("client_ca_file", f"cannot load CA certificates from {where}: {_reason(exc)}") from None
        ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return ctx


def _reason(exc: OSError) -> str:
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))


def load_web_config(path: str) -> tuple[WebConfig, ssl.SSLContext | None]:
    """Read, validate and load `path`: the config and its server context (None without TLS).

    Every problem — a missing file, a key it does not know, a certificate that does not load — is a `ConfigError`
    naming `path` and the key.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the web config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None
    config = parse_web_config(data, path)
    if config.tls is None:
        return config, None
    for name in ("cert_file", "key_file", "client_ca_file"):
        file = getattr(config.tls, name)
        if file is not None and not os.path.isfile(file):
            raise ConfigError(path, f"tls_server_config.{name}", f"file not found: {file}")
    try:
        return config, server_context(config.tls)
    except TLSFileError as exc:
        raise ConfigError(path, f"tls_server_config.{exc.key}", str(exc)) from None
