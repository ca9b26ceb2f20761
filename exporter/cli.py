"""`horizon-exporter`: parse flags and environment, load the config, then serve (or just check the config)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from urllib.parse import SplitResult, urlsplit

from aiohttp import web

from . import __version__
from .app import create_app
from .config import DEFAULT_LISTEN, Config, load_config, redact_url, split_listen, target_from_flag, validate
from .gcpause import tune_collector
from .mapping import Fixed
from .process import LOG_FORMATS, configure_logging, new_event_loop, start_task_report
from .sharding import ordinal_from_pod_name, owner
from .webconfig import WebConfig, load_web_config
from .webguard import WebGuard, describe
from .yamlreader import ConfigError

ENV_PREFIX = "HORIZON_EXPORTER_"
LOG_LEVELS = ("debug", "info", "warning", "error")

DESCRIPTION = """\
Poll Laravel Horizon's JSON API for every Core microservice and serve per-microservice gauges on /metrics,
plus a JSON snapshot for the KEDA scaler sidecar on /api/v1/snapshot.

Simple case, one Horizon per microservice:
  horizon-exporter --target orders=http://orders.shop.svc/horizon --target payments=http://payments/horizon

Anything more (one Horizon for many microservices, credentials, TLS): --config FILE (see README).
Sharded (README "Sharding"): every shard reads the same config and polls only the targets it owns,
  horizon-exporter --config FILE --total-shards 3   # the ordinal from POD_NAME (StatefulSet) or POD_INDEX
Every flag can also be set by an environment variable, HORIZON_EXPORTER_<FLAG> (e.g. HORIZON_EXPORTER_LISTEN);
a flag wins over its variable, which wins over the file. --timeout replaces the file's top-level timeout, the
default of every target without a timeout of its own.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the flags)."""
    p = argparse.ArgumentParser(
        prog="horizon-exporter", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", "--config.file", metavar="FILE",
        help="YAML config file: targets and/or json_exporter modules (env: HORIZON_EXPORTER_CONFIG)",
    )  # fmt: skip
    p.add_argument("--listen", metavar="HOST:PORT", help=f"where to serve (default {DEFAULT_LISTEN})")
    p.add_argument(
        "--web-config-file", "--web.config.file", metavar="FILE",
        help="Prometheus exporter web config: TLS, basic auth, headers; re-read when it or its certificates change "
        "(env: HORIZON_EXPORTER_WEB_CONFIG; README 'Security')",
    )  # fmt: skip
    p.add_argument("--poll-interval", type=float, metavar="SECONDS", help="poll every target this often (default 1)")
    p.add_argument(
        "--stats-interval", type=float, metavar="SECONDS",
        help="poll /api/stats (which feeds no scaling decision) this often (default 10; at most every poll)",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS",
        help="per-request timeout to Horizon (default 5); a target's own timeout in the file is kept",
    )  # fmt: skip
    p.add_argument(
        "--stale-after", type=float, metavar="SECONDS",
        help="keep a failing target's last values this long, then drop them (default 60)",
    )  # fmt: skip
    p.add_argument(
        "--target", action="append", default=[], metavar="MICROSERVICE=URL",
        help="a Horizon base URL for one microservice; repeat for more (added to the file's targets)",
    )  # fmt: skip
    p.add_argument(
        "--status-page-url", metavar="URL",
        help="link the landing page to the scaler's status page at this http(s) URL (e.g. http://localhost:9109/ "
        "through kubectl port-forward; env: HORIZON_EXPORTER_STATUS_PAGE_URL)",
    )  # fmt: skip
    p.add_argument(
        "--total-shards", type=int, metavar="N",
        help="split the targets over N exporters; this one polls only its own (default: the file's "
        "sharding.total_shards, else 1; env: HORIZON_EXPORTER_TOTAL_SHARDS)",
    )  # fmt: skip
    p.add_argument(
        "--shard", type=int, metavar="I",
        help="this exporter's shard, 0 to N-1 (env: HORIZON_EXPORTER_SHARD; default: from --pod-name or POD_INDEX)",
    )  # fmt: skip
    p.add_argument(
        "--pod-name", metavar="NAME",
        help="the pod's name, whose trailing -<n> is the shard of a StatefulSet pod (env: POD_NAME)",
    )  # fmt: skip
    p.add_argument(
        "--handoff-grace", type=float, metavar="SECONDS",
        help="after a reshard, keep polling a target given away this long, in the snapshot only "
        "(default max(120, 3 poll intervals))",
    )  # fmt: skip
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json: one JSON object per line")
    p.add_argument("--check-config", action="store_true", help="validate the configuration, print a summary, exit")
    p.add_argument("--version", action="version", version=f"horizon-exporter {__version__}")
    return p


def _from_env(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    if args.web_config_file is None and env.get(ENV_PREFIX + "WEB_CONFIG"):
        args.web_config_file = env[ENV_PREFIX + "WEB_CONFIG"]
    for name in ("config", "listen", "poll_interval", "stats_interval", "timeout", "stale_after", "handoff_grace",
                 "log_level", "log_format"):  # fmt: skip
        if getattr(args, name) is None:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                if name in ("poll_interval", "stats_interval", "timeout", "stale_after", "handoff_grace"):
                    try:
                        setattr(args, name, float(raw))
                    except ValueError:
                        raise ConfigError(ENV_PREFIX + name.upper(), "", f"expected a number, got {raw!r}") from None
                elif name in ("log_level", "log_format"):
                    # argparse checks the flag's choices; the variable is checked here, as one line, not a traceback.
                    choices = LOG_LEVELS if name == "log_level" else LOG_FORMATS
                    if raw.lower() not in choices:
                        raise ConfigError(
                            ENV_PREFIX + name.upper(), "", f"expected one of {', '.join(choices)}, got {raw!r}"
                        )
                    setattr(args, name, raw.lower())
                else:
                    setattr(args, name, raw)


def _int_setting(
    value: int | None, flag: str, env: Mapping[str, str], var: str, minimum: int
) -> tuple[int | None, str]:
    """An integer from its flag, else from its environment variable; with the name of where it came from."""
    where = flag
    if value is None:
        raw = env.get(var, "").strip()
        if not raw:
            return None, ""
        where = var
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(var, "", f"expected an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(where, "", f"expected an integer >= {minimum}, got {value}")
    return value, where


def _ordinal(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[int | None, str]:
    """This pod's shard: --shard or HORIZON_EXPORTER_SHARD; else the trailing -<n> of --pod-name or POD_NAME (a
    StatefulSet pod's name, through the downward API); else POD_INDEX (its apps.kubernetes.io/pod-index label)."""
    shard, where = _int_setting(args.shard, "--shard", env, ENV_PREFIX + "SHARD", 0)
    if shard is not None:
        return shard, where
    pod_name, name_from = (args.pod_name, "--pod-name") if args.pod_name else (env.get("POD_NAME", ""), "POD_NAME")
    from_name = ordinal_from_pod_name(pod_name) if pod_name else None
    index, _ = _int_setting(None, "", env, "POD_INDEX", 0)
    if from_name is not None and index is not None and from_name != index:
        raise ConfigError("POD_INDEX", "", f"{index} disagrees with {name_from} {pod_name!r} (ordinal {from_name}); "
                          "give --shard")  # fmt: skip
    if from_name is not None:
        return from_name, name_from
    return (index, "POD_INDEX") if index is not None else (None, "")


def _sharding(args: argparse.Namespace, env: Mapping[str, str], config: Config, reload: bool) -> dict[str, object]:
    """The `shard` and `total_shards` of the config: the total from --total-shards, its variable or the file."""
    shard, shard_from = _ordinal(args, env)
    total, total_from = _int_setting(args.total_shards, "--total-shards", env, ENV_PREFIX + "TOTAL_SHARDS", 1)
    source, key = (total_from, "") if total is not None else (config.source, "sharding.total_shards")
    total = config.total_shards if total is None else total
    if total > 1 and shard is None:
        raise ConfigError(
            source, key, f"{total} shards need this exporter's shard: --shard or {ENV_PREFIX}SHARD, or POD_NAME "
            "ending in -<n> or POD_INDEX from the downward API (a StatefulSet pod)",
        )  # fmt: skip
    # A shard the total leaves out is refused at start. At a reload (the file's total went down before a scale-down
    # removed this pod) it owns no target: it hands its targets off instead of polling them beside their new owners.
    # An ordinal read from the pod's name does not count unsharded (a Deployment pod's name may end in digits).
    explicit = shard_from in ("--shard", ENV_PREFIX + "SHARD")
    if not reload and shard is not None and shard >= total and (total > 1 or explicit):
        if total == 1:
            raise ConfigError(shard_from, "", f"shard {shard} of 1 (unsharded): give the number of shards with "
                              f"--total-shards, {ENV_PREFIX}TOTAL_SHARDS or sharding.total_shards")  # fmt: skip
        where = f"{source}: {key}" if key else source
        raise ConfigError(shard_from, "", f"shard {shard} is not below the total of {total} shards ({where}); "
                          f"shards are numbered 0 to {total - 1}")  # fmt: skip
    return {"shard": shard, "total_shards": total}


def resolve_config(args: argparse.Namespace, env: Mapping[str, str], *, reload: bool = False) -> Config:
    """Merge file, environment and flags into one validated `Config` (`reload`: re-read while running)."""
    _from_env(args, env)
    changes: dict[str, object] = {}
    if args.listen is not None:
        split_listen(args.listen)
        changes["listen"] = args.listen
    for name in ("poll_interval", "stats_interval", "timeout", "stale_after", "handoff_grace"):
        value = getattr(args, name)
        if value is not None:
            zero_ok = name in ("stats_interval", "handoff_grace")  # 0: every poll; no handoff
            if value < 0 or (value == 0 and not zero_ok) or value != value:
                wanted = "a number ≥ 0" if zero_ok else "a positive number"
                raise ConfigError("--" + name.replace("_", "-"), "", f"expected {wanted}, got {value}")
            changes[name] = value
    # The flag replaces the file's top-level timeout, which file targets inherit unless they set their own.
    config = load_config(args.config, env, timeout=args.timeout) if args.config else Config(targets=())
    timeout = changes.get("timeout", config.timeout)
    extra = tuple(target_from_flag(v, float(timeout)) for v in args.target)  # type: ignore[arg-type]
    if extra:
        changes["targets"] = config.targets + extra
    if not args.config:
        changes["source"] = "flags"
    changes.update(_sharding(args, env, config, reload))
    return validate(dataclasses.replace(config, **changes))  # type: ignore[arg-type]


def status_page_url(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The --status-page-url flag (or its variable), checked: an http(s) URL with a host and no credentials."""
    raw = args.status_page_url if args.status_page_url is not None else env.get(ENV_PREFIX + "STATUS_PAGE_URL")
    if not raw:
        return None
    source = "--status-page-url" if args.status_page_url is not None else ENV_PREFIX + "STATUS_PAGE_URL"
    if "@" in raw:  # not echoed: a password may hold "/", "?" or "#", which hide it from a URL parse
        raise ConfigError(source, "", "expected a URL without credentials (it is shown on the landing page)")
    try:
        parts: SplitResult | None = urlsplit(raw)
        _ = parts.port if parts is not None else None  # a port that is not a number raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(source, "", f"expected an http(s) URL, got {redact_url(raw)!r}")
    if parts.username or parts.password:
        raise ConfigError(source, "", "expected a URL without credentials (it is shown on the landing page)")
    return raw


def _summary(config: Config, web_config: WebConfig | None) -> str:
    lines = [f"config OK ({config.source}): listen {config.listen}, poll every {config.poll_interval:g}s"]
    sharding = config.sharding
    if sharding.sharded:
        owned = sum(sharding.owns(t.name) for t in config.targets)
        lines.append(f"  {sharding.describe()}: owns {owned} of {len(config.targets)} targets, hands a target off "
                     f"for {config.handoff_grace_seconds:g}s after a reshard")  # fmt: skip
    if web_config is not None:
        lines.append(f"  web config {web_config.source}: {describe(web_config)}")
    lines += [f"  warning: {w}" for w in config.warnings]
    for name, module in config.modules.items():
        allowed = f"allowed targets: {', '.join(module.allowed_targets)}" if module.allowed_targets else "any target"
        lines.append(f"  module {name}: {len(module.metrics)} metrics, {allowed}")
    for t in config.targets:
        rule = t.rule
        if isinstance(rule, Fixed):
            kind = f"microservice {rule.microservice}"
        else:
            kind = f"microservices from {rule.source} names by {rule.regex.pattern}"
        where = f" (shard {owner(t.name, sharding.total)})" if sharding.sharded else ""
        lines.append(f"  target {t.name}: {t.url} -> {kind}{where}")
    return "\n".join(lines)


async def _task_report(app: web.Application) -> AsyncIterator[None]:
    """HORIZON_KEDA_DEBUG_TASKS (debugging only, off by default): see process.start_task_report."""
    task = start_task_report(os.environ)
    yield
    if task is not None:
        task.cancel()


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    env = os.environ if env is None else env
    try:
        config = resolve_config(args, env)
        status_page = status_page_url(args, env)
        web_config, context = load_web_config(args.web_config_file) if args.web_config_file else (None, None)
    except ConfigError as exc:
        print(f"horizon-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(_summary(config, web_config))
        return 0
    configure_logging(args.log_level or "info", args.log_format or "text")
    for warning in config.warnings:
        logging.getLogger("horizon_keda").warning("%s", warning)
    host, port = config.host_port
    guard = WebGuard(args.web_config_file, web_config, context)
    scheme = "https" if guard.ssl_context is not None else "http"
    owned = sum(config.sharding.owns(t.name) for t in config.targets)
    logging.getLogger("horizon_keda").info("serving on %s://%s:%d/ with %d of %d targets, %s (%s)", scheme, host,
                                           port, owned, len(config.targets), config.sharding.describe(),
                                           describe(guard.config))  # fmt: skip
    tune_collector()
    loop = new_event_loop(os.environ)
    logging.getLogger("horizon_keda").info("event loop: %s", type(loop).__module__.split(".")[0])
    app = create_app(config, load=lambda: resolve_config(build_parser().parse_args(argv), env, reload=True),
                     guard=guard, status_page_url=status_page)  # fmt: skip
    app.cleanup_ctx.append(_task_report)
    web.run_app(app, host=host, port=port, print=None, access_log=None, loop=loop, ssl_context=guard.ssl_context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
