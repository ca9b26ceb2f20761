"""/probe semantics, json_exporter's holes closed, and the features its users keep asking for."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import textwrap

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.cli import main
from exporter.config import Config, load_config, parse_config
from exporter.reload import ConfigReloader
from exporter.yamlreader import ConfigError
from tests.payloads import topology_a


def cfg(text: str, tmp_path=None):
    if tmp_path is None:
        import yaml

        return parse_config(yaml.safe_load(textwrap.dedent(text)), "test.yml", env={})
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return load_config(str(path), env={})


@pytest.fixture
async def upstream():
    """An upstream serving JSON, HTML, broken JSON, slow answers; records requests."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []
    data = {"doc": {"state": "running", "items": [{"n": "a", "v": 1}, {"n": "b", "v": 2}]}}

    async def json_doc(request):
        seen.append(request)
        bodies.append(await request.read())
        return web.json_response(data["doc"])

    async def html(request):
        return web.Response(text="<html><body>login</body></html>", content_type="text/html")

    async def broken(request):
        return web.Response(text='{"a": ', content_type="application/json")

    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({})

    async def redirect(request):
        raise web.HTTPFound("/doc")

    async def status_503(request):
        return web.Response(status=503, text="down")

    app = web.Application()
    for route, handler in (("/doc", json_doc), ("/html", html), ("/broken", broken), ("/slow", slow),
                           ("/redirect", redirect), ("/503", status_503)):  # fmt: skip
        app.router.add_route("*", route, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.seen, server.bodies, server.data = seen, bodies, data  # type: ignore[attr-defined]
    yield server
    await server.close()


SIMPLE = """
modules:
  default:
    allowed_targets: ['*']
    metrics:
      - name: app_state
        path: '{.state}'
        value_map: {running: 1, paused: 0}
      - name: item
        type: object
        path: '{.items[*]}'
        labels: {name: '{.n}'}
        values: {value: '{.v}'}
"""


async def get_probe(client, **params):
    resp = await client.get("/probe", params=params, headers=params.pop("headers", None) or {})
    return resp.status, await resp.text()


async def test_default_module_and_400s(make_exporter, upstream):
    client = await make_exporter(cfg(SIMPLE))
    status, text = await get_probe(client, target=str(upstream.make_url("/doc")))
    assert status == 200 and "app_state 1\n" in text and 'item_value{name="b"} 2' in text
    assert (await get_probe(client, module="nope", target="http://x"))[0] == 400
    status, text = await get_probe(client, module="nope", target="http://x")
    assert text == 'Unknown module "nope"\n'
    status, text = await get_probe(client)
    assert (status, text) == (400, "Target parameter is missing\n")
    status, text = await get_probe(client, target="file:///etc/passwd")
    assert status == 400 and "http(s) URL" in text


@pytest.mark.parametrize(
    ("route", "reason", "status_code"),
    [("/html", "not_json", 200), ("/broken", "invalid_json", 200), ("/503", "http_503", 503),
     ("/redirect", "http_302", 302)],
)  # fmt: skip
async def test_broken_upstream_is_visible_on_the_same_response(make_exporter, upstream, route, reason, status_code):
    client = await make_exporter(cfg(SIMPLE))
    status, text = await get_probe(client, target=str(upstream.make_url(route)))
    assert status == 200
    assert "probe_success 0" in text
    assert f'probe_json_errors{{reason="{reason}"}} 1' in text
    assert f"probe_http_status_code {status_code}" in text
    assert "app_state" not in text.replace("# ", "")


async def test_missing_path_fails_the_probe_unless_allowed(make_exporter, upstream):
    upstream.data["doc"] = {"items": []}
    client = await make_exporter(cfg(SIMPLE))
    _, text = await get_probe(client, target=str(upstream.make_url("/doc")))
    assert 'probe_json_errors{reason="missing_path"} 1' in text and "probe_success 0" in text
    client = await make_exporter(cfg(SIMPLE.replace("value_map:", "allow_missing_key: true\n        value_map:")))
    _, text = await get_probe(client, target=str(upstream.make_url("/doc")))
    assert "probe_success 1" in text


async def test_unmapped_string_is_not_a_number(make_exporter, upstream):
    upstream.data["doc"]["state"] = "exploded"
    client = await make_exporter(cfg(SIMPLE))
    _, text = await get_probe(client, target=str(upstream.make_url("/doc")))
    assert 'probe_json_errors{reason="not_a_number"} 1' in text


async def test_a_value_that_is_not_a_number_is_never_copied_into_the_log(make_exporter, upstream, caplog):
    # An upstream may echo the module's credentials back where a number belongs; the log says what, not the text.
    upstream.data["doc"]["state"] = "Bearer s3cret-token-0123456789abcdef"
    client = await make_exporter(cfg(SIMPLE))
    with caplog.at_level(logging.INFO, logger="horizon_keda.probe"):
        _, text = await get_probe(client, target=str(upstream.make_url("/doc")))
    assert 'probe_json_errors{reason="not_a_number"} 1' in text
    assert "app_state: path: cannot convert a string of 36 characters to a number" in caplog.text
    assert "s3cret" not in caplog.text and "s3cret" not in text


async def test_scrape_timeout_header_bounds_the_upstream_call(make_exporter, upstream):
    client = await make_exporter(cfg(SIMPLE))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    _, text = await get_probe(
        client, target=str(upstream.make_url("/slow")), headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.6"}
    )
    assert loop.time() - t0 < 3.0
    assert 'probe_json_errors{reason="timeout"} 1' in text


CREDENTIALED = """
modules:
  default:
    http_client_config:
      basic_auth: {username: u, password: p}
    allowed_targets: ['*']
    metrics: [{name: x, path: '{.state}', value_map: {running: 1}}]
"""


def test_credentials_without_allowed_targets_are_refused_at_load():
    with pytest.raises(ConfigError) as exc:
        cfg(CREDENTIALED)
    assert exc.value.key == "modules.default.allowed_targets" and "carries credentials" in str(exc.value)
    for header in ("Authorization", "cookie"):
        with pytest.raises(ConfigError, match="carries credentials"):
            cfg(f"modules:\n  m:\n    headers: {{{header}: x}}\n    allowed_targets: ['*']\n    metrics: []\n")


async def test_allowed_targets_403_for_anything_else(make_exporter, upstream):
    base = str(upstream.make_url(""))
    text = CREDENTIALED + f"    allowed_targets: ['{base}/doc', '{base}/pre*', '~{base}/re[0-9]+']\n"
    client = await make_exporter(cfg(text))
    status, body = await get_probe(client, target=f"{base}/doc")
    assert status == 200 and "x 1\n" in body
    assert upstream.seen[-1].headers["Authorization"] == "Basic dTpw"
    for bad in ("http://evil.example/doc", f"{base}/doc2", f"{base}/re1x", f"{base}/pr"):
        status, body = await get_probe(client, target=bad)
        assert status == 403, bad
    assert (await get_probe(client, target=f"{base}/re12"))[0] == 200


def test_unknown_keys_are_errors_case_variants_warn():
    with pytest.raises(ConfigError) as exc:
        cfg("modules:\n  default:\n    allowed_targets: ['*']\n    metrics:\n      - {name: a, path: '{.a}', pth: x}\n")
    assert exc.value.key == "modules.default.metrics[0].pth" and "unknown key" in str(exc.value)
    c = cfg(
        "modules:\n  default:\n    allowed_targets: ['*']\n"
        "    metrics:\n      - {name: a, path: '{.a}', valueType: gauge}\n"
    )
    assert c.modules["default"].metrics[0].valuetype == "gauge"
    assert any("valueType" in w for w in c.warnings)
    with pytest.raises(ConfigError, match="not supported by horizon-keda"):
        cfg("modules:\n  d:\n    http_client_config: {oauth2: {}}\n    allowed_targets: ['*']\n    metrics: []\n")


HTTP2 = "modules:\n  m:\n    http_client_config: {enable_http2: true}\n    allowed_targets: ['*']\n    metrics: []\n"
HTTP2_WARNING = (
    "modules.m.http_client_config.enable_http2: true is ignored: probes use HTTP/1.1, the only version aiohttp's "
    "client speaks (json_exporter's own probes disable HTTP/2 too)"
)


def test_enable_http2_true_loads_with_a_warning_that_it_is_ignored():
    assert cfg(HTTP2).warnings == (f"test.yml: {HTTP2_WARNING}",)
    assert cfg(HTTP2.replace("true", "false")).warnings == ()
    with pytest.raises(ConfigError) as exc:
        cfg(HTTP2.replace("true", "'yes'"))
    assert str(exc.value) == "test.yml: modules.m.http_client_config.enable_http2: expected true or false, got 'yes'"


def test_enable_http2_warning_is_shown_by_check_config_and_logged_at_reload(tmp_path, capsys, caplog):
    path = tmp_path / "config.yml"
    path.write_text(HTTP2)
    assert main(["--config", str(path), "--check-config"], env={}) == 0
    assert f"  warning: {path}: {HTTP2_WARNING}" in capsys.readouterr().out.splitlines()
    reloader = ConfigReloader(str(path), Config(targets=()), env={})
    with caplog.at_level(logging.WARNING, logger="horizon_keda.config"):
        assert reloader.reload()
    assert [r.getMessage() for r in caplog.records] == [f"{path}: {HTTP2_WARNING}"]


async def test_object_keys_as_labels_from_horizon_processes_maps(make_exporter, upstream):
    _, _, masters = topology_a()
    upstream.data["doc"] = masters
    text = """
    modules:
      default:
        allowed_targets: ['*']
        metrics:
          - name: horizon_pool
            type: object
            valuetype: gauge
            path: '{.*.supervisors[*].processes.*}'
            labels:
              queue: '{@key}'
              supervisor: '{^^.name}'
            values: {processes: '{@}'}
          - name: horizon_supervisors
            path: '{.*.supervisors.length()}'
    """
    client = await make_exporter(cfg(text))
    _, body = await get_probe(client, target=str(upstream.make_url("/doc")))
    sup = "orders-horizon-7d9f8-x2kqz-Ab3d:supervisor"
    assert f'horizon_pool_processes{{queue="redis:default",supervisor="{sup}-1"}} 6' in body
    assert f'horizon_pool_processes{{queue="redis:high,low",supervisor="{sup}-priority"}} 2' in body
    assert "horizon_supervisors 3\n" in body
    assert "probe_success 1" in body


async def test_post_body_with_template_and_redirects(make_exporter, upstream):
    text = """
    modules:
      default:
        body: {content: '{"since": "{{ .since | first }}"}', templatize: true}
        allowed_targets: ['*']
        metrics: [{name: s, path: '{.state}', value_map: {running: 1}}]
      follow:
        http_client_config: {follow_redirects: true}
        allowed_targets: ['*']
        metrics: [{name: s, path: '{.state}', value_map: {running: 1}}]
    """
    client = await make_exporter(cfg(text))
    _, body = await get_probe(client, target=str(upstream.make_url("/doc")), since="5m")
    assert upstream.seen[-1].method == "POST" and json.loads(upstream.bodies[-1]) == {"since": "5m"}
    _, body = await get_probe(client, module="follow", target=str(upstream.make_url("/redirect")))
    assert "s 1\n" in body and "probe_success 1" in body
    with pytest.raises(ConfigError, match=r"only \{\{ .param \| first \}\}"):
        cfg(
            "modules:\n  d:\n    body: {content: '{{ now }}', templatize: true}\n    allowed_targets: ['*']\n"
            "    metrics: []\n"
        )


async def test_reload_on_file_change_and_sighup_keeps_old_modules_on_error(make_exporter, upstream, tmp_path):
    config = cfg(SIMPLE, tmp_path)
    path = tmp_path / "config.yml"
    client = await make_exporter(config)
    target = str(upstream.make_url("/doc"))
    assert "app_state 1" in (await get_probe(client, target=target))[1]
    path.write_text(textwrap.dedent(SIMPLE).replace("app_state", "app_status"))
    os.utime(path, ns=(10**18, 10**18))
    async with asyncio.timeout(10):
        while "app_status 1" not in (await get_probe(client, target=target))[1]:
            await asyncio.sleep(0.1)
    # Same size and mtime: the watcher cannot see this change, only SIGHUP reloads it.
    path.write_text(textwrap.dedent(SIMPLE).replace("app_state", "app_statux"))
    os.utime(path, ns=(10**18, 10**18))
    await asyncio.sleep(1.5)
    assert "app_status 1" in (await get_probe(client, target=target))[1]
    os.kill(os.getpid(), signal.SIGHUP)
    async with asyncio.timeout(10):
        while "app_statux 1" not in (await get_probe(client, target=target))[1]:
            await asyncio.sleep(0.05)
    path.write_text("modules: {default: {metrics: [{name: bad name, path: x}]}}\n")
    async with asyncio.timeout(10):
        while "horizon_exporter_config_last_reload_successful 0.0" not in await (await client.get("/metrics")).text():
            await asyncio.sleep(0.05)
    assert "app_statux 1" in (await get_probe(client, target=target))[1]
