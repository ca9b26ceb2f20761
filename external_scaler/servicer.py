"""KEDA's ExternalScaler service: translates KEDA's messages to trigger reads and back, and nothing else."""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc

from ._proto import externalscaler_pb2 as pb
from ._proto import externalscaler_pb2_grpc as pb_grpc
from .audit import AuditLog
from .hpa import legacy_int, reached_replicas, report
from .metadata import MetadataError, Trigger, parse_metadata
from .metrics import ScalerMetrics
from .readings import NotFound, Stale, Unavailable, UnknownMicroservice
from .source import Source
from .tenants import TenantsFile

log = logging.getLogger("horizon_keda.scaler")

_INDEX_PREFIX = re.compile(r"^s\d+-")
_CACHE_LIMIT = 1024


def _fmt(value: float) -> str:
    return f"{value:g}"


class DecisionLog:
    """Remembers the last decision per trigger so that only a change is logged."""

    def __init__(self) -> None:
        self._last: dict[tuple[object, ...], object] = {}

    def changed(self, trigger: Trigger, kind: str, decision: object) -> bool:
        """Record `decision`; True when it differs from the last one (callers format the log line only then)."""
        key = (trigger.metric_name, kind, trigger.activation_threshold, trigger.threshold, trigger.mode)
        if self._last.get(key, ...) == decision:
            return False
        self._last[key] = decision
        return True

    @staticmethod
    def log(message: str, **fields: object) -> None:
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        log.info("%s (%s)", message, kv)


class ScalerServicer(pb_grpc.ExternalScalerServicer):
    """IsActive / StreamIsActive / GetMetricSpec / GetMetrics over one Source."""

    def __init__(
        self,
        source: Source,
        *,
        heartbeat: float = 5.0,
        tenants: TenantsFile | None = None,
        audit: AuditLog | None = None,
        metrics: ScalerMetrics | None = None,
        stream_max_age: float | None = None,
    ) -> None:
        """`stream_max_age`: end each StreamIsActive with OK after 80–100 % of this many seconds (see ScalerServer)."""
        self.source = source
        self.heartbeat = heartbeat
        self.stream_max_age = stream_max_age
        self.tenants = tenants
        self.audit = audit
        self.metrics = metrics
        self.open_streams = 0
        self.decisions = DecisionLog()
        self._stopping = False
        # Parsed metadata by the ScaledObjectRef's deterministic serialization, least recently used first. KEDA
        # repeats the same few refs on every poll; serializing (in C) is several times cheaper than walking the
        # protobuf map in Python, and the hot path then runs no parsing at all.
        self._triggers: dict[bytes, Trigger | MetadataError] = {}

    async def stop_streams(self) -> None:
        """End every StreamIsActive with OK (used on SIGTERM so KEDA's reconnect backoff starts afresh)."""
        self._stopping = True
        self.source.changes.publish()

    # -- helpers -------------------------------------------------------------------------------------------

    def _parse(self, ref: pb.ScaledObjectRef) -> Trigger | MetadataError:
        key = ref.SerializeToString(deterministic=True)
        cache = self._triggers
        parsed = cache.pop(key, None)
        if parsed is None:
            try:
                parsed = parse_metadata(ref.scalerMetadata)
            except MetadataError as exc:
                parsed = exc
            if len(cache) >= _CACHE_LIMIT:
                del cache[next(iter(cache))]
        cache[key] = parsed  # (re)inserted last: the dict's order is the LRU order
        return parsed

    async def _refuse(
        self,
        context: grpc.aio.ServicerContext,
        rpc: str,
        ref: pb.ScaledObjectRef,
        code: grpc.StatusCode,
        message: str,
        reason: str,
    ) -> NoReturn:
        """Answer with an error status, and say so in the audit trail and the metrics (`reason`: metrics.REFUSALS)."""
        if self.audit is not None:
            self.audit.refused(ref.namespace, ref.name, rpc, code.name, message)
        if self.metrics is not None:
            self.metrics.refused(rpc, reason)
        await _abort(context, code, message)

    async def _trigger(self, ref: pb.ScaledObjectRef, context: grpc.aio.ServicerContext, rpc: str) -> Trigger:
        parsed = self._parse(ref)
        if isinstance(parsed, MetadataError):
            await self._refuse(context, rpc, ref, grpc.StatusCode.INVALID_ARGUMENT, f"{_who(ref)}: {parsed}",
                               "metadata")  # fmt: skip
        if self.tenants is not None and not self.tenants.policy(time.monotonic()).allows(
            ref.namespace, parsed.microservice
        ):
            # Decided before any lookup: the same answer whether the microservice exists or not.
            message = f"namespace {ref.namespace!r} may not read microservice {parsed.microservice!r} (tenants policy)"
            await self._refuse(context, rpc, ref, grpc.StatusCode.PERMISSION_DENIED, f"{_who(ref)}: {message}",
                               "tenancy")  # fmt: skip
        return parsed

    async def _read_failed(
        self, ref: pb.ScaledObjectRef, trigger: Trigger, exc: Exception, context: grpc.aio.ServicerContext, rpc: str
    ) -> NoReturn:
        """Turn a failed `source.read` into the status KEDA sees."""
        if self.metrics is not None:
            self.metrics.asked(ref.namespace, ref.name, trigger)
        if isinstance(exc, UnknownMicroservice) and self.tenants is not None:
            # Its usual message lists every microservice the exporter reports: other tenants' names.
            message = f"unknown microservice {trigger.microservice!r}"
            await self._refuse(context, rpc, ref, grpc.StatusCode.NOT_FOUND, f"{_who(ref)}: {message}",
                               "unknown_microservice")  # fmt: skip
        if isinstance(exc, NotFound):
            reason = "unknown_microservice" if isinstance(exc, UnknownMicroservice) else "unknown_queue"
            await self._refuse(context, rpc, ref, grpc.StatusCode.NOT_FOUND, f"{_who(ref)}: {exc}", reason)
        if isinstance(exc, Unavailable):
            reason = "stale" if isinstance(exc, Stale) else "unavailable"
            await self._refuse(context, rpc, ref, grpc.StatusCode.UNAVAILABLE, f"{_who(ref)}: {exc}", reason)
        # A bug must still reach KEDA as a status, never as UNKNOWN.
        log.error("%s: reading %s failed", _who(ref), trigger.metric_name, exc_info=exc)
        await self._refuse(context, rpc, ref, grpc.StatusCode.INTERNAL, f"{_who(ref)}: internal error: {exc}",
                           "internal")  # fmt: skip

    def _active(self, ref: pb.ScaledObjectRef, trigger: Trigger, value: float) -> bool:
        active = value > trigger.activation_threshold
        if self.audit is not None:
            self.audit.decision(ref.namespace, ref.name, trigger, "active", value, active)
        if self.metrics is not None:
            self.metrics.decided_active(ref.namespace, ref.name, trigger, value, active)
        if self.decisions.changed(trigger, "active", active):
            sign, word = (">", "active") if active else ("≤", "inactive")
            self.decisions.log(
                f"{trigger.subject} {_fmt(value)} {sign} {_fmt(trigger.activation_threshold)} → {word}",
                microservice=trigger.microservice, metric=trigger.metric, value=_fmt(value),
                active=str(active).lower(),
            )  # fmt: skip
        return active

    def _scale(self, ref: pb.ScaledObjectRef, trigger: Trigger, value: float) -> None:
        wanted = reached_replicas(value, trigger.threshold)
        if self.audit is not None:
            self.audit.decision(ref.namespace, ref.name, trigger, "scale", value, wanted)
        if self.metrics is not None:
            self.metrics.decided_replicas(ref.namespace, ref.name, trigger, value, wanted)
        if self.decisions.changed(trigger, "scale", wanted):
            reached = (wanted - 1) * trigger.threshold
            relation = f"≥ {_fmt(reached)}" if wanted > 1 else f"< {_fmt(trigger.threshold)}"
            self.decisions.log(
                f"{trigger.subject} {_fmt(value)} {relation} → {wanted} replica(s)",
                microservice=trigger.microservice, metric=trigger.metric, value=_fmt(value), mode=trigger.mode,
                replicas=wanted,
            )  # fmt: skip

    # -- RPCs ----------------------------------------------------------------------------------------------

    async def IsActive(self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext) -> pb.IsActiveResponse:
        trigger = await self._trigger(request, context, "IsActive")
        try:
            value = await self.source.read(trigger)
        except Exception as exc:
            await self._read_failed(request, trigger, exc, context, "IsActive")
        return pb.IsActiveResponse(result=self._active(request, trigger, value))

    async def StreamIsActive(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.IsActiveResponse]:
        trigger = await self._trigger(request, context, "StreamIsActive")
        changes = self.source.changes
        metrics = self.metrics
        self.open_streams += 1
        # Spread over 80-100 %: KEDA opens every ScaledObject's stream at once when its operator starts.
        ends_at = (
            math.inf
            if self.stream_max_age is None
            else time.monotonic() + self.stream_max_age * random.uniform(0.8, 1.0)
        )
        try:
            last: bool | None = None
            sent_at = 0.0
            while not self._stopping and time.monotonic() < ends_at:
                version, changed_at = changes.version, changes.published_at
                try:
                    active: bool | None = self._active(request, trigger, await self.source.read(trigger))
                except (NotFound, Unavailable):
                    active = None  # say nothing rather than a guess; IsActive/GetMetrics report the error
                    if metrics is not None:
                        metrics.asked(request.namespace, request.name, trigger)
                now = time.monotonic()
                if active is not None and (active != last or now - sent_at >= self.heartbeat):
                    yield pb.IsActiveResponse(result=active)
                    if metrics is not None:  # resumed: grpc has written it
                        if last is None:
                            metrics.pushed("first")
                        elif active != last:
                            # From the newest change this decision reflects (several may have come in together).
                            metrics.pushed("change", time.monotonic() - changed_at)
                        else:
                            metrics.pushed("heartbeat")
                    last, sent_at = active, now
                due = self.heartbeat - (time.monotonic() - sent_at) if last is not None else self.heartbeat
                await changes.wait(version, max(min(due, ends_at - time.monotonic()), 0.0))
        finally:
            self.open_streams -= 1

    async def GetMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricSpecResponse:
        trigger = await self._trigger(request, context, "GetMetricSpec")
        if self.metrics is not None:
            self.metrics.asked(request.namespace, request.name, trigger)
        target = report(0.0, trigger.threshold, trigger.mode).target
        spec = pb.MetricSpec(metricName=trigger.metric_name, targetSize=max(1, legacy_int(target)),
                             targetSizeFloat=target)  # fmt: skip
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        ref = request.scaledObjectRef
        trigger = await self._trigger(ref, context, "GetMetrics")
        asked = request.metricName
        # KEDA < 2.7 sent `s0-`-prefixed names and ≤ 2.11 lowercased them; both still mean our one metric.
        if asked != trigger.metric_name and _INDEX_PREFIX.sub("", asked.lower()) != trigger.metric_name:
            await self._refuse(context, "GetMetrics", ref, grpc.StatusCode.NOT_FOUND,
                               f"{_who(ref)}: metric {asked!r} is not served for this trigger; "
                               f"GetMetricSpec advertises {trigger.metric_name!r}", "unknown_metric")  # fmt: skip
        try:
            value = await self.source.read(trigger)
        except Exception as exc:
            await self._read_failed(ref, trigger, exc, context, "GetMetrics")
        self._scale(ref, trigger, value)
        reported = report(value, trigger.threshold, trigger.mode).value
        response = pb.GetMetricsResponse()
        # `add` builds the element in place: half the cost of constructing a MetricValue and copying it in.
        response.metricValues.add(metricName=trigger.metric_name, metricValue=legacy_int(reported),
                                  metricValueFloat=reported)  # fmt: skip
        return response

    async def StreamMetricSpec(
        self, request: pb.ScaledObjectRef, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GetMetricSpecResponse]:
        await self._refuse(context, "StreamMetricSpec", request, grpc.StatusCode.UNIMPLEMENTED,
                           "StreamMetricSpec: targets are static; use GetMetricSpec", "unimplemented")  # fmt: skip
        yield pb.GetMetricSpecResponse()  # pragma: no cover - makes this an async generator


def _who(ref: pb.ScaledObjectRef) -> str:
    return f"ScaledObject {ref.namespace or '-'}/{ref.name or '-'}"


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
