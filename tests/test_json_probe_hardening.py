"""/probe against hostile callers and upstreams: target rules on normalised URLs, checked redirects, secret
headers, TLS settings applied, a bounded number of probes, and hostile JSON reported instead of a 500."""

from __future__ import annotations

import asyncio
import json
import ssl
import textwrap

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from exporter.config import parse_config
from exporter.jsonexp.targets import TargetError, normalise, parse_rule
from exporter.yamlreader import ConfigError
from tests.certs import CA


def cfg(text: str, env: dict[str, str] | None = None):
    return parse_config(yaml.safe_load(textwrap.dedent(text)), "test.yml", env=env or {})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def reasons(text: str) -> dict[str, float]:
    return {dict(labels)["reason"]: v for (name, labels), v in samples(text).items() if name == "probe_json_errors"}


class Upstream:
    """A loopback upstream that records every request (method, path, headers) and answers per route."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.routes: dict[str, web.StreamResponse | bytes | str] = {}
        self.server: TestServer | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.raw_path, dict(request.headers)))
        answer = self.routes.get(request.path)
        if answer is None:
            return web.Response(status=404, text="no route")
        if callable(answer):
            return await answer(request)
        return web.Response(
            body=answer if isinstance(answer, bytes) else answer.encode(), content_type="application/json"
        )

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", scheme="https" if ssl_context else "http")
        await self.server.start_server(ssl=ssl_context)
        return self

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))


@pytest.fixture
async def upstreams():
    made: list[Upstream] = []

    async def make(ssl_context: ssl.SSLContext | None = None) -> Upstream:
        up = await Upstream().start(ssl_context)
        made.append(up)
        return up

    yield make
    for up in made:
        assert up.server is not None
        await up.server.close()


async def probe(client, headers: dict[str, str] | None = None, **params: str) -> tuple[int, str]:
    resp = await client.get("/probe", params=params, headers=headers or {})
    return resp.status, await resp.text()


# --- allowed_targets on normalised URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "admitted"),
    [
        ("https://api.internal/v1/status", True),
        ("HTTPS://API.internal:443/v1/status?x=1", True),
        ("https://api.internal/v1/../admin", False),
        ("https://api.internal/v1/%2e%2e/admin", False),
        ("https://api.internal/v1/..%2fadmin", False),
        ("https://api.internal/v1/a%5c..%5cadmin", False),
        ("https://api.internal.evil.example/v1/status", False),
        ("https://api.internal:8443/v1/status", False),
        ("http://api.internal/v1/status", False),
        ("https://api.internal/v2/status", False),
    ],
)
def test_prefix_rules_compare_origin_and_normalised_path(target, admitted):
    rule = parse_rule("https://api.internal/v1/*")
    assert rule.admits(normalise(target)) is admitted


def test_exact_rules_are_normalised_too():
    rule = parse_rule("https://API.internal:443/a/./b")
    assert rule.admits(normalise("https://api.internal/a/b"))
    assert not rule.admits(normalise("https://api.internal/a/b?x=1"))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("https://api.internal*", r"must start with scheme://host\[:port\]/"),
        ("http*", r"must start with scheme://host\[:port\]/"),
        ("~(unclosed", "invalid regular expression"),
        ("ftp://api.internal/x", r"expected an http\(s\) URL"),
        ("https://user:pw@api.internal/x", "credentials in the URL"),
    ],
)
def test_rules_that_cannot_be_checked_safely_are_refused(rule, message):
    with pytest.raises(TargetError, match=message):
        parse_rule(rule)
    with pytest.raises(ConfigError) as exc:
        cfg(f"modules:\n  m:\n    allowed_targets: ['{rule}']\n    metrics: []\n")
    assert exc.value.key == "modules.m.allowed_targets[0]"


async def test_dot_segments_cannot_walk_out_of_a_prefix(make_exporter, upstreams):
    up = await upstreams()
    up.routes["/ok/doc"] = '{"x": 1}'
    up.routes["/admin"] = '{"x": 2}'
    client = await make_exporter(cfg(f"""
    modules:
      default:
        headers: {{X-Monitoring-Token: s3cret}}
        allowed_targets: ['{up.url("/ok/")}*']
        metrics: [{{name: x, path: '{{.x}}'}}]
    """))  # fmt: skip
    assert (await probe(client, target=up.url("/ok/doc")))[0] == 200
    for sneaky in ("/ok/../admin", "/ok/%2e%2e/admin", "/ok/%2E%2E/admin"):
        status, _ = await probe(client, target=up.url("/") + sneaky.lstrip("/"))
        assert status == 403, sneaky
    assert [path for _, path, _ in up.requests] == ["/ok/doc"]


# --- secret headers and redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [("X-Monitoring-Token", "abc"), ("X-Api-Key", "abc"), ("X-Session", "abc"), ("X-Tenant", "${TENANT_SECRET}")],
)
def test_secret_headers_count_as_credentials(header, value):
    text = f"modules:\n  m:\n    headers: {{{header}: '{value}'}}\n    allowed_targets: ['*']\n    metrics: []\n"
    with pytest.raises(ConfigError) as exc:
        cfg(text, env={"TENANT_SECRET": "t0p"})
    assert exc.value.key == "modules.m.allowed_targets" and f"header {header}" in str(exc.value)
    assert "t0p" not in str(exc.value) and "abc" not in str(exc.value)


def test_a_module_without_allowed_targets_is_refused_naming_the_line_to_add():
    with pytest.raises(ConfigError) as exc:
        cfg("modules:\n  m:\n    metrics: []\n")
    assert exc.value.key == "modules.m.allowed_targets"
    assert "allowed_targets: ['*']" in str(exc.value) and "metadata" in str(exc.value)
    with pytest.raises(ConfigError, match="'\\*' is not accepted for a module that carries credentials"):
        cfg("modules:\n  m:\n    headers: {X-Api-Key: k}\n    allowed_targets: ['*']\n    metrics: []\n")


async def test_a_listed_module_refuses_every_other_target(make_exporter, upstreams):
    up, other = await upstreams(), await upstreams()
    client = await make_exporter(cfg(f"modules:\n  m:\n    allowed_targets: ['{up.url('/')}*']\n    metrics: []\n"))
    status, _ = await probe(client, module="m", target=other.url("/doc"))
    assert status == 403
    status, _ = await probe(client, module="m", target=up.url("/doc"))
    assert status == 200


def test_plain_headers_keep_the_open_behaviour():
    c = cfg(
        "modules:\n  m:\n    headers: {Accept-Language: en, X-Tenant: acme}\n    allowed_targets: ['*']\n"
        "    metrics: []\n"
    )
    assert not c.modules["m"].has_credentials


async def test_each_redirect_hop_is_checked_and_secrets_never_leave(make_exporter, upstreams):
    home, elsewhere = await upstreams(), await upstreams()
    home.routes["/doc"] = '{"x": 1}'
    elsewhere.routes["/doc"] = '{"x": 2}'

    async def to_elsewhere(request):
        raise web.HTTPFound(elsewhere.url("/doc"))

    async def to_home(request):
        raise web.HTTPMovedPermanently("/doc")

    home.routes["/away"], home.routes["/local"] = to_elsewhere, to_home
    client = await make_exporter(cfg(f"""
    modules:
      default:
        headers: {{X-Monitoring-Token: s3cret}}
        http_client_config: {{follow_redirects: true}}
        allowed_targets: ['{home.url("/")}*']
        metrics: [{{name: x, path: '{{.x}}'}}]
    """))  # fmt: skip
    status, text = await probe(client, target=home.url("/away"))
    assert status == 200 and samples(text)[("probe_success", ())] == 0
    assert reasons(text) == {"redirect_not_allowed": 1}
    assert elsewhere.requests == []  # the token never reached the other origin
    status, text = await probe(client, target=home.url("/local"))
    assert samples(text)[("x", ())] == 1 and samples(text)[("probe_success", ())] == 1
    assert [p for _, p, _ in home.requests] == ["/away", "/local", "/doc"]
    assert all(h["X-Monitoring-Token"] == "s3cret" for _, _, h in home.requests)


async def test_redirect_loops_stop_and_post_becomes_get_on_302(make_exporter, upstreams):
    up = await upstreams()

    async def loop(request):
        raise web.HTTPFound("/loop")

    async def see_other(request):
        raise web.HTTPFound("/doc")

    async def doc(request):
        return web.json_response({"method": request.method, "x": 1})

    up.routes.update({"/loop": loop, "/post": see_other, "/doc": doc})
    client = await make_exporter(
        cfg("""
    modules:
      default:
        http_client_config: {follow_redirects: true}
        body: {content: '{"q": 1}'}
        allowed_targets: ['*']
        metrics: [{name: x, path: '{.x}'}, {name: get, path: '{.method}', value_map: {GET: 1, POST: 0}}]
    """)
    )
    status, text = await probe(client, target=up.url("/loop"))
    assert status == 200 and reasons(text) == {"too_many_redirects": 1}
    assert len(up.requests) == 11  # the first request and ten redirects
    _, text = await probe(client, target=up.url("/post"))
    assert samples(text)[("get", ())] == 1 and [m for m, _, _ in up.requests[-2:]] == ["POST", "GET"]


# --- TLS settings are applied ------------------------------------------------------------------------------------


def _tls_server(ca: CA, tmp_path, names: tuple[str, ...], max_version: ssl.TLSVersion | None = None):
    cert, key = ca.issue(names[0], names=names).write(tmp_path, "server")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


async def test_tls_server_name_is_sent_and_verified(make_exporter, upstreams, tmp_path):
    ca = CA()
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    up = await upstreams(_tls_server(ca, tmp_path, ("horizon.internal",)))
    up.routes["/doc"] = '{"x": 1}'
    ca_file = tmp_path / "ca.crt"
    client = await make_exporter(cfg(f"""
    modules:
      named:
        allowed_targets: ['*']
        metrics: [{{name: x, path: '{{.x}}'}}]
        http_client_config: {{tls_config: {{ca_file: {ca_file}, server_name: horizon.internal}}}}
      unnamed:
        allowed_targets: ['*']
        metrics: [{{name: x, path: '{{.x}}'}}]
        http_client_config: {{tls_config: {{ca_file: {ca_file}}}}}
    """))  # fmt: skip
    _, text = await probe(client, module="named", target=up.url("/doc"))
    assert samples(text)[("x", ())] == 1
    _, text = await probe(client, module="unnamed", target=up.url("/doc"))
    assert reasons(text) == {"tls": 1}  # the certificate names horizon.internal, not 127.0.0.1


async def test_tls_min_version_is_enforced(make_exporter, upstreams, tmp_path):
    ca = CA()
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    up = await upstreams(_tls_server(ca, tmp_path, ("localhost",), max_version=ssl.TLSVersion.TLSv1_2))
    up.routes["/doc"] = '{"x": 1}'
    tls = f"ca_file: {tmp_path}/ca.crt"
    client = await make_exporter(cfg(f"""
    modules:
      tls12:
        allowed_targets: ['*']
        metrics: [{{name: x, path: '{{.x}}'}}]
        http_client_config: {{tls_config: {{{tls}, min_version: TLS12}}}}
      tls13:
        allowed_targets: ['*']
        metrics: [{{name: x, path: '{{.x}}'}}]
        http_client_config: {{tls_config: {{{tls}, min_version: TLS13}}}}
    """))  # fmt: skip
    target = f"https://localhost:{URL(up.url('/')).port}/doc"
    assert samples((await probe(client, module="tls12", target=target))[1])[("x", ())] == 1
    _, text = await probe(client, module="tls13", target=target)
    # The server refuses the handshake; depending on timing the client sees a TLS alert or a reset.
    assert samples(text)[("probe_success", ())] == 0 and set(reasons(text)) <= {"tls", "connection"}
    with pytest.raises(ConfigError, match="expected one of TLS10, TLS11, TLS12, TLS13"):
        cfg(
            "modules:\n  m:\n    http_client_config: {tls_config: {min_version: TLS1.3}}\n    allowed_targets: ['*']\n"
            "    metrics: []\n"
        )


# --- bounded probes and timeouts ---------------------------------------------------------------------------------


async def test_probes_beyond_the_limit_wait_then_report_busy(make_exporter, upstreams):
    up = await upstreams()
    release = asyncio.Event()

    async def hold(request):
        await release.wait()
        return web.json_response({"x": 1})

    up.routes["/hold"] = hold
    config = cfg(
        "probe_concurrency: 1\nmodules:\n  default:\n    allowed_targets: ['*']\n"
        "    metrics: [{name: x, path: '{.x}'}]\n"
    )
    client = await make_exporter(config)
    first = asyncio.create_task(probe(client, target=up.url("/hold")))
    while not up.requests:
        await asyncio.sleep(0.01)
    _, text = await probe(client, headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.5"}, target=up.url("/hold"))
    assert reasons(text) == {"busy": 1} and samples(text)[("probe_success", ())] == 0
    assert len(up.requests) == 1  # the second probe never reached the upstream
    release.set()
    _, text = await first
    assert samples(text)[("x", ())] == 1


async def test_probe_timeout_is_capped_whatever_the_header_says(make_exporter, upstreams):
    up = await upstreams()

    async def stall(request):
        await asyncio.sleep(30)
        return web.json_response({})

    up.routes["/stall"] = stall
    client = await make_exporter(
        cfg(
            "probe_timeout_max: 0.5\nmodules:\n  default:\n    allowed_targets: ['*']\n"
            "    metrics: [{name: x, path: '{.x}'}]\n"
        )
    )
    _, text = await probe(client, headers={"X-Prometheus-Scrape-Timeout-Seconds": "300"}, target=up.url("/stall"))
    assert reasons(text) == {"timeout": 1}
    assert samples(text)[("probe_duration_seconds", ())] < 10


def test_probe_settings_are_validated():
    with pytest.raises(ConfigError) as exc:
        cfg("probe_concurrency: 0\n")
    assert exc.value.key == "probe_concurrency"


# --- hostile JSON --------------------------------------------------------------------------------------------------


HOSTILE = """
modules:
  default:
    allowed_targets: ['*']
    metrics:
      - {name: total, path: '{.names[*].sum()}'}
      - {name: stamped, path: '{.v}', epochtimestamp: '{.ts}'}
      - {name: label, path: '{.v}', labels: {who: '{.who}'}}
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"names": ["a", "b"], "v": 1, "ts": 1, "who": "x"}', {"not_a_number": 1}),
        (b'{"names": [1], "v": 1, "ts": 1e400, "who": "x"}', {"bad_timestamp": 1}),
        (b'{"names": [1], "v": NaN, "ts": 1, "who": "x"}', {"invalid_json": 1}),
        (b'{"names": [1], "v": Infinity, "ts": 1, "who": "x"}', {"invalid_json": 1}),
        (b"[" * 100_000 + b"]" * 100_000, {"invalid_json": 1}),
    ],
    ids=["sum-of-strings", "timestamp-overflow", "nan-literal", "infinity-literal", "deep-nesting"],
)
async def test_hostile_json_fails_the_probe_not_the_server(make_exporter, upstreams, body, expected):
    up = await upstreams()
    up.routes["/doc"] = body
    client = await make_exporter(cfg(HOSTILE))
    status, text = await probe(client, target=up.url("/doc"))
    assert status == 200 and reasons(text) == expected
    assert samples(text)[("probe_success", ())] == 0


async def test_lone_surrogates_become_replacement_characters(make_exporter, upstreams):
    up = await upstreams()
    up.routes["/doc"] = b'{"names": [1], "v": 1, "ts": 1, "who": "bad\\ud800name"}'
    client = await make_exporter(cfg(HOSTILE))
    status, text = await probe(client, target=up.url("/doc"))
    assert status == 200
    assert samples(text)[("label", (("who", "bad?name"),))] == 1 and samples(text)[("probe_success", ())] == 1


ITEMS_BY_KEY = """
modules:
  default:
    allowed_targets: ['*']
    metrics:
      - {name: item, type: object, path: '{.items[*]}', labels: {k: '{.k}'}, values: {v: '{.v}'}}
"""


async def test_surrogate_labels_that_render_alike_are_deduplicated_not_doubled(make_exporter, upstreams):
    up = await upstreams()
    up.routes["/doc"] = b'{"items": [{"k": "a\\ud800", "v": 1}, {"k": "a\\udfff", "v": 2}, {"k": "\xc3\xa9", "v": 3}]}'
    client = await make_exporter(cfg(ITEMS_BY_KEY))
    status, text = await probe(client, target=up.url("/doc"))
    assert status == 200
    got = samples(text)
    assert got[("item_v", (("k", "a?"),))] == 1 and got[("item_v", (("k", "\xe9"),))] == 3
    assert got[("probe_json_duplicate_samples", ())] == 1 and got[("probe_success", ())] == 1


async def test_deep_documents_walked_by_descendant_paths(make_exporter, upstreams):
    up = await upstreams()
    up.routes["/doc"] = b'{"a":' * 500 + b'{"b": 7}' + b"}" * 500
    client = await make_exporter(
        cfg("modules:\n  default:\n    allowed_targets: ['*']\n    metrics: [{name: x, path: '{..b}'}]\n")
    )
    status, text = await probe(client, target=up.url("/doc"))
    assert status == 200 and samples(text)[("x", ())] == 7 and samples(text)[("probe_success", ())] == 1


async def test_tls_files_that_do_not_load_fail_the_load_or_the_probe_never_500(make_exporter, upstreams, tmp_path):
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("not a certificate\n")
    text = (
        f"modules:\n  m:\n    http_client_config: {{tls_config: {{ca_file: {ca_file}}}}}\n"
        "    allowed_targets: ['*']\n    metrics: []\n"
    )
    with pytest.raises(ConfigError) as exc:
        cfg(text)
    assert exc.value.key == "modules.m.http_client_config.tls_config.ca_file" and str(ca_file) in str(exc.value)
    ca = CA()
    ca_file.write_bytes(ca.pem)
    up = await upstreams(_tls_server(ca, tmp_path, ("localhost",)))
    up.routes["/doc"] = '{"x": 1}'
    client = await make_exporter(cfg(text.replace("metrics: []", "metrics: [{name: x, path: '{.x}'}]")))
    ca_file.write_text("rotated into garbage\n")  # after the load, before the first https probe
    target = f"https://localhost:{URL(up.url('/')).port}/doc"
    status, body = await probe(client, module="m", target=target)
    assert status == 200 and reasons(body) == {"tls": 1} and up.requests == []


# --- found in review ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["http://xn--api-.internal/v1/x", "https://api.internal/v1/..;/admin", "https://api.internal/v1/.;x/admin"],
)
def test_malformed_idna_and_java_dot_segments_are_refused(target):
    with pytest.raises(TargetError):
        normalise(target)


async def test_malformed_idna_target_is_400_not_500(make_exporter):
    client = await make_exporter(cfg("modules:\n  default:\n    allowed_targets: ['*']\n    metrics: []\n"))
    assert (await probe(client, target="http://xn--api-.internal/v1/x"))[0] == 400
    with pytest.raises(ConfigError):
        cfg("modules:\n  m:\n    allowed_targets: ['https://xn--api-.internal/*']\n    metrics: []\n")


def test_regex_rules_refuse_encoded_separators():
    rule = parse_rule("~https://api.internal/v1/.*")
    assert rule.admits(normalise("https://api.internal/v1/status"))
    assert not rule.admits(normalise("https://api.internal/v1/..%2Fadmin"))
    assert not rule.admits(normalise("https://api.internal/v1/..%5cadmin"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"ok": 1, "v": 1, "ts": 1e300}', {"bad_timestamp": 1}),
        (b'{"ok": 1, "v": 1, "ts": 9223372036854775808}', {"bad_timestamp": 1}),
        (b'{"ok": 1, "v": 1' + b"0" * 400 + b', "ts": 1}', {"not_a_number": 1}),
    ],
    ids=["timestamp-1e300", "timestamp-beyond-int64", "int-beyond-float"],
)
async def test_out_of_range_numbers_lose_one_metric_not_the_scrape(make_exporter, upstreams, body, expected):
    up = await upstreams()
    up.routes["/doc"] = body
    client = await make_exporter(
        cfg("modules:\n  default:\n    allowed_targets: ['*']\n"
            "    metrics: [{name: ok, path: '{.ok}'}, {name: v, path: '{.v}', "
            "epochtimestamp: '{.ts}'}]\n")
    )  # fmt: skip
    _, text = await probe(client, target=up.url("/doc"))
    assert reasons(text) == expected and samples(text)[("ok", ())] == 1


async def test_a_million_errors_are_counted_not_kept(make_exporter, upstreams):
    up = await upstreams()
    up.routes["/doc"] = json.dumps({"items": [[] for _ in range(50_000)]})
    client = await make_exporter(
        cfg(
            "modules:\n  default:\n    allowed_targets: ['*']\n"
            "    metrics: [{name: i, type: object, path: '{.items[*]}', values: {v: '{.n}'}}]\n"
        )
    )
    _, text = await probe(client, target=up.url("/doc"))
    assert reasons(text) == {"missing_path": 50_000}
    from exporter.jsonexp.extract import ErrorLog, extract

    module = cfg(
        "modules:\n  m:\n    allowed_targets: ['*']\n"
        "    metrics: [{name: i, type: object, path: '{.items[*]}', values: {v: '{.n}'}}]\n"
    )
    ex = extract(module.modules["m"], {"items": [[] for _ in range(50_000)]})
    assert ex.errors.counts == {"missing_path": 50_000} and len(ex.errors) == ErrorLog.KEEP
