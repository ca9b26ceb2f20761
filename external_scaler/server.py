"""The grpc.aio server: the scaler service, grpc.health.v1 tied to the source's freshness, reflection, TLS, the
maximum connection age, and the metrics interceptor when /metrics is on."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ._proto import externalscaler_pb2 as pb
from ._proto import externalscaler_pb2_grpc as pb_grpc
from .audit import AuditLog
from .metrics import ScalerMetrics
from .servicer import ScalerServicer
from .source import Source
from .tenants import TenantsFile
from .tls import ReloadingCredentials, TLSFiles

log = logging.getLogger("horizon_keda.scaler")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name
# SO_REUSEPORT (grpc's default) lets a second scaler bind the same port silently; refuse instead.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]


class ScalerServer:
    """Owns the source, the grpc server and the health watcher; `start` then `stop` (graceful)."""

    def __init__(
        self,
        source: Source,
        listen: str,
        *,
        tls: TLSFiles | None = None,
        heartbeat: float = 5.0,
        tenants: TenantsFile | None = None,
        audit: AuditLog | None = None,
        metrics: ScalerMetrics | None = None,
        max_connection_age: float | None = None,
        max_connection_age_grace: float | None = None,
        stream_max_age: float | None = None,
    ) -> None:
        """`max_connection_age` (seconds; None: never): grpc sends GOAWAY to a connection this old, so a client
        connects anew — and KEDA's grpc-go resolves the scaler's DNS name again, reaching scaler pods that came
        since. Calls in flight then get `max_connection_age_grace` (default: the age) to end before the connection
        is cut, and each StreamIsActive ends itself with OK after 80-100 % of `stream_max_age` (default: the age),
        within that grace: KEDA resets its reconnect backoff only after OK, while a stream cut with UNAVAILABLE
        would wait 2, 4, ... 60 s longer each time."""
        self.source = source
        self.listen = listen
        self.tls = ReloadingCredentials(tls) if tls is not None else None
        self.options = list(SERVER_OPTIONS)
        if max_connection_age is not None:
            grace = max_connection_age if max_connection_age_grace is None else max_connection_age_grace
            self.options += [("grpc.max_connection_age_ms", round(max_connection_age * 1000)),
                             ("grpc.max_connection_age_grace_ms", round(grace * 1000))]  # fmt: skip
            stream_max_age = max_connection_age if stream_max_age is None else stream_max_age
        self.servicer = ScalerServicer(source, heartbeat=heartbeat, tenants=tenants, audit=audit, metrics=metrics,
                                       stream_max_age=stream_max_age)  # fmt: skip
        self.metrics = metrics
        if metrics is not None:
            metrics.watch(source, lambda: self.servicer.open_streams)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind, start the source and serve; returns the bound port. Raises RuntimeError if the port is taken."""
        interceptors = [self.metrics.grpc.interceptor()] if self.metrics is not None else None
        server = grpc.aio.server(options=self.options, interceptors=interceptors)
        pb_grpc.add_ExternalScalerServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        try:
            if self.tls is not None:
                port = server.add_secure_port(self.listen, self.tls.credentials())
            else:
                port = server.add_insecure_port(self.listen)
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen on {self.listen}: {exc} (is another scaler running?)") from None
        if not port:
            raise RuntimeError(f"cannot listen on {self.listen} (is another scaler running?)")
        self.port, self._server = port, server
        await self._set_health(False)
        await self.source.start()
        await server.start()
        self._watcher = asyncio.create_task(self._watch_health(), name="health-watch")
        return port

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def _watch_health(self) -> None:
        serving: bool | None = None
        changes = self.source.changes
        while True:
            version = changes.version
            fresh = self.source.fresh
            if fresh != serving:
                await self._set_health(fresh)
                log.log(logging.WARNING if serving else logging.INFO, "health %s: %s",
                        "SERVING" if fresh else "NOT_SERVING", self.source.description)  # fmt: skip
                serving = fresh
            # The timeout catches data ageing past --max-staleness when nothing new arrives.
            await changes.wait(version, 1.0)

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful: report NOT_SERVING, end the streams with OK, finish in-flight calls, then close the source."""
        if self._server is None:
            return
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.health.enter_graceful_shutdown()
        await self.servicer.stop_streams()
        await self._server.stop(grace)
        await self.source.close()
        self._server = None

    async def wait(self) -> None:
        """Until the server terminates."""
        if self._server is not None:
            await self._server.wait_for_termination()
