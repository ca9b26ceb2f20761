"""`horizon-scaler`: flags (each with an env var), logging, and SIGTERM-driven graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from .audit import AuditLog
from .process import LOG_FORMATS, configure_logging, new_event_loop, start_task_report
from .prometheus_source import PrometheusSource
from .server import ScalerServer
from .snapshot_source import SnapshotSource
from .source import Source
from .tenants import TenantsError, TenantsFile
from .tls import TLSFiles

log = logging.getLogger("horizon_keda.scaler")

# flag, env var, default, help
FLAGS: tuple[tuple[str, str, str | None, str], ...] = (
    ("--listen", "HORIZON_SCALER_LISTEN", "0.0.0.0:6000", "gRPC address KEDA connects to (scalerAddress)"),
    ("--exporter", "HORIZON_SCALER_EXPORTER", "http://127.0.0.1:9108", "the exporter's base URL (sidecar source)"),
    ("--prometheus", "HORIZON_SCALER_PROMETHEUS", None, "Prometheus base URL; when set, replaces --exporter"),
    ("--prometheus-interval", "HORIZON_SCALER_PROMETHEUS_INTERVAL", "5", "seconds between Prometheus re-evaluations"),
    ("--max-staleness", "HORIZON_SCALER_MAX_STALENESS", "10", "seconds before data counts as stale → UNAVAILABLE"),
    ("--heartbeat", "HORIZON_SCALER_HEARTBEAT", "5", "seconds between StreamIsActive re-sends of the state"),
    ("--grace", "HORIZON_SCALER_GRACE", "5", "seconds in-flight calls get on SIGTERM"),
    ("--tls-cert", "HORIZON_SCALER_TLS_CERT", None, "server certificate (PEM); enables TLS"),
    ("--tls-key", "HORIZON_SCALER_TLS_KEY", None, "server private key (PEM)"),
    ("--tls-client-ca", "HORIZON_SCALER_TLS_CLIENT_CA", None, "CA bundle; requires client certificates (mTLS)"),
    (
        "--tenants",
        "HORIZON_SCALER_TENANTS",
        None,
        "YAML: which ScaledObject namespaces may read which microservices (reloaded on change; docs/scaler.md)",
    ),
    (
        "--audit-log",
        "HORIZON_SCALER_AUDIT_LOG",
        None,
        "JSON lines of every decision change and refused call to this file, or - for stdout (docs/scaler.md)",
    ),
    ("--log-level", "HORIZON_SCALER_LOG_LEVEL", "info", "debug, info, warning or error"),
    ("--log-format", "HORIZON_SCALER_LOG_FORMAT", "text", "text or json (one JSON object per line)"),
)
_NUMBERS = ("prometheus_interval", "max_staleness", "heartbeat", "grace")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horizon-scaler", description="KEDA external scaler for Laravel Horizon microservices."
    )
    for flag, var, default, text in FLAGS:
        shown = f" (default {default})" if default is not None else ""
        parser.add_argument(flag, default=env.get(var, default), help=f"{text}{shown}; env {var}")
    return parser


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Parse and validate everything before anything starts; errors exit with status 2 naming the flag."""
    parser = build_parser(env)
    args = parser.parse_args(argv)
    for name in _NUMBERS:
        raw = getattr(args, name)
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value <= 0:
            parser.error(f"--{name.replace('_', '-')}: expected a number of seconds > 0, got {raw!r}")
        setattr(args, name, value)
    for name in ("exporter", "prometheus"):
        url = getattr(args, name)
        if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
            parser.error(f"--{name}: expected an http(s) URL, got {url!r}")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key: expected both or neither")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca: needs --tls-cert and --tls-key too")
    if args.log_level.lower() not in ("debug", "info", "warning", "error"):
        parser.error(f"--log-level: expected debug, info, warning or error, got {args.log_level!r}")
    if args.log_format.lower() not in LOG_FORMATS:
        parser.error(f"--log-format: expected text or json, got {args.log_format!r}")
    return args


def make_source(args: argparse.Namespace) -> Source:
    if args.prometheus:
        return PrometheusSource(args.prometheus, args.max_staleness, interval=args.prometheus_interval)
    return SnapshotSource(args.exporter, args.max_staleness)


async def serve(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    tls = TLSFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    tenants = None
    if args.tenants:
        try:
            tenants = TenantsFile(args.tenants)
        except TenantsError as exc:
            log.error("--tenants: %s", exc)
            return 2
        log.info("tenancy on: %d namespaces in %s", len(tenants.current.by_namespace), args.tenants)
    else:
        log.warning("tenancy is off: any ScaledObject may read any microservice (see --tenants)")
    audit = None
    if args.audit_log:
        try:
            audit = AuditLog.open(args.audit_log)
        except OSError as exc:
            log.error("--audit-log: cannot open %s: %s", args.audit_log, exc.strerror)
            return 2
    server = ScalerServer(make_source(args), args.listen, tls=tls, heartbeat=args.heartbeat, tenants=tenants,
                          audit=audit)  # fmt: skip
    try:
        port = await server.start()
    except (RuntimeError, OSError) as exc:
        log.error("%s", exc)
        await server.source.close()
        return 1
    log.info("serving externalscaler.ExternalScaler on %s (port %d, %s) from %s", args.listen, port,
             "mTLS" if args.tls_client_ca else "TLS" if tls else "plaintext", server.source.description)  # fmt: skip
    task_report = start_task_report(os.environ)  # HORIZON_KEDA_DEBUG_TASKS: debugging only, off by default
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if task_report is not None:
        task_report.cancel()
    log.info("signal received: ending streams and finishing in-flight calls (grace %gs)", args.grace)
    await server.stop(args.grace)
    if audit is not None:
        audit.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, os.environ)
    configure_logging(args.log_level, args.log_format.lower())
    with asyncio.Runner(loop_factory=lambda: new_event_loop(os.environ)) as runner:
        return runner.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
