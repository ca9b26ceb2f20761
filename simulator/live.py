"""The closed loop behind `make run`: a simulated KEDA, HPA and cluster that ask the real `horizon-scaler` over gRPC
the way KEDA does and set how many pods (Horizon masters) each simulated microservice runs.

Per ScaledObject: a StreamIsActive stream (a pushed `true` is a RequestScale at once), KEDA's polling loop every
`pollingInterval` (IsActive + GetMetrics, fallback, RequestScale), and an HPA sync every 15 s (GetMetricSpec +
GetMetrics, then `simulator.hpa`, the same code the what-if engine runs). Pods are scheduled on the simulated
cluster (`simulator.cluster`), start in `pod_start` seconds and then appear as a new master in the simulated
Horizon, its supervisors near maxProcesses. Everything runs in the simulator's time, so `--speed` speeds it up —
but the stream's reconnect backoff (2 s doubling to 60 s), which is KEDA's real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import grpc

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from external_scaler.hpa import replica_proposal, report

from . import hpa
from .cluster import Cluster, NodePolicy, Pod, deletion_order
from .episodes import Episodes
from .fleet import DEMO_SCALE_DOWN_WINDOW, demo_microservices, demo_scaling
from .keda import ScaledObject, metric_quantity, request_scale, with_fallback
from .server import Simulator
from .whatif.dist import stream
from .whatif.engine import decide

log = logging.getLogger("horizon_keda.simulator.live")
RPC_TIMEOUT = 3.0  # KEDA's metrics service calls the operator with a 3 s deadline
POD_CPU = 0.5
DEMO_NODE_START = 120.0  # seconds from a node's request to ready (examples/whatif/demo.yml says the same)
DEMO_CLUSTER = NodePolicy(node_cpu=4.0, initial_nodes=3, min_nodes=3, max_nodes=8, scale_down_unneeded=600.0)


@dataclass
class Scaled:
    """One ScaledObject of the loop: its trigger metadata, KEDA's and the HPA's memory, its pods."""

    name: str
    threshold: float
    mode: str
    so: ScaledObject
    hpa: hpa.HPA
    ref: pb.ScaledObjectRef
    hpa_offset: int
    poll_offset: int
    replicas: int = 0
    pods: list[Pod] = field(default_factory=list)
    masters: dict[int, str] = field(default_factory=dict)  # pod uid → master name
    failures: int = 0
    last_active: float | None = None
    target: float | None = None
    metric_name: str | None = None
    last: dict[str, Any] = field(default_factory=dict)
    episodes: Episodes = field(default_factory=Episodes)
    stream: str = "not open yet"


class LiveLoop:
    """KEDA + HPA + cluster for every demo microservice, against the scaler at `address`."""

    def __init__(self, sim: Simulator, address: str, *, seed: int = 0, pod_start: float = 5.0,
                 hpa_sync: int = 15, polling_interval: int = 30) -> None:  # fmt: skip
        self.sim = sim
        self.address = address
        self.pod_start = pod_start
        self.sync_period = hpa_sync
        self.polling_interval = polling_interval
        self.cluster = Cluster(DEMO_CLUSTER, lambda: DEMO_NODE_START)
        self.scaled: dict[str, Scaled] = {}
        for ms in demo_microservices():
            s = demo_scaling(ms)
            phases = stream(seed, ms.name, "phases")
            u_hpa, u_keda = phases.random(), phases.random()
            meta = {"scalerAddress": address, "microservice": ms.name, "metric": "processes",
                    "threshold": f"{s['threshold']:g}", "thresholdMode": s["threshold_mode"]}  # fmt: skip
            so = ScaledObject(min_replicas=s["min_replicas"], max_replicas=s["max_replicas"])
            behavior = hpa.behavior(down=hpa.Rules(window=float(DEMO_SCALE_DOWN_WINDOW)))
            self.scaled[ms.name] = Scaled(
                ms.name, float(s["threshold"]), s["threshold_mode"], so,
                hpa.HPA(so.hpa_min_replicas, so.max_replicas, behavior),
                pb.ScaledObjectRef(name=ms.name, namespace="demo", scalerMetadata=meta),
                math.floor(u_hpa * hpa_sync), math.floor(u_keda * polling_interval),
            )  # fmt: skip
        self.tasks: list[asyncio.Task[None]] = []
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.ExternalScalerStub | None = None

    # -- the cluster and the simulated Horizons --------------------------------------------------------------

    def _adopt_running_masters(self) -> None:
        """The fleet's masters at start are pods already running."""
        now = self.sim.now()
        for sc in self.scaled.values():
            for name in self.sim.fleet.masters(sc.name):
                pod = self.cluster.create_pod(sc.name, POD_CPU, self.pod_start, now)
                self.cluster.place_initial(pod, now)
                sc.pods.append(pod)
                sc.masters[pod.uid] = name
            sc.replicas = len(sc.pods)

    def _scale_to(self, sc: Scaled, n: int, by: str, why: str) -> None:
        if n == sc.replicas:
            return
        log.info("%s: %s scales %d → %d replicas (%s)", sc.name, by, sc.replicas, n, why)
        sc.replicas = n
        self._reconcile(sc)

    def _reconcile(self, sc: Scaled) -> None:
        """The ReplicaSet: as many pods as replicas (an evicted pod is replaced); extra ones go pending first,
        then not ready, then the most recently ready."""
        now, n = self.sim.now(), sc.replicas
        while len(sc.pods) < n:
            sc.pods.append(self.cluster.create_pod(sc.name, POD_CPU, self.pod_start, now))
        if len(sc.pods) > n:
            for pod in deletion_order(sc.pods)[: len(sc.pods) - n]:
                sc.pods.remove(pod)
                self._pod_gone(sc, pod)
                self.cluster.delete_pod(pod, now)

    def _pod_gone(self, sc: Scaled, pod: Pod) -> None:
        name = sc.masters.pop(pod.uid, None)
        if name is not None:
            self.sim.sync()
            self.sim.fleet.remove_master(sc.name, name)

    def _apply_cluster(self, t: float) -> None:
        touched: dict[str, float] = {}
        for ch in self.cluster.advance(t):
            if ch.pod is None or ch.pod.service not in self.scaled:
                continue
            sc = self.scaled[ch.pod.service]
            if ch.kind == "ready":
                self.sim.sync()
                sc.masters[ch.pod.uid] = self.sim.fleet.add_master(sc.name)
            elif ch.kind == "gone":  # evicted by a node's removal
                if ch.pod in sc.pods:
                    sc.pods.remove(ch.pod)
                self._pod_gone(sc, ch.pod)
                self._reconcile(sc)
            touched[sc.name] = ch.t
        for name, at in touched.items():  # once per instant: k pods ready together close one episode
            self._track(self.scaled[name], at)

    # -- time to scale, on the true process count -----------------------------------------------------------

    def _need(self, sc: Scaled, ready: int) -> int:
        self.sim.sync()
        processes = float(self.sim.fleet.processes().get(sc.name, 0))
        rep = report(processes, sc.threshold, sc.mode)
        wanted = replica_proposal(metric_quantity(rep.value), rep.target, status_replicas=max(ready, 1),
                                  ready=max(ready, 1))  # fmt: skip
        return max(sc.so.hpa_min_replicas, min(sc.so.max_replicas, wanted))

    def _track(self, sc: Scaled, t: float) -> None:
        ready = len(sc.masters)
        sc.episodes.update(t, ready, lambda: self._need(sc, ready))

    # -- KEDA and the HPA, over gRPC --------------------------------------------------------------------------

    async def _metric(self, sc: Scaled) -> tuple[float | None, str | None]:
        """What KEDA's metrics server gets: GetMetricSpec (once), GetMetrics; a failed call is an error string."""
        assert self.stub is not None
        try:
            if sc.metric_name is None:
                specs = (await self.stub.GetMetricSpec(sc.ref, timeout=RPC_TIMEOUT)).metricSpecs
                if not specs:
                    return None, "got empty metric spec"
                target = specs[0].targetSizeFloat if specs[0].targetSizeFloat > 0 else float(specs[0].targetSize)
                if target <= 0:
                    return None, f"metric spec {specs[0].metricName!r} has no target"
                sc.metric_name, sc.target = specs[0].metricName, target
            request = pb.GetMetricsRequest(scaledObjectRef=sc.ref, metricName=sc.metric_name)
            values = (await self.stub.GetMetrics(request, timeout=RPC_TIMEOUT)).metricValues
            if not values:
                return None, f"no matching metrics found for {sc.metric_name}"
            value = values[0]
            return (value.metricValueFloat if value.metricValueFloat > 0 else float(value.metricValue)), None
        except grpc.aio.AioRpcError as exc:
            return None, f"{exc.code().name}: {exc.details()}"

    async def hpa_sync(self, sc: Scaled, t: float) -> None:
        """One HPA sync: KEDA's metrics server reads the scaler (only while the HPA needs a metric: replicas within
        [min, max]; outside it clamps without reading), fallback applies, the engine's `decide` does the rest."""
        target = sc.target if sc.target is not None else 1.0
        quantity, error = None, None
        if sc.replicas > 0 and sc.hpa.min_replicas <= sc.replicas <= sc.hpa.max_replicas:
            value, error = await self._metric(sc)
            r = with_fallback(sc.so.fallback, sc.failures, value, error, metric_type="AverageValue",
                              target=target, current=sc.replicas, ready=len(sc.masters))  # fmt: skip
            sc.failures, error = r.failures, r.error
            target = sc.target if sc.target is not None else 1.0
            quantity = None if r.error is not None or r.value is None else metric_quantity(r.value)
        decision = decide(sc.hpa, t, quantity, target, "AverageValue", sc.replicas, len(sc.pods), len(sc.masters))
        sc.last = {"t": round(t, 1), "value": quantity, "target": sc.target, "current": sc.replicas,
                   "proposal": decision.proposal, "desired": decision.desired, "error": error}  # fmt: skip
        if decision.rescale:
            why = f"metric {quantity:g} / target {target:g}" if quantity is not None else decision.reason
            self._scale_to(sc, decision.desired, "HPA", why)

    async def keda_poll(self, sc: Scaled, t: float) -> None:
        assert self.stub is not None
        value, error = await self._metric(sc)
        active = False
        if error is None:
            try:
                active = (await self.stub.IsActive(sc.ref, timeout=RPC_TIMEOUT)).result
            except grpc.aio.AioRpcError as exc:
                error = f"{exc.code().name}: {exc.details()}"
        r = with_fallback(sc.so.fallback, sc.failures, value, error, metric_type="AverageValue",
                          target=sc.target if sc.target is not None else 1.0, current=sc.replicas,
                          ready=len(sc.masters))  # fmt: skip
        sc.failures = r.failures
        result = request_scale(sc.so, sc.replicas, active or r.active, r.error is not None, t, sc.last_active)
        sc.last_active = result.last_active
        if result.scale_to is not None:
            self._scale_to(sc, result.scale_to, "KEDA", result.reason)

    async def follow_stream(self, sc: Scaled) -> None:
        """StreamIsActive with KEDA's reconnect backoff (2 s doubling to 60 s, reset after a clean end)."""
        assert self.stub is not None
        backoff = 2.0
        while True:
            call = self.stub.StreamIsActive(sc.ref)
            try:
                async for answer in call:
                    sc.stream = "active" if answer.result else "inactive"
                    if answer.result:  # a pushed false is ignored (KEDA ≥ 2.18)
                        result = request_scale(sc.so, sc.replicas, True, False, self.sim.now(), sc.last_active)
                        sc.last_active = result.last_active
                        if result.scale_to is not None:
                            self._scale_to(sc, result.scale_to, "KEDA push", result.reason)
                sc.stream, backoff = "ended by the scaler", 2.0
            except grpc.aio.AioRpcError as exc:
                sc.stream = exc.code().name
            finally:
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)

    # -- the loop ------------------------------------------------------------------------------------------------

    async def _sleep_until(self, t: float) -> None:
        delay = (t - self.sim.now()) / self.sim.speed
        if delay > 0:
            await asyncio.sleep(delay)

    async def run(self) -> None:
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = pb_grpc.ExternalScalerStub(self.channel)
        self._adopt_running_masters()
        self.tasks = [asyncio.create_task(self.follow_stream(sc), name=f"stream-{sc.name}")
                      for sc in self.scaled.values()]  # fmt: skip
        tick = math.floor(self.sim.now()) + 1
        try:
            while True:
                upcoming = self.cluster.next_time()
                if upcoming < tick:  # a pod or node ready between two ticks: at its own instant
                    await self._sleep_until(upcoming)
                    self._apply_cluster(upcoming)
                    continue
                await self._sleep_until(tick)
                self._apply_cluster(float(tick))
                calls = []
                for sc in self.scaled.values():
                    if (tick + sc.poll_offset) % self.polling_interval == 0:
                        calls.append(self.keda_poll(sc, float(tick)))
                    if (tick + sc.hpa_offset) % self.sync_period == 0:
                        calls.append(self.hpa_sync(sc, float(tick)))
                for outcome in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(outcome, Exception):  # one bad answer must not stop the loop
                        log.error("a KEDA/HPA step failed", exc_info=outcome)
                if tick % round(DEMO_CLUSTER.scan_interval) == 0:
                    self.cluster.autoscale(float(tick))
                    self._apply_cluster(float(tick))
                for sc in self.scaled.values():
                    self._track(sc, float(tick))
                tick += 1
        finally:
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.channel.close()

    def status(self) -> dict[str, Any]:
        """What `/-/live` shows: per microservice its replicas, pods, the last HPA decision and time to scale."""
        out = {}
        for sc in self.scaled.values():
            pending = sum(1 for p in sc.pods if p.node is None)
            out[sc.name] = {
                "replicas": sc.replicas, "ready": len(sc.masters), "pending": pending,
                "masters": self.sim.fleet.masters(sc.name), "threshold": sc.threshold, "mode": sc.mode,
                "stream": sc.stream, "last_hpa": sc.last,
                "time_to_scale_seconds": [round(x, 2) for x in sc.episodes.durations],
            }  # fmt: skip
        return {"t": round(self.sim.now(), 1), "nodes": self.cluster.live_node_count(), "microservices": out}
