"""`horizon-exporter`: parse flags and environment, load the config, then serve (or just check the config)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

from aiohttp import web

from . import __version__
from .app import create_app
from .config import DEFAULT_LISTEN, Config, load_config, split_listen, target_from_flag, validate
from .gcpause import tune_collector
from .mapping import Fixed
from .process import LOG_FORMATS, configure_logging, new_event_loop, start_task_report
from .yamlreader import ConfigError

ENV_PREFIX = "HORIZON_EXPORTER_"
LOG_LEVELS = ("debug", "info", "warning", "error")

DESCRIPTION = """\
Poll Laravel Horizon's JSON API for every Core microservice and serve per-microservice gauges on /metrics,
plus a JSON snapshot for the KEDA scaler sidecar on /api/v1/snapshot.

Simple case, one Horizon per microservice:
  horizon-exporter --target orders=http://orders.shop.svc/horizon --target payments=http://payments/horizon

Anything more (one Horizon for many microservices, credentials, TLS): --config FILE (see README).
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
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    p.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json: one JSON object per line")
    p.add_argument("--check-config", action="store_true", help="validate the configuration, print a summary, exit")
    p.add_argument("--version", action="version", version=f"horizon-exporter {__version__}")
    return p


def _from_env(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    for name in ("config", "listen", "poll_interval", "stats_interval", "timeout", "stale_after", "log_level",
                 "log_format"):  # fmt: skip
        if getattr(args, name) is None:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                if name in ("poll_interval", "stats_interval", "timeout", "stale_after"):
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


def resolve_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    """Merge file, environment and flags into one validated `Config`."""
    _from_env(args, env)
    changes: dict[str, object] = {}
    if args.listen is not None:
        split_listen(args.listen)
        changes["listen"] = args.listen
    for name in ("poll_interval", "stats_interval", "timeout", "stale_after"):
        value = getattr(args, name)
        if value is not None:
            zero_ok = name == "stats_interval"  # 0: every poll
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
    return validate(dataclasses.replace(config, **changes))  # type: ignore[arg-type]


def _summary(config: Config) -> str:
    lines = [f"config OK ({config.source}): listen {config.listen}, poll every {config.poll_interval:g}s"]
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
        lines.append(f"  target {t.name}: {t.url} -> {kind}")
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
    except ConfigError as exc:
        print(f"horizon-exporter: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(_summary(config))
        return 0
    configure_logging(args.log_level or "info", args.log_format or "text")
    for warning in config.warnings:
        logging.getLogger("horizon_keda").warning("%s", warning)
    host, port = config.host_port
    logging.getLogger("horizon_keda").info("serving on http://%s:%d/ with %d targets", host, port, len(config.targets))
    tune_collector()
    loop = new_event_loop(os.environ)
    logging.getLogger("horizon_keda").info("event loop: %s", type(loop).__module__.split(".")[0])
    app = create_app(config, load=lambda: resolve_config(build_parser().parse_args(argv), env))
    app.cleanup_ctx.append(_task_report)
    web.run_app(app, host=host, port=port, print=None, access_log=None, loop=loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
