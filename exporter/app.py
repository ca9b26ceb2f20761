"""The exporter's aiohttp application: /metrics, /healthz, /readyz, /api/v1/snapshot (with long-poll) and /.

`create_app(config, registry)` builds it; its cleanup context owns the one ClientSession and the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from . import __version__
from .collector import MetricsRenderer
from .config import Config
from .jsonexp.probe import Prober, check_target, scrape_timeout
from .poller import Poller, initial_states
from .reload import ConfigReloader
from .snapshot_json import delta_document, snapshot_document
from .store import SnapshotStore
from .webguard import WebGuard

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", SnapshotStore)
RENDERER = web.AppKey("renderer", MetricsRenderer)
POLLER = web.AppKey("poller", Poller)
SNAPSHOT_CACHE = web.AppKey("snapshot_cache", dict)
SNAPSHOT_SERVED = web.AppKey("snapshot_served", Counter)
SESSION = web.AppKey("session", aiohttp.ClientSession)
PROBER = web.AppKey("prober", Prober)
MODULES = web.AppKey("modules", ConfigReloader)
GUARD = web.AppKey("guard", WebGuard)

LONG_POLL_DEFAULT = 30.0
LONG_POLL_MAX = 60.0

_LANDING = """<!doctype html>
<html><head><title>horizon-keda exporter</title></head><body>
<h1>horizon-keda exporter {version}</h1>
<p>Polls Laravel Horizon and serves per-microservice gauges for Prometheus and the KEDA scaler sidecar.</p>
<ul>
<li><a href="metrics">/metrics</a> &mdash; Prometheus exposition</li>
<li><a href="api/v1/snapshot">/api/v1/snapshot</a> &mdash; the latest snapshot as JSON
 (<code>?after=VERSION&amp;timeout=S</code> waits for the next one; add <code>since=REVISION&amp;instance=ID</code>
 for only what changed)</li>
<li><a href="healthz">/healthz</a> &mdash; alive</li>
<li><a href="readyz">/readyz</a> &mdash; config loaded and every target (of this shard) polled once</li>
<li>/probe?module=M&amp;target=URL &mdash; json_exporter-style probe with the configured modules</li>
{status_page}</ul></body></html>
"""
_STATUS_LINK = """<li><a href="{url}">status page</a> &mdash; the scaler's live view: every microservice's processes
 against its threshold, and what KEDA was told</li>
"""


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = await request.app[RENDERER].render(request.headers.get("Accept"))
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    snap = request.app[STORE].current
    if snap.ready:
        return web.Response(text="ready\n")
    waiting = [name for name, t in snap.targets.items() if t.attempts == 0 and not t.handed_off]
    if request.app[GUARD].protects:  # reachable without credentials: say how many, not which
        return web.Response(status=503, text=f"waiting for the first poll of {len(waiting)} target(s)\n")
    return web.Response(status=503, text=f"waiting for the first poll of: {', '.join(waiting)}\n")


def _float_param(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=f"query parameter {name}: expected a number from {lo:g} to {hi:g}, got {raw!r}\n")
    return value


def _count_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdecimal() or not raw.isascii() or len(raw) > 20:
        what = "a snapshot version" if name == "after" else "a snapshot revision"
        raise web.HTTPBadRequest(text=f"query parameter {name}: expected {what}, got {raw!r}\n")
    return int(raw)


async def _snapshot(request: web.Request) -> web.Response:
    app = request.app
    store, config = app[STORE], app[CONFIG]
    after = _count_param(request, "after")
    since = _count_param(request, "since")
    if after is not None:
        timeout = _float_param(request, "timeout", LONG_POLL_DEFAULT, 0, LONG_POLL_MAX)
        # A copy from another exporter instance (this one restarted) gets the full document at once.
        if since is None or request.query.get("instance") == store.instance:
            await store.wait_for_change(after, timeout)
    # No await from here on: the snapshot and the change log describe the same moment.
    snap = store.current
    changes = None
    if since is not None and request.query.get("instance") == store.instance:
        changes = store.changes_since(since)
    if changes is not None:
        kind = "delta"
        document = delta_document(snap, since or 0, changes, config.poll_interval, config.stale_after, store.instance)
        body = json.dumps(document, separators=(",", ":")).encode()
    else:
        kind = "full"
        cache = app[SNAPSHOT_CACHE]
        if cache.get("snapshot") is not snap:  # a new revision, or the same one published as a new version
            document = snapshot_document(snap, config.poll_interval, config.stale_after, store.instance)
            cache["body"] = json.dumps(document, separators=(",", ":")).encode()
            cache["snapshot"] = snap
        body = cache["body"]
    app[SNAPSHOT_SERVED].labels(kind).inc(len(body))
    return web.Response(body=body, content_type="application/json")


async def _probe(request: web.Request) -> web.Response:
    app = request.app
    modules = app[MODULES].current  # one consistent set for the whole probe, even across a reload
    name = request.query.get("module", "default")
    client = modules.clients.get(name)
    if client is None:
        raise web.HTTPBadRequest(text=f'Unknown module "{name}"\n')
    target = check_target(request.query.get("target"))
    if not client.module.target_allowed(target):
        raise web.HTTPForbidden(text=f'target not allowed by module "{name}": see its allowed_targets\n')
    prober = app[PROBER]
    timeout = scrape_timeout(request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), prober.max_timeout)
    body = await prober.probe(client, target, request.query, timeout)
    return web.Response(
        body=body, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )


def landing_page(status_page_url: str | None) -> str:
    """The landing page; with a link to the scaler's status page when its URL is configured (escaped: it is text
    from a flag, and this page is served to anyone who reaches the port)."""
    link = _STATUS_LINK.format(url=html.escape(status_page_url, quote=True)) if status_page_url else ""
    return _LANDING.format(version=__version__, status_page=link)


def create_app(
    config: Config,
    registry: CollectorRegistry | None = None,
    *,
    clock: Callable[[], float] = time.time,
    start_poller: bool = True,
    load: Callable[[], Config] | None = None,
    guard: WebGuard | None = None,
    status_page_url: str | None = None,
) -> web.Application:
    """Build the exporter application for `config`; the poller starts with the app and stops with it.

    `registry` holds extra collectors to serve on /metrics beside the `horizon_*` families, which come from the
    snapshot store directly (see collector.py). `load` re-reads the configuration on a reload (SIGHUP or a changed
    file) the way the process was started; by default the config file alone. `guard` applies the web config
    (--web-config-file: basic auth, headers, rate limit; its TLS context goes to the listener); default: none.
    `status_page_url` (--status-page-url, already validated) makes the landing page link to the scaler's status page.
    """
    guard = guard if guard is not None else WebGuard(None)
    app = web.Application(middlewares=[guard.middleware])
    app.on_response_prepare.append(guard.add_headers)
    app[GUARD] = guard
    sharding = config.sharding
    store = SnapshotStore(initial_states(config), clock, sharding=(sharding.effective_shard, sharding.total))
    registry = registry if registry is not None else CollectorRegistry()
    reloader = ConfigReloader(None if config.source == "flags" else config.source, config, load=load)
    registry.register(reloader)
    registry.register(guard)
    app[CONFIG] = config
    app[STORE] = store
    app[MODULES] = reloader
    app[RENDERER] = MetricsRenderer(store, registry, lambda: (store.revision, reloader.generation))
    app[SNAPSHOT_CACHE] = {}
    app[SNAPSHOT_SERVED] = Counter(
        "horizon_exporter_snapshot_bytes", "Bytes of /api/v1/snapshot answers by kind (full or delta).", ["kind"],
        registry=registry,
    )  # fmt: skip

    async def polling(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=config.max_concurrency * 3, ttl_dns_cache=30)
        # No cookie jar: a session cookie Horizon sets must never ride along to another target or a /probe.
        async with aiohttp.ClientSession(
            connector=connector, raise_for_status=False, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            app[SESSION] = session
            poller = Poller(config, store, session, clock)
            app[POLLER] = poller
            reloader.listeners.append(poller.reconfigure)
            if start_poller:
                poller.start()
            watcher = None
            if reloader.path is not None:
                watcher = asyncio.create_task(reloader.watch(), name="config-watch")
                with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
                    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.reload)
            yield
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await poller.stop()

    async def probing(app: web.Application) -> AsyncIterator[None]:
        # Probes get their own connection pool and threads: a burst of /probe cannot starve the Horizon poller of
        # connections, and decoding a large body does not stall the event loop (or /metrics rendering).
        connector = aiohttp.TCPConnector(limit=config.probe_concurrency, ttl_dns_cache=30)
        executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe")
        async with aiohttp.ClientSession(
            connector=connector, raise_for_status=False, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            app[PROBER] = Prober(
                session, executor, concurrency=config.probe_concurrency, max_body=config.max_body_bytes,
                max_timeout=config.probe_timeout_max,
            )  # fmt: skip
            yield
        executor.shutdown(wait=False, cancel_futures=True)

    async def release_waiters(app: web.Application) -> None:
        store.close()

    app.cleanup_ctx.append(polling)
    app.cleanup_ctx.append(probing)
    app.on_shutdown.append(release_waiters)
    landing = landing_page(status_page_url)

    async def _landing(request: web.Request) -> web.Response:
        return web.Response(text=landing, content_type="text/html")

    app.router.add_get("/", _landing)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/api/v1/snapshot", _snapshot)
    app.router.add_get("/probe", _probe)
    return app
