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
from .discovery import ExporterSpec, parse_exporter
from .exporter_auth import ExporterAuth, ExporterAuthError, ExporterCredentials
from .fanin import FanInSource
from .metrics import ScalerMetrics
from .process import LOG_FORMATS, configure_logging, new_event_loop, start_task_report
from .prometheus_source import PrometheusSource
from .server import ScalerServer
from .snapshot_source import SnapshotSource
from .source import Source
from .status_web import StatusPage
from .tenants import TenantsError, TenantsFile
from .tls import TLSFiles
from .web import WebServer, create_app, parse_listen

log = logging.getLogger("horizon_keda.scaler")

# flag, env var, default, help
FLAGS: tuple[tuple[str, str, str | None, str], ...] = (
    ("--listen", "HORIZON_SCALER_LISTEN", "0.0.0.0:6000", "gRPC address KEDA connects to (scalerAddress)"),
    (
        "--exporter",
        "HORIZON_SCALER_EXPORTER",
        "http://127.0.0.1:9108",
        "an exporter's base URL; repeat it (env: comma-separated) to merge several by microservice; "
        "dns+http(s)://HOST:PORT follows every address HOST resolves to (a headless Service)",
    ),
    (
        "--resolve-interval",
        "HORIZON_SCALER_RESOLVE_INTERVAL",
        "10",
        "seconds between DNS lookups of dns+ exporters",
    ),
    ("--exporter-ca", "HORIZON_SCALER_EXPORTER_CA", None, "CA bundle that signs an https exporter's certificate"),
    ("--exporter-cert", "HORIZON_SCALER_EXPORTER_CERT", None, "client certificate for an exporter that asks for one"),
    ("--exporter-key", "HORIZON_SCALER_EXPORTER_KEY", None, "its private key (PEM file)"),
    ("--exporter-username", "HORIZON_SCALER_EXPORTER_USERNAME", None, "basic auth user for a protected exporter"),
    (
        "--exporter-password-file",
        "HORIZON_SCALER_EXPORTER_PASSWORD_FILE",
        None,
        "file holding that user's password (never a flag value; re-read when it changes)",
    ),
    ("--prometheus", "HORIZON_SCALER_PROMETHEUS", None, "Prometheus base URL; when set, replaces --exporter"),
    ("--prometheus-interval", "HORIZON_SCALER_PROMETHEUS_INTERVAL", "5", "seconds between Prometheus re-evaluations"),
    ("--max-staleness", "HORIZON_SCALER_MAX_STALENESS", "10", "seconds before data counts as stale → UNAVAILABLE"),
    ("--heartbeat", "HORIZON_SCALER_HEARTBEAT", "5", "seconds between StreamIsActive re-sends of the state"),
    ("--grace", "HORIZON_SCALER_GRACE", "5", "seconds in-flight calls get on SIGTERM"),
    (
        "--max-connection-age",
        "HORIZON_SCALER_MAX_CONNECTION_AGE",
        "300",
        "seconds before a client connection is asked to reconnect (so KEDA re-resolves DNS and reaches new scaler "
        "pods); streams end with OK by then; 0 = never",
    ),
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
    (
        "--metrics-listen",
        "HORIZON_SCALER_METRICS_LISTEN",
        None,
        "HOST:PORT to serve Prometheus /metrics on (gRPC and scaler metrics; docs/scaler.md); off when unset",
    ),
    (
        "--status-page",
        "HORIZON_SCALER_STATUS_PAGE",
        "true",
        "true or false: the live status page at / and /events on the --metrics-listen port (docs/scaler.md)",
    ),
    ("--log-level", "HORIZON_SCALER_LOG_LEVEL", "info", "debug, info, warning or error"),
    ("--log-format", "HORIZON_SCALER_LOG_FORMAT", "text", "text or json (one JSON object per line)"),
)
_NUMBERS = ("prometheus_interval", "max_staleness", "heartbeat", "grace", "resolve_interval")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horizon-scaler", description="KEDA external scaler for Laravel Horizon microservices."
    )
    for flag, var, default, text in FLAGS:
        shown = f" (default {default})" if default is not None else ""
        if flag == "--exporter":  # repeatable: the env var's list applies only when the flag is not given
            parser.add_argument(flag, action="append", help=f"{text}{shown}; env {var}")
        else:
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
    try:
        age = float(args.max_connection_age)
    except ValueError:
        age = -1.0
    if not age >= 0:  # also NaN
        parser.error(f"--max-connection-age: expected seconds ≥ 0 (0: never), got {args.max_connection_age!r}")
    args.max_connection_age = age
    url = args.prometheus
    if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        parser.error(f"--prometheus: expected an http(s) URL, got {url!r}")
    if args.exporter is None:
        from_env = env.get("HORIZON_SCALER_EXPORTER", "http://127.0.0.1:9108")
        args.exporter = [v.strip() for v in from_env.split(",") if v.strip()] or [from_env]
    specs: list[ExporterSpec] = []
    for value in args.exporter:
        try:
            spec = parse_exporter(value)
        except ValueError as exc:
            parser.error(f"--exporter: {exc}")
        if any((s.dns, s.url) == (spec.dns, spec.url) for s in specs):
            parser.error(f"--exporter: {value!r} is given twice")
        specs.append(spec)
    args.exporter = specs
    if (args.exporter_cert is None) != (args.exporter_key is None):
        parser.error("--exporter-cert and --exporter-key: expected both or neither")
    if args.exporter_password_file is not None and args.exporter_username is None:
        parser.error("--exporter-password-file: needs --exporter-username too")
    for spec in specs:
        if (args.exporter_ca or args.exporter_cert) and spec.scheme != "https":
            parser.error(f"--exporter-ca/--exporter-cert: the exporter URL must be https://, got {spec.value!r}")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key: expected both or neither")
    if args.tls_client_ca is not None and args.tls_cert is None:
        parser.error("--tls-client-ca: needs --tls-cert and --tls-key too")
    if args.log_level.lower() not in ("debug", "info", "warning", "error"):
        parser.error(f"--log-level: expected debug, info, warning or error, got {args.log_level!r}")
    if args.log_format.lower() not in LOG_FORMATS:
        parser.error(f"--log-format: expected text or json, got {args.log_format!r}")
    if args.status_page.lower() not in ("true", "false"):
        parser.error(f"--status-page: expected true or false, got {args.status_page!r}")
    args.status_page = args.status_page.lower() == "true"
    if args.metrics_listen:  # empty (e.g. the env var set to "") means off, like unset
        try:
            args.metrics_listen = parse_listen(args.metrics_listen)
        except ValueError as exc:
            parser.error(f"--metrics-listen: {exc}")
    else:
        args.metrics_listen = None
    return args


def make_source(args: argparse.Namespace) -> Source:
    """The source the flags ask for; `ExporterAuthError` when an --exporter-* credential file does not load."""
    if args.prometheus:
        return PrometheusSource(args.prometheus, args.max_staleness, interval=args.prometheus_interval)
    auth = ExporterAuth(args.exporter_ca, args.exporter_cert, args.exporter_key, args.exporter_username,
                        args.exporter_password_file)  # fmt: skip
    credentials = ExporterCredentials(auth) if auth != ExporterAuth() else None
    specs: list[ExporterSpec] = args.exporter
    if len(specs) == 1 and not specs[0].dns:  # the sidecar: one exporter, exactly as before fan-in existed
        return SnapshotSource(specs[0].url, args.max_staleness, credentials=credentials)
    return FanInSource(specs, args.max_staleness, credentials=credentials, resolve_interval=args.resolve_interval)


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
    try:
        source = make_source(args)
    except ExporterAuthError as exc:
        log.error("%s", exc)
        return 2
    metrics = ScalerMetrics() if args.metrics_listen else None
    server = ScalerServer(source, args.listen, tls=tls, heartbeat=args.heartbeat, tenants=tenants, audit=audit,
                          metrics=metrics, max_connection_age=args.max_connection_age or None)  # fmt: skip
    try:
        port = await server.start()
    except (RuntimeError, OSError) as exc:
        log.error("%s", exc)
        await server.source.close()
        return 1
    log.info("serving externalscaler.ExternalScaler on %s (port %d, %s) from %s", args.listen, port,
             "mTLS" if args.tls_client_ca else "TLS" if tls else "plaintext", server.source.description)  # fmt: skip
    web_server = None
    if metrics is not None:
        host, web_port = args.metrics_listen
        app = create_app(metrics.registry())
        if args.status_page:
            StatusPage(server.source, metrics.triggers).attach(app)
        web_server = WebServer(app, host, web_port)
        try:
            web_port = await web_server.start()
        except OSError as exc:
            log.error("--metrics-listen: cannot listen on %s:%d: %s", host, web_port, exc.strerror or exc)
            await server.stop(0)
            return 1
        log.info("serving /metrics on %s (port %d)%s", host, web_port,
                 "; the status page at / (events at /events)" if args.status_page else "")  # fmt: skip
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
    if web_server is not None:
        await web_server.stop()
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
