"""Where a shard's ordinal and the number of shards come from — flags, environment, a StatefulSet pod's name or
pod-index label, the file — which wins, and the exit-2 messages that name the flag or variable at fault."""

from __future__ import annotations

import pytest

from exporter.cli import build_parser, main, resolve_config
from exporter.sharding import owner
from exporter.yamlreader import ConfigError
from tests.test_sharding import names


def resolve(argv: list[str], env: dict[str, str], *, reload: bool = False):  # type: ignore[no-untyped-def]
    return resolve_config(build_parser().parse_args(["--target", "orders=http://o/horizon", *argv]), env,
                          reload=reload)  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, (None, 1, 0)),
        (["--shard", "1", "--total-shards", "3"], {}, (1, 3, 1)),
        ([], {"HORIZON_EXPORTER_SHARD": "2", "HORIZON_EXPORTER_TOTAL_SHARDS": "3"}, (2, 3, 2)),
        (["--shard", "0"], {"HORIZON_EXPORTER_SHARD": "2", "HORIZON_EXPORTER_TOTAL_SHARDS": "3"}, (0, 3, 0)),
        (["--total-shards", "4"], {"POD_NAME": "horizon-keda-exporter-3"}, (3, 4, 3)),
        (["--total-shards", "4", "--pod-name", "x-1"], {"POD_NAME": "horizon-keda-exporter-3"}, (1, 4, 1)),
        (["--total-shards", "4"], {"POD_INDEX": "2"}, (2, 4, 2)),
        (["--total-shards", "4"], {"POD_NAME": "exporter-2", "POD_INDEX": "2"}, (2, 4, 2)),
        (["--total-shards", "4", "--shard", "1"], {"POD_NAME": "exporter-2", "POD_INDEX": "3"}, (1, 4, 1)),
        # Unsharded, a pod name's digits mean nothing (a Deployment's random suffix may be all digits).
        ([], {"POD_NAME": "horizon-keda-7d9f8-24567"}, (24567, 1, 0)),
    ],
)  # fmt: skip
def test_shard_and_total_sources(argv, env, expected):
    cfg = resolve(argv, env)
    assert (cfg.shard, cfg.total_shards, cfg.sharding.effective_shard) == expected


def test_the_files_total_and_grace_the_flag_wins(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("poll_interval: 2\nsharding: {total_shards: 3, handoff_grace: 45}\n"
                    "targets:\n  - {microservice: a, url: 'http://a/horizon'}\n")  # fmt: skip
    args = ["--config", str(path), "--shard", "2"]
    cfg = resolve_config(build_parser().parse_args(args), {})
    assert (cfg.total_shards, cfg.handoff_grace_seconds) == (3, 45.0)
    cfg = resolve_config(build_parser().parse_args([*args, "--total-shards", "5", "--handoff-grace", "0"]), {})
    assert (cfg.total_shards, cfg.handoff_grace_seconds) == (5, 0.0)
    env = {"HORIZON_EXPORTER_TOTAL_SHARDS": "4", "HORIZON_EXPORTER_HANDOFF_GRACE": "9"}
    cfg = resolve_config(build_parser().parse_args(args), env)
    assert (cfg.total_shards, cfg.handoff_grace_seconds) == (4, 9.0)
    path.write_text("poll_interval: 2\ntargets:\n  - {microservice: a, url: 'http://a/horizon'}\n")
    cfg = resolve_config(build_parser().parse_args(["--config", str(path), "--shard", "0"]), {})
    assert cfg.total_shards == 1 and cfg.handoff_grace_seconds == 120.0, "default: max(120 s, 3 polls)"
    path.write_text("poll_interval: 50\ntargets: []\nmodules: {}\n")
    cfg = resolve_config(build_parser().parse_args(["--config", str(path), "--target", "a=http://a/horizon"]), {})
    assert cfg.handoff_grace_seconds == 150.0


@pytest.mark.parametrize(
    ("argv", "env", "file", "message"),
    [
        (["--shard", "3", "--total-shards", "3"], {}, None,
         "--shard: shard 3 is not below the total of 3 shards (--total-shards); shards are numbered 0 to 2"),
        (["--shard", "1"], {}, None, "--shard: shard 1 of 1 (unsharded): give the number of shards with "
         "--total-shards, HORIZON_EXPORTER_TOTAL_SHARDS or sharding.total_shards"),
        ([], {"HORIZON_EXPORTER_SHARD": "x", "HORIZON_EXPORTER_TOTAL_SHARDS": "2"}, None,
         "HORIZON_EXPORTER_SHARD: expected an integer >= 0, got 'x'"),
        (["--shard", "-1", "--total-shards", "2"], {}, None, "--shard: expected an integer >= 0, got -1"),
        (["--total-shards", "0"], {}, None, "--total-shards: expected an integer >= 1, got 0"),
        ([], {"HORIZON_EXPORTER_TOTAL_SHARDS": "three"}, None,
         "HORIZON_EXPORTER_TOTAL_SHARDS: expected an integer >= 1, got 'three'"),
        (["--total-shards", "3"], {"POD_NAME": "horizon-keda-7d9f8-x2kqz"}, None,
         "--total-shards: 3 shards need this exporter's shard: --shard or HORIZON_EXPORTER_SHARD, or POD_NAME"),
        ([], {"POD_INDEX": "1"}, "sharding: {total_shards: 3, handoff_grace: -1}",
         "sharding.handoff_grace: expected a number >= 0, got -1"),
        ([], {}, "sharding: {total_shards: 3}", "sharding.total_shards: 3 shards need this exporter's shard"),
        ([], {"POD_NAME": "exporter-5"}, "sharding: {total_shards: 3}",
         "POD_NAME: shard 5 is not below the total of 3 shards ({path}: sharding.total_shards)"),
        ([], {}, "sharding: {total_shards: 1.5}", "sharding.total_shards: expected an integer >= 1, got 1.5"),
        ([], {}, "sharding: {shards: 2}", "sharding.shards: unknown key; expected one of: total_shards, handoff_grace"),
        (["--total-shards", "3"], {"POD_NAME": "exporter-2", "POD_INDEX": "1"}, None,
         "POD_INDEX: 1 disagrees with POD_NAME 'exporter-2' (ordinal 2); give --shard"),
        (["--total-shards", "3"], {"POD_INDEX": "-1"}, None, "POD_INDEX: expected an integer >= 0, got -1"),
        (["--total-shards", "2", "--shard", "0", "--handoff-grace", "-5"], {}, None,
         "--handoff-grace: expected a number ≥ 0, got -5.0"),
    ],
)  # fmt: skip
def test_bad_sharding_exits_2_naming_the_flag_or_variable(tmp_path, capsys, argv, env, file, message):
    if file is not None:
        path = tmp_path / "c.yml"
        path.write_text(f"{file}\ntargets:\n  - {{microservice: a, url: 'http://a/horizon'}}\n")
        argv = ["--config", str(path), *argv]
        message = message.replace("{path}", str(path))
    else:
        argv = ["--target", "a=http://a/horizon", *argv]
    assert main([*argv, "--check-config"], env=env) == 2
    err = capsys.readouterr().err
    assert err.startswith("horizon-exporter: configuration error: ") and message in err, err


def test_a_reload_may_leave_this_shard_out():
    """At start, an ordinal the total leaves out is an error; at a reload (the file's total went down before a
    scale-down removed this pod) it is accepted: the shard owns nothing and hands its targets off."""
    with pytest.raises(ConfigError, match="shard 2 is not below the total of 2 shards"):
        resolve(["--shard", "2", "--total-shards", "2"], {})
    cfg = resolve(["--shard", "2", "--total-shards", "2"], {}, reload=True)
    assert cfg.shard == 2 and not cfg.sharding.owns("orders")


def test_check_config_says_which_shard_owns_what(tmp_path, capsys):
    path = tmp_path / "c.yml"
    targets = "".join(f"  - {{microservice: {n}, url: 'http://h/horizon'}}\n" for n in names(9) if "/" not in n)
    path.write_text(f"sharding: {{total_shards: 3}}\ntargets:\n{targets}")
    assert main(["--config", str(path), "--check-config"], env={"POD_NAME": "horizon-keda-exporter-1"}) == 0
    out = capsys.readouterr().out
    owned = sum(owner(n, 3) == 1 for n in names(9) if "/" not in n)
    assert f"shard 1 of 3: owns {owned} of 6 targets, hands a target off for 120s after a reshard" in out
    assert f"target svc-1: http://h/horizon -> microservice svc-1 (shard {owner('svc-1', 3)})" in out
