"""Targets and json_exporter modules read the blocks they share — headers, basic auth, tokens, TLS — by one set of
rules: `${VAR}` in file paths, the same checks, and the same error text for the same mistake."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from exporter.config import Config, parse_config
from exporter.http import Authorization, BasicAuth
from exporter.yamlreader import ConfigError
from tests.certs import CA
from tests.test_json_probe_hardening import probe, upstreams  # noqa: F401 - upstreams is a fixture

# Where each shared block sits: a target's keys and `tls:`, a module's `http_client_config:` and `tls_config:`.
TARGET, TARGET_TLS = "targets[0]", "targets[0].tls"
MODULE, MODULE_TLS = "modules.m.http_client_config", "modules.m.http_client_config.tls_config"


def load(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(yaml.safe_load(textwrap.dedent(text)), "test.yml", env=env or {})


def target(auth: str = "", tls: str = "", headers: str = "") -> str:
    lines = ["targets:", "  - {microservice: o, url: 'https://o/horizon'"]
    lines[1] += "".join(f", {part}" for part in (auth, f"tls: {tls}" if tls else "", headers) if part) + "}"
    return "\n".join(lines) + "\n"


def module(auth: str = "", tls: str = "", headers: str = "") -> str:
    http = ", ".join(part for part in (auth, f"tls_config: {tls}" if tls else "") if part)
    return textwrap.dedent(f"""\
        modules:
          m:
            allowed_targets: ['*']
            metrics: []
            allowed_targets: ['https://o/*']
            {headers}
            http_client_config: {{{http}}}
        """)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        load(text)
    return exc.value


def message(exc: ConfigError) -> str:
    """The text after `file: key: `."""
    return str(exc).removeprefix(f"{exc.source}: {exc.key}: ")


# --- ${VAR} in file paths ---------------------------------------------------------------------------------------


def test_env_is_expanded_in_a_modules_credential_files_as_in_a_targets():
    env = {"SECRETS": "/run/secrets/horizon"}
    cfg = load(target("bearer_token_file: '${SECRETS}/token'") + module("bearer_token_file: '${SECRETS}/token'"), env)
    assert cfg.targets[0].bearer_token_file == "/run/secrets/horizon/token"
    assert cfg.modules["m"].http.authorization == Authorization("Bearer", None, "/run/secrets/horizon/token")
    cfg = load(module("basic_auth: {username: u, password_file: '${SECRETS}/pw'}"), env)
    assert cfg.modules["m"].http.basic_auth == BasicAuth("u", None, "/run/secrets/horizon/pw")
    cfg = load(module("authorization: {type: Token, credentials_file: '${SECRETS}/t'}"), env)
    assert cfg.modules["m"].http.authorization == Authorization("Token", None, "/run/secrets/horizon/t")


def test_env_is_expanded_in_tls_files_of_targets_and_modules(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(CA().pem)
    cfg = load(target(tls="{ca_file: '${CERTS}/ca.pem'}") + module(tls="{ca_file: '${CERTS}/ca.pem'}"),
               {"CERTS": str(tmp_path)})  # fmt: skip
    assert cfg.targets[0].tls.ca_file == cfg.modules["m"].http.tls.ca_file == str(ca)


def test_an_unset_variable_in_a_modules_file_path_names_the_key():
    exc = error(module("bearer_token_file: '${NOPE}/token'"))
    assert exc.key == f"{MODULE}.bearer_token_file"
    assert message(exc) == "environment variable NOPE is not set (write ${NOPE:-} for empty)"


async def test_a_modules_token_file_found_through_env_is_sent(make_exporter, upstreams, tmp_path):  # noqa: F811
    (tmp_path / "token").write_text("t0ken\n")
    up = await upstreams()
    up.routes["/doc"] = '{"x": 1}'
    text = module("bearer_token_file: '${SECRETS}/token'").replace("metrics: []", "metrics: [{name: x, path: '{.x}'}]")
    client = await make_exporter(load(text.replace("https://o/*", up.url("/*")), {"SECRETS": str(tmp_path)}))
    status, body = await probe(client, module="m", target=up.url("/doc"))
    assert status == 200 and "\nx 1\n" in f"\n{body}"
    assert up.requests[-1][2]["Authorization"] == "Bearer t0ken"


# --- basic auth ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "key", "expected"),
    [
        ("basic_auth: {username: u, password: p, password_file: /pw}", "basic_auth.password_file",
         "give at most one of password or password_file"),
        ("basic_auth: {}", "basic_auth.username", "expected a username, a password or a password_file"),
        ("basic_auth: {user: u}", "basic_auth.user", "unknown key; expected one of: username, password, password_file"),
        ("basic_auth: {username: u, password_file: ''}", "basic_auth.password_file", "expected a file path, got ''"),
        ("basic_auth: {username: [u]}", "basic_auth.username", "expected a string, got list"),
    ],
)  # fmt: skip
def test_a_bad_basic_auth_block_is_the_same_error_in_a_target_and_a_module(block, key, expected):
    in_target, in_module = error(target(block)), error(module(block))
    assert (in_target.key, in_module.key) == (f"{TARGET}.{key}", f"{MODULE}.{key}")
    assert message(in_target) == message(in_module) == expected


def test_basic_auth_follows_prometheus_rules_in_both():
    # Prometheus' basic_auth takes a username and at most one of password or password_file; either may be empty.
    for block, expected in (("{username: u}", BasicAuth("u")), ("{password: p}", BasicAuth("", "p"))):
        cfg = load(target(f"basic_auth: {block}") + module(f"basic_auth: {block}"))
        assert cfg.targets[0].basic_auth == cfg.modules["m"].http.basic_auth == expected


# --- one source of the Authorization header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "headers", "key", "expected"),
    [
        ("basic_auth: {username: u, password: p}, bearer_token_file: /t", "", "bearer_token_file",
         "give only one of bearer_token_file or basic_auth: both set the Authorization header"),
        ("bearer_token_file: /t", "headers: {Authorization: Bearer x}", "bearer_token_file",
         "give only one of bearer_token_file or an Authorization header: both set the Authorization header"),
        ("basic_auth: {username: u, password: p}", "headers: {authorization: Bearer x}", "basic_auth",
         "give only one of basic_auth or an Authorization header: both set the Authorization header"),
    ],
)  # fmt: skip
def test_two_sources_of_the_authorization_header_are_the_same_error_in_a_target_and_a_module(
    auth, headers, key, expected
):
    in_target, in_module = error(target(auth, headers=headers)), error(module(auth, headers=headers))
    assert (in_target.key, in_module.key) == (f"{TARGET}.{key}", f"{MODULE}.{key}")
    assert message(in_target) == message(in_module) == expected


def test_a_modules_authorization_block_takes_one_credential_and_no_basic_type():
    exc = error(module("authorization: {credentials: c, credentials_file: /c}"))
    assert exc.key == f"{MODULE}.authorization.credentials_file"
    assert message(exc) == "give at most one of credentials or credentials_file"
    exc = error(module("authorization: {type: Basic, credentials: c}"))
    assert exc.key == f"{MODULE}.authorization.type"
    assert message(exc) == "expected a type other than Basic, got 'Basic': use basic_auth instead"


# --- TLS ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path):
    ca, other = CA(), CA()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, key = ca.issue("exporter", server=False).write(tmp_path, "client")
    _, wrong_key = other.issue("someone-else", server=False).write(tmp_path, "other")
    return {"garbage": str(garbage), "cert": cert, "key": key, "wrong_key": wrong_key}


@pytest.mark.parametrize(
    ("block", "key", "expected"),
    [
        ("{{cert_file: {cert}}}", "cert_file", "cert_file and key_file go together"),
        ("{{ca_file: /nonexistent/ca.pem}}", "ca_file", "file not found: /nonexistent/ca.pem"),
        ("{{ca_file: ''}}", "ca_file", "expected a file path, got ''"),
        ("{{ca_file: {garbage}}}", "ca_file",
         "cannot load CA certificates from {garbage}: [X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found"),
        ("{{cert_file: {cert}, key_file: {wrong_key}}}", "cert_file",
         "cannot load the client certificate {cert} with the key {wrong_key}: [X509: KEY_VALUES_MISMATCH] key values "
         "mismatch"),
        ("{{insecure_skip_verify: yes-please}}", "insecure_skip_verify", "expected true or false, got 'yes-please'"),
    ],
)  # fmt: skip
def test_a_bad_tls_block_is_the_same_error_in_a_target_and_a_module(tls_files, block, key, expected):
    block, expected = block.format(**tls_files), expected.format(**tls_files)
    in_target, in_module = error(target(tls=block)), error(module(tls=block))
    assert (in_target.key, in_module.key) == (f"{TARGET_TLS}.{key}", f"{MODULE_TLS}.{key}")
    assert message(in_target) == message(in_module) == expected


def test_server_name_and_min_version_are_a_modules_only(tls_files):
    cfg = load(module(tls="{server_name: horizon.internal, min_version: TLS12}"))
    assert (cfg.modules["m"].http.tls.server_name, cfg.modules["m"].http.tls.min_version) == (
        "horizon.internal", "TLS12"
    )  # fmt: skip
    exc = error(target(tls="{server_name: horizon.internal}"))
    assert exc.key == f"{TARGET_TLS}.server_name" and message(exc).startswith("unknown key")
