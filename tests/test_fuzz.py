"""Fuzzing: generated input into every parser and mapper. Only the project's typed errors may come out, never
another exception, and a valid input gives values (round-trips where the format allows)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import parse_config
from exporter.horizon import HorizonReading, SchemaError, parse_masters, parse_stats, parse_workload
from exporter.jsonexp.path import PathError, compile_template
from exporter.jsonexp.targets import TargetError, normalise, parse_rule
from exporter.mapping import Fixed, Mapper, Pattern, map_reading
from exporter.webconfig import CIPHER_SUITES, HEADERS, parse_duration, parse_web_config
from exporter.webguard import basic_credentials
from exporter.yamlreader import ConfigError
from external_scaler.feed import Feed
from external_scaler.metadata import MetadataError, parse_metadata
from external_scaler.tenants import TenantsError, parse_tenants

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["", "0", "12", "nan", "inf", "-1", "running", "redis:default", "${X}", "\ud800", "*"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=25,
)
# Horizon-shaped: the right keys with arbitrary values, so the parsers get past the first check.
supervisor = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "status": scalars,
        "options": documents,
        "processes": st.one_of(documents, st.dictionaries(st.text(max_size=8), scalars)),
    },
)
master = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "status": scalars,
        "supervisors": st.one_of(st.lists(supervisor, max_size=3), documents),
    },
)
masters = st.one_of(st.dictionaries(st.text(max_size=8), master, max_size=3), documents)
rows = st.one_of(
    st.lists(
        st.fixed_dictionaries({}, optional={"name": scalars, "length": scalars, "wait": scalars, "processes": scalars}),
        max_size=4,
    ),
    documents,
)
stats = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "status": scalars,
            "processes": scalars,
            "jobsPerMinute": scalars,
            "recentJobs": scalars,
            "failedJobs": scalars,
        },
    ),
    documents,
)
RULES = (
    Fixed("orders"),
    Pattern("supervisor", re.compile(r"^(?P<microservice>[a-z]+)")),
    Pattern("queue", re.compile(r"^(?P<microservice>[a-z]+)-")),
)


@FUZZ
@given(stats, rows, masters)
def test_horizon_payloads_parse_and_map_or_raise_schema_errors(raw_stats: Any, raw_rows: Any, raw_masters: Any):
    try:
        reading = HorizonReading(parse_stats(raw_stats), parse_workload(raw_rows), parse_masters(raw_masters))
    except SchemaError:
        return
    for rule in RULES:
        mapped = map_reading(reading, rule)
        assert Mapper(rule).map(reading) == mapped
        for values in mapped.values():
            assert all(isinstance(v, float) for v in (values.processes, values.max_processes))
            json.dumps(values)  # every value is plain data, encodable for the snapshot document


@FUZZ
@given(documents)
def test_exporter_config_is_a_config_or_a_config_error(data: Any):
    with contextlib.suppress(ConfigError):
        parse_config(data, "fuzz.yml", env={"X": "x"})


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["metrics", "headers", "allowed_targets", "body", "valid_status_codes", "http_client_config"]),
        documents,
        max_size=4,
    )
)
def test_modules_are_modules_or_config_errors(module: Any):
    with contextlib.suppress(ConfigError):
        parse_config({"modules": {"m": module}}, "fuzz.yml", env={})


@FUZZ
@given(st.text(max_size=40))
def test_jsonpath_templates_compile_or_raise_path_errors(text: str):
    with contextlib.suppress(PathError):
        compile_template(text)


@FUZZ
@given(
    st.one_of(st.text(max_size=40), st.from_regex(r"https?://[a-z0-9.\[\]:%@-]{0,20}(/[^\s]{0,15})?", fullmatch=True))
)
def test_probe_targets_and_rules_normalise_or_raise_target_errors(text: str):
    try:
        url = normalise(text)
    except TargetError:
        url = None
    if url is not None:
        assert normalise(str(url)) == url, "a normalised URL normalises to itself"
    with contextlib.suppress(TargetError):
        parse_rule(text)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "microservice",
                "metric",
                "queue",
                "threshold",
                "thresholdMode",
                "activationThreshold",
                "scalerAddress",
                "microserviceFromEnv",
            ]
        ),
        st.text(max_size=12),
        max_size=6,
    )
)
def test_trigger_metadata_is_a_trigger_or_a_metadata_error(meta: dict[str, str]):
    with contextlib.suppress(MetadataError):
        parse_metadata(meta)


@FUZZ
@given(
    st.one_of(
        documents, st.fixed_dictionaries({"tenants": st.dictionaries(st.text(max_size=6), documents, max_size=3)})
    )
)
def test_tenants_are_a_policy_or_a_tenants_error(data: Any):
    try:
        policy = parse_tenants(data, "tenants.yml")
    except TenantsError:
        return
    for namespace, tenant in policy.by_namespace.items():
        assert namespace in tenant.namespaces


@FUZZ
@given(documents, documents)
def test_snapshot_documents_are_a_copy_or_a_value_error(full: Any, delta: Any):
    try:
        feed = Feed.from_document(full)
    except ValueError:
        return
    if isinstance(delta, dict):
        delta = {**delta, "kind": "delta", "instance": feed.instance, "since": feed.revision}
        with contextlib.suppress(ValueError):
            feed.apply(delta)


web_keys = st.sampled_from(
    ["tls_server_config", "http_server_config", "basic_auth_users", "rate_limit", "cert_file", "key_file", "cert",
     "client_auth_type", "client_ca_file", "client_allowed_sans", "min_version", "max_version", "cipher_suites",
     "curve_preferences", "headers", "http2", "interval", "burst", "X-Frame-Options", "prometheus"]
)  # fmt: skip
WEB_WORDS = ["RequireAndVerifyClientCert", "VerifyClientCertIfGiven", "TLS12", "TLS13", "deny", "nosniff", "1s",
             "100ms", "0", "X25519", "$2y$10$" + "a" * 53, "TLS_AES_128_GCM_SHA256"]  # fmt: skip
web_values = st.one_of(scalars, st.sampled_from(WEB_WORDS))
web_documents = st.recursive(
    web_values,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(web_keys, inner, max_size=5)),
    max_leaves=20,
)


@FUZZ
@given(st.one_of(web_documents, st.dictionaries(web_keys, web_documents, max_size=4)))
def test_web_config_is_a_config_or_a_config_error(data: Any):
    try:
        config = parse_web_config(data, "web.yml")
    except ConfigError:
        return
    # A valid file's values come back as given: every user a bcrypt hash, every header one the format allows.
    assert all(h.startswith("$2") for h in config.users.values())
    assert set(config.headers) <= set(HEADERS)
    if config.rate_limit is not None:
        assert config.rate_limit.interval > 0 and config.rate_limit.burst >= 1


@FUZZ
@given(st.text(max_size=30))
def test_durations_parse_or_raise_value_errors(text: str):
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=30).map(lambda b: "Basic " + b.hex())))
def test_authorization_headers_are_credentials_or_none(header: str | None):
    creds = basic_credentials(header)
    if creds is not None:
        user, password = creds
        token = base64.b64encode(user.encode() + b":" + password).decode()
        assert basic_credentials("Basic " + token) == creds  # round-trips


_file = st.from_regex(r"/[a-z]{1,8}/[a-z.]{1,10}", fullmatch=True)
_auth = st.sampled_from(["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"])
_versions = st.sampled_from([("TLS10", "TLS13"), ("TLS12", "TLS12"), ("TLS12", "TLS13"), ("TLS13", "TLS13")])


@st.composite
def valid_web_configs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if draw(st.booleans()):
        auth = draw(_auth)
        low, high = draw(_versions)
        suites = draw(st.lists(st.sampled_from(sorted(CIPHER_SUITES)), max_size=3))
        tls: dict[str, Any] = {"cert_file": draw(_file), "key_file": draw(_file), "client_auth_type": auth,
                               "min_version": low, "max_version": high, "cipher_suites": suites}  # fmt: skip
        if auth != "NoClientCert":
            tls["client_ca_file"] = draw(_file)
        if auth == "RequireAndVerifyClientCert":
            tls["client_allowed_sans"] = draw(st.lists(st.from_regex(r"[a-z]{1,6}\.svc", fullmatch=True), max_size=2))
        doc["tls_server_config"] = tls
    hashes = st.from_regex(r"\$2[aby]\$1[0-2]\$[./A-Za-z0-9]{53}", fullmatch=True)
    doc["basic_auth_users"] = draw(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), hashes,
                                                   max_size=3))  # fmt: skip
    doc["http_server_config"] = {"headers": draw(st.fixed_dictionaries({}, optional={
        "X-Frame-Options": st.sampled_from(["deny", "sameorigin"]), "X-Content-Type-Options": st.just("nosniff"),
        "Content-Security-Policy": st.just("default-src 'self'")}))}  # fmt: skip
    if draw(st.booleans()):
        doc["rate_limit"] = {
            "interval": draw(st.sampled_from(["10ms", "1s", "1m30s"])),
            "burst": draw(st.integers(1, 99)),
        }
    return doc


@FUZZ
@given(valid_web_configs())
def test_valid_web_configs_round_trip_through_yaml(doc: dict[str, Any]):
    config = parse_web_config(yaml.safe_load(yaml.safe_dump(doc)), "web.yml")
    assert dict(config.users) == doc["basic_auth_users"]
    assert dict(config.headers) == doc["http_server_config"]["headers"]
    if "tls_server_config" in doc:
        tls = doc["tls_server_config"]
        assert config.tls is not None
        for key, value in tls.items():
            got = getattr(config.tls, key)
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    else:
        assert config.tls is None
    if "rate_limit" in doc:
        assert config.rate_limit is not None and config.rate_limit.burst == doc["rate_limit"]["burst"]
        assert config.rate_limit.interval == parse_duration(doc["rate_limit"]["interval"])
