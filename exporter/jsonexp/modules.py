"""Load json_exporter `modules:` configs into frozen dataclasses, strictly, with a few safe extensions.

Unchanged json_exporter configs load as they are. Differences: unknown keys are errors naming the key; case variants
of metric keys (`epochTimestamp`, `valueType` — json_exporter silently drops them) are applied with a warning; a
module that carries credentials must list `allowed_targets`, so `/probe` cannot send them to any URL a caller names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from ..config import ConfigError, interpolate
from ..http import Authorization, BasicAuth
from ..tls import TLSConfig, TLSFileError, load_tls
from .path import PathError, Template, compile_template
from .targets import Rule, TargetError, allowed, parse_rule

METRIC_KEYS = ("name", "help", "type", "valuetype", "path", "labels", "values", "epochtimestamp",
               "allow_missing_key", "value_map")  # fmt: skip
MODULE_KEYS = ("headers", "metrics", "http_client_config", "body", "valid_status_codes", "allowed_targets")
HTTP_KEYS = ("basic_auth", "authorization", "bearer_token", "bearer_token_file", "tls_config", "follow_redirects",
             "enable_http2")  # fmt: skip
UNSUPPORTED_HTTP_KEYS = ("oauth2", "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
                         "http_headers", "enable_http2_")  # fmt: skip
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
# A header whose name says it carries a secret (X-Api-Key, X-Monitoring-Token, X-Auth-...), or whose value comes
# from the environment (`${TOKEN}`), counts as a credential too: a module sending it must list allowed_targets.
_SECRET_HEADER_NAME = re.compile(r"auth|token|secret|key|password|passwd|session|cookie|signature|credential", re.I)
TLS_VERSIONS = ("TLS10", "TLS11", "TLS12", "TLS13")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_TEMPLATE_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_FIRST = re.compile(r"^\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*\|\s*first\s*$")


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric definition of a module."""

    name: str
    help: str
    type: str  # value | object
    valuetype: str  # gauge | counter | untyped
    path: Template
    labels: tuple[tuple[str, Template], ...] = ()
    values: tuple[tuple[str, Template], ...] = ()
    epochtimestamp: Template | None = None
    allow_missing_key: bool = False
    value_map: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class HttpClient:
    """The subset of prometheus/common's HTTPClientConfig that modules use."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    min_version: str | None = None  # TLS10 … TLS13
    insecure_skip_verify: bool = False
    follow_redirects: bool = False


def tls_config(h: HttpClient) -> TLSConfig:
    """The module's `tls_config` files as the exporter's TLS settings (server_name and min_version apart)."""
    return TLSConfig(ca_file=h.ca_file, cert_file=h.cert_file, key_file=h.key_file,
                     insecure_skip_verify=h.insecure_skip_verify)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Module:
    """A json_exporter module: how to fetch a target and which metrics to read from it."""

    name: str
    metrics: tuple[MetricDef, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    http: HttpClient = HttpClient()
    valid_status_codes: tuple[int, ...] = ()  # empty: any 2xx
    body: str | None = None
    body_params: tuple[tuple[str, str], ...] = ()  # (placeholder, query parameter) for templatize
    allowed_targets: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()  # allowed_targets compiled
    secret_headers: tuple[str, ...] = ()  # header names that count as credentials

    @property
    def has_credentials(self) -> bool:
        h = self.http
        return bool(h.basic_auth is not None or h.authorization is not None or h.cert_file or self.secret_headers)

    def target_allowed(self, url: URL) -> bool:
        """No list: any target (only for modules without credentials). Else exact, `prefix*` or `~regex`,
        compared on the normalised URL (see targets.py)."""
        return allowed(self.rules, url)


class _Ctx:
    def __init__(self, source: str, env: Mapping[str, str], warnings: list[str]) -> None:
        self.source, self.env, self.warnings = source, env, warnings

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def mapping(self, value: Any, key: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def only(self, data: dict[str, Any], allowed: tuple[str, ...], key: str, *, case_variants: bool = False) -> dict:
        out: dict[str, Any] = {}
        for name, value in data.items():
            name = str(name)
            if name in allowed:
                out[name] = value
                continue
            lowered = name.lower()
            if case_variants and lowered in allowed:
                self.warnings.append(
                    f"{self.source}: {key}.{name}: read as {lowered!r} (json_exporter ignores this spelling)"
                )
                out[lowered] = value
                continue
            hint = " (not supported by horizon-keda)" if name in UNSUPPORTED_HTTP_KEYS else ""
            raise self.fail(f"{key}.{name}", f"unknown key{hint}; expected one of: {', '.join(allowed)}")
        return out

    def string(self, value: Any, key: str, *, interpolate_env: bool = False) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        text = str(value)
        return interpolate(text, self.source, key, self.env) if interpolate_env else text

    def template(self, value: Any, key: str) -> Template:
        try:
            return compile_template(self.string(value, key))
        except PathError as exc:
            raise self.fail(key, str(exc)) from None

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value


def _metric(ctx: _Ctx, raw: Any, key: str) -> MetricDef:
    data = ctx.only(ctx.mapping(raw, key), METRIC_KEYS, key, case_variants=True)
    name = ctx.string(data.get("name", ""), f"{key}.name")
    if not _METRIC.match(name):
        raise ctx.fail(f"{key}.name", f"expected a Prometheus metric name, got {name!r}")
    mtype = data.get("type", "value") or "value"
    if mtype not in ("value", "object"):
        raise ctx.fail(f"{key}.type", f"expected value or object, got {mtype!r}")
    valuetype = data.get("valuetype", "untyped") or "untyped"
    if valuetype not in ("gauge", "counter", "untyped"):
        raise ctx.fail(f"{key}.valuetype", f"expected gauge, counter or untyped, got {valuetype!r}")
    if "path" not in data:
        raise ctx.fail(f"{key}.path", "required: where the value (or, for type object, the objects) are")
    labels = []
    for lname, ltext in ctx.mapping(data.get("labels"), f"{key}.labels").items():
        if not _LABEL.match(str(lname)) or str(lname).startswith("__"):
            raise ctx.fail(f"{key}.labels.{lname}", "expected a Prometheus label name")
        labels.append((str(lname), ctx.template(ltext, f"{key}.labels.{lname}")))
    values = []
    raw_values = ctx.mapping(data.get("values"), f"{key}.values")
    if mtype == "object" and not raw_values:
        raise ctx.fail(f"{key}.values", "required for type object: suffix → value template")
    if mtype == "value" and raw_values:
        raise ctx.fail(f"{key}.values", "only for type object")
    for suffix, vtext in raw_values.items():
        if not _LABEL.match(str(suffix)):
            raise ctx.fail(f"{key}.values.{suffix}", "expected a metric name suffix")
        values.append((str(suffix), ctx.template(vtext, f"{key}.values.{suffix}")))
    value_map = None
    if data.get("value_map") is not None:
        value_map = {}
        for k, v in ctx.mapping(data["value_map"], f"{key}.value_map").items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ctx.fail(f"{key}.value_map.{k}", f"expected a number, got {v!r}")
            value_map["true" if k is True else "false" if k is False else str(k)] = float(v)
    ts = data.get("epochtimestamp")
    return MetricDef(
        name=name,
        help=ctx.string(data.get("help") or name, f"{key}.help"),
        type=mtype,
        valuetype=valuetype,
        path=ctx.template(data["path"], f"{key}.path"),
        labels=tuple(labels),
        values=tuple(values),
        epochtimestamp=None if ts is None else ctx.template(ts, f"{key}.epochtimestamp"),
        allow_missing_key=ctx.boolean(data.get("allow_missing_key", False), f"{key}.allow_missing_key"),
        value_map=value_map,
    )


def _http(ctx: _Ctx, raw: Any, key: str) -> HttpClient:
    if raw is None:
        return HttpClient()  # json_exporter: without the block, redirects are not followed
    data = ctx.only(ctx.mapping(raw, key), HTTP_KEYS, key)
    out: dict[str, Any] = {
        "follow_redirects": ctx.boolean(data.get("follow_redirects", True), f"{key}.follow_redirects")
    }
    auth_kinds = [k for k in ("basic_auth", "authorization", "bearer_token", "bearer_token_file") if k in data]
    if len(auth_kinds) > 1:
        raise ctx.fail(
            f"{key}.{auth_kinds[1]}", f"at most one of basic_auth, authorization, bearer_token; also {auth_kinds[0]}"
        )
    if "basic_auth" in data:
        b = ctx.only(ctx.mapping(data["basic_auth"], f"{key}.basic_auth"), ("username", "password", "password_file"),
                     f"{key}.basic_auth")  # fmt: skip
        out["basic_auth"] = BasicAuth(
            ctx.string(b.get("username", ""), f"{key}.basic_auth.username", interpolate_env=True),
            ctx.string(b["password"], f"{key}.basic_auth.password", interpolate_env=True) if "password" in b else None,
            ctx.string(b["password_file"], f"{key}.basic_auth.password_file") if "password_file" in b else None,
        )
    auth_type, credentials, credentials_file = "Bearer", None, None
    if "authorization" in data:
        a = ctx.only(ctx.mapping(data["authorization"], f"{key}.authorization"),
                     ("type", "credentials", "credentials_file"), f"{key}.authorization")  # fmt: skip
        auth_type = ctx.string(a.get("type", "Bearer"), f"{key}.authorization.type")
        if auth_type.lower() == "basic":
            raise ctx.fail(f"{key}.authorization.type", "use basic_auth for Basic credentials")
        if "credentials" in a:
            credentials = ctx.string(a["credentials"], f"{key}.authorization.credentials", interpolate_env=True)
        if "credentials_file" in a:
            credentials_file = ctx.string(a["credentials_file"], f"{key}.authorization.credentials_file")
    if "bearer_token" in data:
        credentials = ctx.string(data["bearer_token"], f"{key}.bearer_token", interpolate_env=True)
    if "bearer_token_file" in data:
        credentials_file = ctx.string(data["bearer_token_file"], f"{key}.bearer_token_file")
    if credentials is not None or credentials_file:
        out["authorization"] = Authorization(auth_type, credentials, credentials_file)
    if "tls_config" in data:
        t = ctx.only(ctx.mapping(data["tls_config"], f"{key}.tls_config"),
                     ("ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify", "min_version"),
                     f"{key}.tls_config")  # fmt: skip
        for k in ("ca_file", "cert_file", "key_file", "server_name"):
            if k in t:
                out[k] = ctx.string(t[k], f"{key}.tls_config.{k}")
        if "min_version" in t:
            version = ctx.string(t["min_version"], f"{key}.tls_config.min_version")
            if version not in TLS_VERSIONS:
                raise ctx.fail(f"{key}.tls_config.min_version", f"expected one of {', '.join(TLS_VERSIONS)}, "
                               f"got {version!r}")  # fmt: skip
            out["min_version"] = version
        out["insecure_skip_verify"] = ctx.boolean(t.get("insecure_skip_verify", False),
                                                  f"{key}.tls_config.insecure_skip_verify")  # fmt: skip
        if ("cert_file" in out) != ("key_file" in out):
            raise ctx.fail(f"{key}.tls_config.cert_file", "cert_file and key_file go together")
    http = HttpClient(**out)
    if http.ca_file or http.cert_file:
        try:  # a missing or unloadable file fails the load (or the reload), not every probe with a 500
            load_tls(tls_config(http))
        except TLSFileError as exc:
            raise ctx.fail(f"{key}.tls_config.{exc.key}", str(exc)) from None
    return http


def _body(ctx: _Ctx, raw: Any, key: str) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    if raw is None:
        return None, ()
    data = ctx.only(ctx.mapping(raw, key), ("content", "templatize"), key)
    content = ctx.string(data.get("content", ""), f"{key}.content")
    if not content:
        return None, ()
    if not ctx.boolean(data.get("templatize", False), f"{key}.templatize"):
        return content, ()
    params = []
    for m in _TEMPLATE_ACTION.finditer(content):
        first = _FIRST.match(m.group(1))
        if first is None:
            raise ctx.fail(
                f"{key}.content",
                f"unsupported template action {m.group(0)!r}: horizon-keda renders only {{{{ .param | first }}}}",
            )
        params.append((m.group(0), first.group(1)))
    return content, tuple(params)


def _module(ctx: _Ctx, name: str, raw: Any) -> Module:
    key = f"modules.{name}"
    data = ctx.only(ctx.mapping(raw, key), MODULE_KEYS, key)
    raw_metrics = data.get("metrics") or []
    if not isinstance(raw_metrics, list):
        raise ctx.fail(f"{key}.metrics", "expected a list of metrics")
    headers: dict[str, str] = {}
    secret_headers: list[str] = []
    for h, v in ctx.mapping(data.get("headers"), f"{key}.headers").items():
        raw_value = ctx.string(v, f"{key}.headers.{h}")
        headers[str(h)] = ctx.string(v, f"{key}.headers.{h}", interpolate_env=True)
        if str(h).lower() in CREDENTIAL_HEADERS or _SECRET_HEADER_NAME.search(str(h)) or "${" in raw_value:
            secret_headers.append(str(h))
    codes = data.get("valid_status_codes") or []
    if not isinstance(codes, list) or not all(isinstance(c, int) and 100 <= c <= 599 for c in codes):
        raise ctx.fail(f"{key}.valid_status_codes", f"expected a list of HTTP status codes, got {codes!r}")
    allowed_raw = data.get("allowed_targets") or []
    if not isinstance(allowed_raw, list) or not all(isinstance(a, str) and a for a in allowed_raw):
        raise ctx.fail(f"{key}.allowed_targets", "expected a list of URLs, `prefix*` or `~regex`")
    rules = []
    for i, rule in enumerate(allowed_raw):
        try:
            rules.append(parse_rule(rule))
        except TargetError as exc:
            raise ctx.fail(f"{key}.allowed_targets[{i}]", str(exc)) from None
    body, body_params = _body(ctx, data.get("body"), f"{key}.body")
    module = Module(
        name=name,
        metrics=tuple(_metric(ctx, m, f"{key}.metrics[{i}]") for i, m in enumerate(raw_metrics)),
        headers=headers,
        http=_http(ctx, data.get("http_client_config"), f"{key}.http_client_config"),
        valid_status_codes=tuple(codes),
        body=body,
        body_params=body_params,
        allowed_targets=tuple(allowed_raw),
        rules=tuple(rules),
        secret_headers=tuple(secret_headers),
    )
    if module.has_credentials and not module.allowed_targets:
        what = f"header {module.secret_headers[0]}" if module.secret_headers else "auth or a client certificate"
        raise ctx.fail(
            f"{key}.allowed_targets",
            f"required: this module carries credentials ({what}), and without a list /probe would send them to "
            "any target a caller names. Headers count as credentials when their name says so (auth, token, key, "
            "secret, cookie, session…) or their value comes from ${ENV}",
        )
    return module


def parse_modules(raw: Any, source: str, env: Mapping[str, str], warnings: list[str]) -> dict[str, Module]:
    """Validate the `modules:` mapping; case-variant warnings are appended to `warnings`."""
    ctx = _Ctx(source, env, warnings)
    modules = ctx.mapping(raw, "modules")
    return {str(name): _module(ctx, str(name), raw_module) for name, raw_module in modules.items()}
