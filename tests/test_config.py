"""Configuration: YAML with env interpolation, flags, and errors that name the file, the key and the expectation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from cryptography.hazmat.primitives import serialization

from exporter.cli import build_parser, main, resolve_config, status_page_url
from exporter.config import load_config, redact_url
from exporter.mapping import Fixed, Pattern
from exporter.yamlreader import ConfigError
from tests.certs import CA

ISSUE_EXAMPLE = """\
poll_interval: 1
targets:
  - microservice: orders                      # topology (a)
    url: http://orders.shop.svc/horizon
    headers: {X-Monitoring-Token: "${TOKEN}"}
    bearer_token_file: /var/run/secrets/horizon/token
  - url: http://core.shop.svc/horizon         # topology (b)
    microservices_from: supervisor            # or: queue
    pattern: '^(?P<microservice>[a-z0-9-]+)-worker$'
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_issue_example_loads(tmp_path):
    cfg = load_config(write(tmp_path, ISSUE_EXAMPLE), env={"TOKEN": "abc"})
    orders, core = cfg.targets
    assert orders.rule == Fixed("orders") and orders.headers == {"X-Monitoring-Token": "abc"}
    assert orders.bearer_token_file == "/var/run/secrets/horizon/token"
    assert isinstance(core.rule, Pattern) and core.rule.source == "supervisor"
    assert core.name == "core.shop.svc/horizon"
    assert cfg.poll_interval == 1.0 and cfg.stale_after == 60.0


def test_env_interpolation_defaults_and_escape(tmp_path):
    path = write(tmp_path, """\
        targets:
          - microservice: orders
            url: ${BASE:-http://fallback}/horizon
            headers: {X-Price: "$$5"}
        """)  # fmt: skip
    (t,) = load_config(path, env={}).targets
    assert t.url == "http://fallback/horizon" and t.headers == {"X-Price": "$5"}


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("targets:\n  - microservice: orders\n    url: http://o/horizon\n    header: {}\n", "targets[0].header",
         "unknown key"),
        ("targets:\n  - url: http://o/horizon\n", "targets[0].microservice", "needs microservice"),
        ("targets:\n  - microservice: o\n    url: ftp://o\n", "targets[0].url", "expected an http(s) URL"),
        ("targets:\n  - microservice: o\n    url: http://u:p@o/horizon\n", "targets[0].url", "credentials in the URL"),
        ("targets:\n  - url: http://o\n    microservices_from: pod\n    pattern: x\n", "targets[0].microservices_from",
         "expected supervisor or queue, got 'pod'"),
        ("targets:\n  - url: http://o\n    microservices_from: queue\n    pattern: '(x'\n", "targets[0].pattern",
         "invalid regular expression"),
        ("targets:\n  - url: http://o\n    microservices_from: queue\n    pattern: '^x$'\n", "targets[0].pattern",
         "named group (?P<microservice>"),
        ("poll_interval: fast\ntargets: []\n", "poll_interval", "expected a number, got 'fast'"),
        ("poll_interval: 0\ntargets: []\n", "poll_interval", "expected a number >= 0.05"),
        ("targets:\n  - microservice: o\n    url: http://o\n    headers: {X: '${NOPE}'}\n", "targets[0].headers.X",
         "environment variable NOPE is not set"),
        ("targets:\n  - microservice: o\n    url: http://o\n    bearer_token_file: /t\n"
         "    headers: {Authorization: x}\n",
         "targets[0].bearer_token_file", "only one of"),
        ("targets:\n  - microservice: o\n    url: http://o\n    tls: {ca_file: /nonexistent/ca.pem}\n",
         "targets[0].tls.ca_file", "file not found"),
        ("targets: {a: 1}\n", "targets", "expected a list"),
    ],
)  # fmt: skip
def test_bad_config_names_file_key_and_expectation(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert exc.value.source == path and exc.value.key == key
    assert expected in str(exc.value) and str(exc.value).startswith(f"{path}: {key}: ")


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "targets: [\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "nope.yml"))


def test_flags_override_env_override_file(tmp_path):
    path = write(tmp_path, "poll_interval: 5\nlisten: 127.0.0.1:1\ntargets:\n  - microservice: a\n    url: http://a\n")
    args = build_parser().parse_args(["--config", path, "--poll-interval", "2", "--target", "b=http://b/horizon"])
    cfg = resolve_config(args, {"HORIZON_EXPORTER_LISTEN": "127.0.0.1:2", "HORIZON_EXPORTER_POLL_INTERVAL": "3"})
    assert cfg.poll_interval == 2.0 and cfg.listen == "127.0.0.1:2"
    assert [t.name for t in cfg.targets] == ["a", "b"]


def test_stats_interval_from_file_env_and_flag(tmp_path):
    path = write(tmp_path, "stats_interval: 30\ntargets:\n  - microservice: a\n    url: http://a\n")
    assert resolve_config(build_parser().parse_args(["--config", path]), {}).stats_interval == 30.0
    env = {"HORIZON_EXPORTER_STATS_INTERVAL": "0"}  # 0: at every poll
    assert resolve_config(build_parser().parse_args(["--config", path]), env).stats_interval == 0.0
    args = build_parser().parse_args(["--config", path, "--stats-interval", "5"])
    assert resolve_config(args, env).stats_interval == 5.0
    with pytest.raises(ConfigError, match=r"--stats-interval: expected a number ≥ 0, got -1"):
        resolve_config(build_parser().parse_args(["--config", path, "--stats-interval", "-1"]), {})
    bad = write(tmp_path, "stats_interval: -2\ntargets:\n  - microservice: a\n    url: http://a\n")
    with pytest.raises(ConfigError, match="stats_interval"):
        resolve_config(build_parser().parse_args(["--config", bad]), {})


def test_duplicate_microservice_and_no_targets_are_errors(tmp_path):
    args = build_parser().parse_args(["--target", "a=http://a", "--target", "a=http://b"])
    with pytest.raises(ConfigError, match="duplicate target name 'a'"):
        resolve_config(args, {})
    with pytest.raises(ConfigError, match="no targets"):
        resolve_config(build_parser().parse_args([]), {})


def test_bad_target_flag():
    with pytest.raises(ConfigError, match="expected MICROSERVICE=URL"):
        resolve_config(build_parser().parse_args(["--target", "orders"]), {})


def test_cli_exits_2_before_serving_on_bad_config(tmp_path, capsys):
    path = write(tmp_path, "targets:\n  - microservice: o\n    url: http://o\n    timeout: -1\n")
    assert main(["--config", path], env={}) == 2
    err = capsys.readouterr().err
    assert f"{path}: targets[0].timeout: expected a number >= 0.01, got -1" in err


def test_check_config_prints_summary(tmp_path, capsys):
    path = write(tmp_path, ISSUE_EXAMPLE)
    assert main(["--config", path, "--check-config"], env={"TOKEN": "x"}) == 0
    out = capsys.readouterr().out
    assert "target orders: http://orders.shop.svc/horizon -> microservice orders" in out
    assert "microservices from supervisor names" in out


def test_console_script_help_and_version():
    run = subprocess.run([sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True, check=True)
    assert run.stdout.strip().startswith("horizon-exporter ")
    helptext = subprocess.run([sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True).stdout
    for flag in ("--config", "--listen", "--poll-interval", "--target", "--check-config", "HORIZON_EXPORTER_"):
        assert flag in helptext


def _tls_target(tmp_path, tls: str) -> str:
    return write(tmp_path, f"targets:\n  - microservice: o\n    url: https://o/horizon\n    tls: {tls}\n")


def test_tls_files_that_exist_but_do_not_load_are_config_errors(tmp_path):
    ca, other = CA(), CA()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cert, _ = ca.issue("exporter", server=False).write(tmp_path, "client")
    _, wrong_key = other.issue("someone-else", server=False).write(tmp_path, "other")
    key = serialization.load_pem_private_key(ca.issue("x", server=False).key, None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    ))  # fmt: skip
    cases = [
        (f"{{ca_file: {garbage}}}", "targets[0].tls.ca_file",
         f"cannot load CA certificates from {garbage}: [X509: NO_CERTIFICATE_OR_CRL_FOUND]"),
        (f"{{cert_file: {cert}, key_file: {wrong_key}}}", "targets[0].tls.cert_file",
         f"cannot load the client certificate {cert} with the key {wrong_key}: [X509: KEY_VALUES_MISMATCH]"),
        (f"{{cert_file: {cert}, key_file: {garbage}}}", "targets[0].tls.cert_file",
         f"cannot load the client certificate {cert} with the key {garbage}: [SSL] PEM lib"),
        (f"{{cert_file: {cert}, key_file: {encrypted}}}", "targets[0].tls.key_file",
         f"{encrypted} is passphrase-protected; give an unencrypted key"),
    ]  # fmt: skip
    for tls, key_path, expected in cases:
        path = _tls_target(tmp_path, tls)
        with pytest.raises(ConfigError) as exc:
            load_config(path, env={})
        assert exc.value.key == key_path and str(exc.value).startswith(f"{path}: {key_path}: {expected}")
        assert "_ssl.c" not in str(exc.value)


def test_check_config_exits_2_on_a_garbage_ca_file(tmp_path, capsys):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    path = _tls_target(tmp_path, f"{{ca_file: {garbage}}}")
    assert main(["--config", path, "--check-config"], env={}) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"horizon-exporter: configuration error: {path}: targets[0].tls.ca_file: cannot load CA")


def test_good_tls_files_load(tmp_path):
    ca = CA()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    cert, key = ca.issue("exporter", server=False).write(tmp_path, "client")
    path = _tls_target(tmp_path, f"{{ca_file: {tmp_path / 'ca.pem'}, cert_file: {cert}, key_file: {key}}}")
    (t,) = load_config(path, env={}).targets
    assert t.tls.ca_file == str(tmp_path / "ca.pem")


TIMEOUTS = """\
timeout: 5
targets:
  - microservice: inherits
    url: http://a/horizon
  - microservice: own
    url: http://b/horizon
    timeout: 3
"""


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, {"inherits": 5.0, "own": 3.0, "flag": 5.0, "*": 5.0}),
        (["--timeout", "2"], {}, {"inherits": 2.0, "own": 3.0, "flag": 2.0, "*": 2.0}),
        ([], {"HORIZON_EXPORTER_TIMEOUT": "7"}, {"inherits": 7.0, "own": 3.0, "flag": 7.0, "*": 7.0}),
        (["--timeout", "2"], {"HORIZON_EXPORTER_TIMEOUT": "7"}, {"inherits": 2.0, "own": 3.0, "flag": 2.0, "*": 2.0}),
    ],
)
def test_timeout_flag_and_env_replace_the_files_default_but_not_a_targets_own(tmp_path, argv, env, expected):
    path = write(tmp_path, TIMEOUTS)
    args = build_parser().parse_args(["--config", path, "--target", "flag=http://c/horizon", *argv])
    cfg = resolve_config(args, env)
    assert {t.name: t.timeout for t in cfg.targets} | {"*": cfg.timeout} == expected


def test_timeout_flag_does_not_hide_a_bad_timeout_in_the_file(tmp_path):
    path = write(tmp_path, "timeout: soon\ntargets: []\n")
    with pytest.raises(ConfigError, match="timeout: expected a number, got 'soon'"):
        resolve_config(build_parser().parse_args(["--config", path, "--timeout", "2"]), {})


def test_bad_log_level_variable_is_one_line_and_exit_2():
    env = dict(os.environ, HORIZON_EXPORTER_LOG_LEVEL="loud")
    run = subprocess.run(
        [sys.executable, "-m", "exporter", "--target", "orders=http://127.0.0.1:9/horizon", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "horizon-exporter: configuration error: HORIZON_EXPORTER_LOG_LEVEL: "
        "expected one of debug, info, warning, error, got 'loud'"
    ]


def test_log_level_variable_is_case_insensitive():
    args = build_parser().parse_args(["--target", "a=http://a/horizon"])
    resolve_config(args, {"HORIZON_EXPORTER_LOG_LEVEL": "WARNING"})
    assert args.log_level == "warning"


SECRETS = ("hunter2", "abc123")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://user:hunter2@o/horizon?token=abc123", "expected an http(s) URL of Horizon's base path, "
         "got 'ftp://***@o/horizon?token=***'"),
        ("https://o/horizon?token=abc123&x", "expected no query or fragment, got 'https://o/horizon?token=***&***'"),
        ("https://o/horizon#access_token=abc123", "expected no query or fragment, got 'https://o/horizon#***'"),
        ("user:hunter2@o/horizon", "expected an http(s) URL of Horizon's base path, got '***@o/horizon'"),
    ],
)  # fmt: skip
def test_config_errors_redact_userinfo_and_query_values(tmp_path, url, expected):
    path = write(tmp_path, f"targets:\n  - microservice: o\n    url: '{url}'\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={})
    assert str(exc.value) == f"{path}: targets[0].url: {expected}"


@pytest.mark.parametrize(
    "flag",
    [
        "http://user:hunter2@h/horizon",  # no MICROSERVICE= at all
        "http://user:hunter2@h/horizon?token=abc123",  # the query's = splits it
        "orders=ftp://user:hunter2@h/horizon?token=abc123",
        "=http://user:hunter2@h/horizon",
    ],
)
def test_target_flag_errors_redact_the_url(flag, capsys):
    assert main(["--target", flag], env={}) == 2
    err = capsys.readouterr().err
    assert "configuration error: --target" in err and "***@h/horizon" in err
    for secret in SECRETS:
        assert secret not in err


@pytest.mark.parametrize(
    "url", ["http://localhost:9109/", "https://status.example/horizon-keda?x=1", "http://[::1]:9109/"]
)
def test_status_page_url_takes_http_urls_from_the_flag_or_the_variable(url: str):
    assert status_page_url(build_parser().parse_args(["--status-page-url", url]), {}) == url
    assert status_page_url(build_parser().parse_args([]), {"HORIZON_EXPORTER_STATUS_PAGE_URL": url}) == url
    assert status_page_url(build_parser().parse_args([]), {}) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:9109", "--status-page-url: expected an http(s) URL, got 'localhost:9109'"),
        ("javascript:alert(1)", "--status-page-url: expected an http(s) URL, got 'javascript:alert(1)'"),
        ("http://host:port/", "--status-page-url: expected an http(s) URL, got 'http://host:port/'"),
        ("http:///nohost", "--status-page-url: expected an http(s) URL"),
        ("https://user:pw@host/", "--status-page-url: expected a URL without credentials"),
    ],
)
def test_a_bad_status_page_url_exits_2_naming_the_flag(url: str, message: str, capsys):
    assert main(["--target", "a=http://a/horizon", "--status-page-url", url], env={}) == 2
    err = capsys.readouterr().err
    assert message in err and "pw" not in err


def test_a_bad_status_page_url_variable_is_named():
    with pytest.raises(ConfigError, match="HORIZON_EXPORTER_STATUS_PAGE_URL: expected an http"):
        status_page_url(build_parser().parse_args([]), {"HORIZON_EXPORTER_STATUS_PAGE_URL": "ftp://x"})


def test_a_password_holding_url_delimiters_is_never_echoed():
    """A base64 password often holds "/": no parse can find where such userinfo ends, so all before the last "@"
    goes."""
    for url in ("http://admin:pa/ss@exporter:9108", "http://admin:p#ss@host/", "http://admin:p?ss@host/x?t=1"):
        shown = redact_url(url)
        assert "pa/ss" not in shown and "p#ss" not in shown and "p?ss" not in shown and shown.startswith("http://***@")
