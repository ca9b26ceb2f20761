"""The web config file (`--web-config-file`): exporter-toolkit's format parsed, and every refusal naming its key."""

from __future__ import annotations

import ssl

import bcrypt
import pytest
import yaml

from exporter.webconfig import load_web_config, parse_duration, parse_web_config, server_context
from exporter.yamlreader import ConfigError
from tests.certs import CA

HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()


def parse(text: str):
    return parse_web_config(yaml.safe_load(text), "web.yml")


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_the_formats_own_sample_parses_with_every_section():
    config = parse(f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  client_allowed_sans: [prometheus.monitoring.svc]
  min_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    x-content-type-options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  prometheus: "{HASH}"
rate_limit:
  interval: 100ms
  burst: 20
""")
    assert config.tls is not None
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.tls.min_version == "TLS13" and config.tls.max_version == "TLS13"
    assert config.tls.files == ("server.crt", "server.key", "ca.crt")
    # Canonical names; a blank value unsets the header.
    assert config.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                              "Strict-Transport-Security": "max-age=31536000"}  # fmt: skip
    assert config.users == {"prometheus": HASH}
    assert config.rate_limit is not None and config.rate_limit.interval == 0.1 and config.rate_limit.burst == 20
    assert config.http2 is False
    assert config.files == ("web.yml", "server.crt", "server.key", "ca.crt")


def test_an_empty_file_is_plain_http_without_authentication():
    config = parse_web_config(None, "web.yml")
    assert config.tls is None and not config.users and not config.headers and config.rate_limit is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls_config: {}", "web.yml: tls_config: unknown key; expected one of: tls_server_config"),
        ("tls_server_config: {cert_file: a.crt}", "tls_server_config.key_file: missing"),
        ("tls_server_config: {key_file: a.key}", "tls_server_config.cert_file: missing"),
        ("tls_server_config: {cert_file: a, key_file: b, cert: c}", "tls_server_config.cert: give cert or cert_file"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert, client_ca_file: c}",
            "RequireAnyClientCert accepts client certificates nobody verified",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}",
            "client_auth_type: expected one of NoClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}",
            "client_ca_file is set but client_auth_type is NoClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}",
            "tls_server_config.client_ca_file: client_auth_type RequireAndVerifyClientCert verifies",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: VerifyClientCertIfGiven, "
            "client_ca_file: c, client_allowed_sans: [x]}",
            "client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, max_version: TLS12}",
            "max_version: TLS12 is below min_version TLS13",
        ),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: SSL3}", "min_version: expected one of TLS10"),
        (
            "tls_server_config: {cert_file: a, key_file: b, cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}",
            "tls_server_config.cipher_suites[0]: expected one of TLS_ECDHE",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [X25519, CurveP256]}",
            "curve_preferences: this exporter can pin one curve",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, curve_preferences: [P256]}",
            "curve_preferences[0]: expected one of CurveP256",
        ),
        (
            "http_server_config: {headers: {X-Powered-By: me}}",
            "http_server_config.headers.X-Powered-By: this header cannot be set",
        ),
        ("http_server_config: {headers: {X-Frame-Options: allow}}", "X-Frame-Options: expected deny or sameorigin"),
        ("http_server_config: {http2: yes please}", "http_server_config.http2: expected true or false"),
        ("rate_limit: {interval: 1 second, burst: 3}", "rate_limit.interval: expected a duration"),
        ("rate_limit: {interval: 1s, burst: 0}", "rate_limit.burst: expected an integer >= 1"),
        ("basic_auth_users: [alice]", "basic_auth_users: expected a mapping"),
        ("tls_server_config: [a]", "tls_server_config: expected a mapping"),
    ],
)
def test_refusals_name_the_key_and_what_was_expected(text, expected):
    assert expected in refused(text)


def test_a_password_in_place_of_a_hash_is_refused_without_being_shown():
    message = refused("basic_auth_users:\n  alice: correct-horse-battery-staple\n")
    assert "basic_auth_users.alice: expected a bcrypt hash" in message
    assert "correct-horse" not in message


def test_a_user_name_with_a_colon_is_refused():
    assert "a user name must be non-empty and without ':'" in refused(f'basic_auth_users:\n  "a:b": "{HASH}"\n')


def test_hashes_of_every_bcrypt_prefix_are_accepted():
    body = HASH[4:]
    for prefix in ("$2a$", "$2b$", "$2y$"):
        assert parse(f'basic_auth_users:\n  u: "{prefix}{body}"\n').users["u"] == prefix + body


def test_durations_in_gos_syntax():
    assert parse_duration("0") == 0
    assert parse_duration("1m30s") == 90
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1.5h") == 5400
    for bad in ("", "10", "1d", "s", "1s ", "-1s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_rate_limit_with_interval_zero_is_off():
    assert parse("rate_limit: {interval: 0, burst: 0}").rate_limit is None


def test_load_checks_the_files_it_names(tmp_path):
    ca = CA()
    good_cert, good_key = ca.issue("exporter").write(tmp_path, "server")
    _, other_key = ca.issue("other").write(tmp_path, "other")
    path = tmp_path / "web.yml"

    path.write_text(f"tls_server_config: {{cert_file: {good_cert}, key_file: {tmp_path / 'missing.key'}}}\n")
    with pytest.raises(ConfigError, match=r"tls_server_config.key_file: file not found: .*missing.key"):
        load_web_config(str(path))

    path.write_text(f"tls_server_config: {{cert_file: {good_cert}, key_file: {other_key}}}\n")
    with pytest.raises(ConfigError, match=r"tls_server_config.cert_file: cannot load the server certificate .*"):
        load_web_config(str(path))

    (tmp_path / "ca.crt").write_text("not a certificate\n")
    ca_file = tmp_path / "ca.crt"
    path.write_text(f"tls_server_config: {{cert_file: {good_cert}, key_file: {good_key}, "
                    f"client_auth_type: RequireAndVerifyClientCert, client_ca_file: {ca_file}}}\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"tls_server_config.client_ca_file: cannot load CA certificates"):
        load_web_config(str(path))

    with pytest.raises(ConfigError, match=r"nowhere.yml: cannot read the web config file"):
        load_web_config(str(tmp_path / "nowhere.yml"))

    path.write_text("basic_auth_users: {a: [unclosed\n")
    with pytest.raises(ConfigError, match=r"web.yml: not valid YAML"):
        load_web_config(str(path))


def test_inline_pem_loads_like_files(tmp_path):
    ca = CA()
    pem = ca.issue("exporter")
    config = parse_web_config(
        {"tls_server_config": {"cert": pem.cert.decode(), "key": pem.key.decode(),
                               "client_auth_type": "VerifyClientCertIfGiven", "client_ca": ca.pem.decode()}},
        "web.yml",
    )  # fmt: skip
    assert config.tls is not None and config.tls.files == ()
    ctx = server_context(config.tls)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert "PRIVATE KEY" not in repr(config)  # a log line or a traceback showing the config shows no key


def test_server_context_applies_versions_suites_and_client_verification(tmp_path):
    ca = CA()
    cert, key = ca.issue("exporter").write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    config = parse_web_config(
        {"tls_server_config": {"cert_file": cert, "key_file": key, "client_auth_type": "RequireAndVerifyClientCert",
                               "client_ca_file": str(tmp_path / "ca.crt"), "min_version": "TLS12",
                               "max_version": "TLS12", "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]}},
        "web.yml",
    )  # fmt: skip
    assert config.tls is not None
    ctx = server_context(config.tls)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-AES256-GCM-SHA384"]


def test_a_file_cert_with_an_inline_key_that_does_not_match_names_both(tmp_path):
    ca = CA()
    cert, _ = ca.issue("exporter").write(tmp_path, "server")
    other = ca.issue("other")
    config = parse_web_config({"tls_server_config": {"cert_file": cert, "key": other.key.decode()}}, "web.yml")
    assert config.tls is not None
    with pytest.raises(Exception, match=r"server.crt with the key \(inline key\)") as info:
        server_context(config.tls)
    assert "PRIVATE KEY" not in str(info.value)
