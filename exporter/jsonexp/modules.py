"""Load json_exporter `modules:` configs into frozen dataclasses, strictly, with a few safe extensions.

json_exporter configs load with one line added per module. Differences: every module must list `allowed_targets`
(without it, `/probe` is a GET proxy to anything the pod can reach; `['*']` keeps json_exporter's open behaviour,
except for a module that carries credentials, which must name where they may go); unknown keys are errors naming the
key; case variants of metric keys (`epochTimestamp`, `valueType` — json_exporter silently drops them) are applied
with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from yarl import URL

from ..http import Authorization, BasicAuth
from ..tls import TLSConfig
from ..yamlreader import TLS_KEYS, Reader, has_authorization, read_auth, read_headers, read_tls
from .path import PathError, Template, compile_template
from .targets import Rule, TargetError, allowed, parse_rule

METRIC_KEYS = ("name", "help", "type", "valuetype", "path", "labels", "values", "epochtimestamp",
               "allow_missing_key", "value_map")  # fmt: skip
MODULE_KEYS = ("headers", "metrics", "http_client_config", "body", "valid_status_codes", "allowed_targets")
AUTH_KEYS = ("basic_auth", "authorization", "bearer_token", "bearer_token_file")
HTTP_KEYS = (*AUTH_KEYS, "tls_config", "follow_redirects", "enable_http2")
TLS_CONFIG_KEYS = (*TLS_KEYS, "server_name", "min_version")  # a target's tls: has no server_name, min_version
UNSUPPORTED_HTTP_KEYS = ("oauth2", "proxy_url", "no_proxy", "proxy_from_environment", "proxy_connect_header",
                         "http_headers")  # fmt: skip
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
# A header whose name says it carries a secret (X-Api-Key, X-Monitoring-Token, X-Auth-...), or whose value comes
# from the environment (`${TOKEN}`), counts as a credential too: a module sending it must list allowed_targets.
_SECRET_HEADER_NAME = re.compile(r"auth|token|secret|key|password|passwd|session|cookie|signature|credential", re.I)
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
    tls: TLSConfig = field(default_factory=TLSConfig)
    follow_redirects: bool = False


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
        return bool(h.basic_auth is not None or h.authorization is not None or h.tls.cert_file or self.secret_headers)

    def target_allowed(self, url: URL) -> bool:
        """Whether a rule admits `url`: `*`, exact, `prefix*` or `~regex`, compared on the normalised URL (see
        targets.py). Every loaded module has rules."""
        return allowed(self.rules, url)


def _template(r: Reader, name: str) -> Template:
    # Paths and labels are json_exporter's templates, read as written: no ${VAR} expansion, as in json_exporter.
    text = r.string(name, expand=False)
    if text is None:
        raise r.error(name, "expected a template string")
    try:
        return compile_template(text)
    except PathError as exc:
        raise r.error(name, str(exc)) from None


def _labels(r: Reader) -> tuple[tuple[str, Template], ...]:
    labels = r.mapping("labels")
    for name in labels.data:
        if not _LABEL.match(name) or name.startswith("__"):
            raise labels.error(name, "expected a Prometheus label name")
    return tuple((name, _template(labels, name)) for name in labels.data)


def _values(r: Reader, mtype: str) -> tuple[tuple[str, Template], ...]:
    values = r.mapping("values")
    if mtype == "object" and not values.data:
        raise r.error("values", "required for type object: suffix → value template")
    if mtype == "value" and values.data:
        raise r.error("values", "only for type object")
    for suffix in values.data:
        if not _LABEL.match(suffix):
            raise values.error(suffix, "expected a metric name suffix")
    return tuple((suffix, _template(values, suffix)) for suffix in values.data)


def _value_map(r: Reader) -> dict[str, float] | None:
    if not r.has("value_map"):
        return None
    checked = r.mapping("value_map")  # a mapping, or an error naming the key
    out: dict[str, float] = {}
    for k, v in r.data["value_map"].items():  # raw keys: YAML reads `true:` as a boolean
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise checked.error(str(k), f"expected a number, got {v!r}")
        out["true" if k is True else "false" if k is False else str(k)] = float(v)
    return out


def _choice(r: Reader, name: str, choices: tuple[str, ...], default: str) -> str:
    value = r.data.get(name) or default
    if value not in choices:
        raise r.error(name, f"expected {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")
    return value


def _metric(r: Reader) -> MetricDef:
    r.only(METRIC_KEYS, case_variants=True)
    name = r.string("name", "", expand=False) or ""
    if not _METRIC.match(name):
        raise r.error("name", f"expected a Prometheus metric name, got {name!r}")
    mtype = _choice(r, "type", ("value", "object"), "value")
    valuetype = _choice(r, "valuetype", ("gauge", "counter", "untyped"), "untyped")
    if not r.has("path"):
        raise r.error("path", "required: where the value (or, for type object, the objects) are")
    return MetricDef(
        name=name,
        help=r.string("help", expand=False) or name,
        type=mtype,
        valuetype=valuetype,
        path=_template(r, "path"),
        labels=_labels(r),
        values=_values(r, mtype),
        epochtimestamp=_template(r, "epochtimestamp") if r.has("epochtimestamp") else None,
        allow_missing_key=r.boolean("allow_missing_key", False),
        value_map=_value_map(r),
    )


def _warn_http2(r: Reader) -> None:
    # Accepted because json_exporter configs carry it; a `true` that silently did nothing would mislead.
    if r.boolean("enable_http2", False):
        r.warn(
            "enable_http2", "true is ignored: probes use HTTP/1.1, the only version aiohttp's client speaks "
            "(json_exporter's own probes disable HTTP/2 too)",
        )  # fmt: skip


def _http(r: Reader | None, *, authorization_header: bool) -> HttpClient:
    """`http_client_config`; `authorization_header`: the module's headers set Authorization themselves."""
    if r is None:
        return HttpClient()  # json_exporter: without the block, redirects are not followed
    r.only(HTTP_KEYS, unsupported=UNSUPPORTED_HTTP_KEYS)
    _warn_http2(r)
    basic, authorization = read_auth(r, AUTH_KEYS, authorization_header=authorization_header)
    return HttpClient(
        basic_auth=basic,
        authorization=authorization,
        tls=read_tls(r.child("tls_config"), TLS_CONFIG_KEYS),
        follow_redirects=r.boolean("follow_redirects", True),
    )


def _body(r: Reader | None) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    if r is None:
        return None, ()
    r.only(("content", "templatize"))
    content = r.string("content", "", expand=False)
    if not content:
        return None, ()
    if not r.boolean("templatize", False):
        return content, ()
    params = []
    for m in _TEMPLATE_ACTION.finditer(content):
        first = _FIRST.match(m.group(1))
        if first is None:
            raise r.error(
                "content",
                f"unsupported template action {m.group(0)!r}: horizon-keda renders only {{{{ .param | first }}}}",
            )
        params.append((m.group(0), first.group(1)))
    return content, tuple(params)


def _secret_headers(headers: Mapping[str, str], from_env: tuple[str, ...]) -> tuple[str, ...]:
    """The names of the headers that count as credentials."""
    return tuple(
        name for name in headers
        if name.lower() in CREDENTIAL_HEADERS or _SECRET_HEADER_NAME.search(name) or name in from_env
    )  # fmt: skip


def _status_codes(r: Reader) -> tuple[int, ...]:
    codes = r.data.get("valid_status_codes") or []
    if not isinstance(codes, list) or not all(isinstance(c, int) and 100 <= c <= 599 for c in codes):
        raise r.error("valid_status_codes", f"expected a list of HTTP status codes, got {codes!r}")
    return tuple(codes)


def _allowed_targets(r: Reader) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
    """`allowed_targets` as written and compiled."""
    raw = r.data.get("allowed_targets") or []
    if not isinstance(raw, list) or not all(isinstance(a, str) and a for a in raw):
        raise r.error("allowed_targets", "expected a list of URLs, `prefix*` or `~regex`")
    rules = []
    for i, rule in enumerate(raw):
        try:
            rules.append(parse_rule(rule))
        except TargetError as exc:
            raise r.error(f"allowed_targets[{i}]", str(exc)) from None
    return tuple(raw), tuple(rules)


def _require_allowed_targets(r: Reader, module: Module) -> None:
    """Every module says where /probe may fetch; one that carries credentials names the places, not `*`."""
    if not module.allowed_targets:
        raise r.error(
            "allowed_targets",
            "required: without it /probe fetches any URL a caller names — a proxy to everything this pod can reach, "
            "the cloud's metadata endpoint and internal services included. Add the line "
            "`allowed_targets: ['http://orders.shop.svc/horizon/*']` naming what this module may probe "
            "(exact URLs, `scheme://host/prefix*` or `~regex`), or `allowed_targets: ['*']` to allow any target",
        )
    if module.has_credentials and any(rule.kind == "any" for rule in module.rules):
        what = f"header {module.secret_headers[0]}" if module.secret_headers else "auth or a client certificate"
        raise r.error(
            "allowed_targets",
            f"'*' is not accepted for a module that carries credentials ({what}): /probe would send them to any "
            "target a caller names. List the targets. Headers count as credentials when their name says so (auth, "
            "token, key, secret, cookie, session…) or their value comes from ${ENV}",
        )


def _module(r: Reader, name: str) -> Module:
    r.only(MODULE_KEYS)
    metrics = r.readers("metrics", "a list of metrics")
    headers, from_env = read_headers(r)
    allowed_targets, rules = _allowed_targets(r)
    body, body_params = _body(r.child("body"))
    module = Module(
        name=name,
        metrics=tuple(_metric(m) for m in metrics),
        headers=headers,
        http=_http(r.child("http_client_config"), authorization_header=has_authorization(headers)),
        valid_status_codes=_status_codes(r),
        body=body,
        body_params=body_params,
        allowed_targets=allowed_targets,
        rules=rules,
        secret_headers=_secret_headers(headers, from_env),
    )
    _require_allowed_targets(r, module)
    return module


def parse_modules(r: Reader | None) -> dict[str, Module]:
    """Validate the `modules:` mapping (None: no modules); case-variant warnings go to the reader's warnings."""
    if r is None:
        return {}
    return {name: _module(r.mapping(name), name) for name in r.data}
