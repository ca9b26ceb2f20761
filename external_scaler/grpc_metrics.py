"""gRPC server metrics under the names grpc-ecosystem's Go interceptors use, recorded by a grpc.aio server
interceptor, so dashboards built for those interceptors read the scaler unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from .instruments import Histogram

# Sources, read for this module (public repositories):
# - grpc-ecosystem/go-grpc-prometheus server_metrics.go, server_reporter.go, util.go: the five family names, their
#   label names and help texts, grpc_type values (unary, client_stream, server_stream, bidi_stream), the method
#   split, and the message counting: a unary call counts one message received and, when it ends OK, one sent; a
#   stream counts each message written or read. (go-grpc-middleware v2, providers/prometheus server_metrics.go,
#   reporter.go, constants.go and interceptors/server.go, keeps the names and labels; it counts a unary send even
#   on error.)
# - grpc/grpc-go codes/code_string.go: grpc_code is Code.String().
# - prometheus/client_golang prometheus/histogram.go: DefBuckets, the default buckets of
#   grpc_server_handling_seconds in both libraries (prometheus_client's own default differs).
GO_DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# grpc-go's Code.String(): CamelCase, and Go spells CANCELLED with one L.
GO_CODE_NAMES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}

LABELS = ("grpc_type", "grpc_service", "grpc_method")


def split_method(full_method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` → (`pkg.Service`, `Method`); anything else → (`unknown`, `unknown`), as in Go."""
    service, sep, method = full_method.removeprefix("/").partition("/")
    return (service, method) if sep else ("unknown", "unknown")


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    """go-grpc-prometheus' grpc_type of a handler."""
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def final_code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with: what the handler set or aborted with; a cancelled handler is a deadline
    that passed or a client that went away; any other exception reaches the client as UNKNOWN."""
    if isinstance(exc, GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the stream was closed at a write: the client went away
    if isinstance(exc, asyncio.CancelledError):
        remaining = context.time_remaining()
        expired = remaining is not None and remaining <= 0
        return grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if exc is None else grpc.StatusCode.UNKNOWN


class MethodStats:
    """The counters of one method (one label set); `handled` by Go code name."""

    __slots__ = ("handled", "handling", "labels", "received", "sent", "started")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.started = self.received = self.sent = 0
        self.handled: dict[str, int] = {}
        self.handling = Histogram(GO_DEFAULT_BUCKETS)

    def done(self, code: grpc.StatusCode, started_at: float) -> None:
        name = GO_CODE_NAMES.get(code, "Unknown")
        self.handled[name] = self.handled.get(name, 0) + 1
        self.handling.observe(time.perf_counter() - started_at)


class _CountingContext:
    """The servicer context of a reader/writer-style handler (grpc_health's Watch), counting writes and reads."""

    def __init__(self, context: grpc.aio.ServicerContext, stats: MethodStats) -> None:
        self._context, self._stats = context, stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def write(self, message: Any) -> None:
        await self._context.write(message)
        self._stats.sent += 1

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not grpc.aio.EOF:
            self._stats.received += 1
        return message


class GrpcServerMetrics:
    """A prometheus_client collector of the five grpc_server_* families, fed by `interceptor()`.

    State is plain integers touched only on the event loop (handlers and /metrics both run there), so the hot
    path takes no lock; label sets are bounded by the methods the server registers."""

    def __init__(self) -> None:
        self.methods: dict[str, MethodStats] = {}

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """The interceptor to pass to `grpc.aio.server(interceptors=[...])`."""
        return MetricsInterceptor(self)

    def stats(self, full_method: str, handler: grpc.RpcMethodHandler) -> MethodStats:
        stats = self.methods.get(full_method)
        if stats is None:
            stats = self.methods[full_method] = MethodStats((rpc_type(handler), *split_method(full_method)))
        return stats

    def describe(self) -> Iterator[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        return self._families()

    def _families(self) -> Iterator[Metric]:
        # Help texts verbatim from go-grpc-prometheus' server_metrics.go.
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=LABELS
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=(*LABELS, "grpc_code"),
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received", "Total number of RPC stream messages received on the server.", labels=LABELS
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent", "Total number of gRPC stream messages sent by the server.", labels=LABELS
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            labels=LABELS,
        )
        for stats in self.methods.values():
            labels = list(stats.labels)
            started.add_metric(labels, stats.started)
            received.add_metric(labels, stats.received)
            sent.add_metric(labels, stats.sent)
            for code, count in sorted(stats.handled.items()):
                handled.add_metric([*labels, code], count)
            if stats.handling.count:
                handling.add_metric(labels, stats.handling.cumulative(), stats.handling.sum)
        yield from (started, handled, received, sent, handling)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler the server finds (unary and streaming, generator or reader/writer style) so that it
    counts the call's start, its messages, its status code and its duration."""

    def __init__(self, metrics: GrpcServerMetrics) -> None:
        self._metrics = metrics
        # Wrapped handler by method: grpc asks the interceptor on every call, and the server's handler of a method
        # is the same object each time, so the wrapper is built once instead of per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself, as go's interceptors never see it
            return handler
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, wrap(handler, self._metrics.stats(method, handler)))
        return cached[1]


def wrap(handler: grpc.RpcMethodHandler, stats: MethodStats) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour measured into `stats` (a synchronous handler, which this server never has,
    is passed through unmeasured)."""
    behavior = handler.unary_unary or handler.stream_unary or handler.unary_stream or handler.stream_stream
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        return handler
    serializers = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}  # fmt: skip
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary_response(handler.unary_unary, stats, False), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_unary_response(handler.stream_unary, stats, True), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_stream_response(handler.unary_stream, stats, False),
                                                    **serializers)  # fmt: skip
    return grpc.stream_stream_rpc_method_handler(_stream_response(handler.stream_stream, stats, True), **serializers)


async def _counted(requests: AsyncIterator[Any], stats: MethodStats) -> AsyncIterator[Any]:
    async for request in requests:
        stats.received += 1
        yield request


def _unary_response(behavior: Callable[..., Any], stats: MethodStats, streaming_request: bool) -> Callable[..., Any]:
    async def measured(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started_at = time.perf_counter()
        stats.started += 1
        if streaming_request:
            request = _counted(request, stats)
        else:
            stats.received += 1
        code = grpc.StatusCode.UNKNOWN
        try:
            response = await behavior(request, context)
        except BaseException as exc:
            code = final_code(context, exc)
            raise
        else:
            code = final_code(context, None)
            if code is grpc.StatusCode.OK:
                stats.sent += 1
            return response
        finally:
            stats.done(code, started_at)

    return measured


def _stream_response(behavior: Callable[..., Any], stats: MethodStats, streaming_request: bool) -> Callable[..., Any]:
    # grpc.aio tells the two handler styles apart by the function's kind, so the wrapper must be of the same kind.
    if inspect.iscoroutinefunction(behavior):

        async def measured_writer(request: Any, context: grpc.aio.ServicerContext) -> None:
            started_at = time.perf_counter()
            stats.started += 1
            if not streaming_request:
                stats.received += 1
            code = grpc.StatusCode.UNKNOWN
            try:
                await behavior(request, _CountingContext(context, stats))
            except BaseException as exc:
                code = final_code(context, exc)
                raise
            else:
                code = final_code(context, None)
            finally:
                stats.done(code, started_at)

        return measured_writer

    async def measured(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started_at = time.perf_counter()
        stats.started += 1
        if streaming_request:
            request = _counted(request, stats)
        else:
            stats.received += 1
        code = grpc.StatusCode.UNKNOWN
        try:
            async with contextlib.aclosing(behavior(request, context)) as responses:
                async for response in responses:
                    yield response
                    stats.sent += 1  # resumed: grpc has written it (a failed write closes the generator at the yield)
        except BaseException as exc:
            code = final_code(context, exc)
            raise
        else:
            code = final_code(context, None)
        finally:
            stats.done(code, started_at)

    return measured
