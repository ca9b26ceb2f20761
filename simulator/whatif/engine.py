"""The what-if engine: one world per pipeline — jobs, Horizon pods, KEDA, the HPA, pods and nodes — replayed
second by second over the same jobs (common random numbers), faster than real time.

Jobs are exact in continuous time (`pool.Pool`); pods and nodes become ready at their own instants (the cluster's
event queue); everything periodic — Horizon's balance cycles, the exporter's polls, Prometheus' scrapes, KEDA's
polling loop, the HPA's syncs, the cluster autoscaler's scans — runs on whole seconds with a per-microservice
offset, so a tick loop visits every instant at which anything can decide. docs/whatif.md says why this and not
SimPy: a generator switch per job would cost more than the whole job model.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from external_scaler.hpa import replica_proposal, report

from .. import hpa
from ..balance import Limits, rebalance_one, start_processes
from ..cluster import BINDING, Cluster, Pod, deletion_order
from ..episodes import Episodes
from ..keda import ScaledObject, ScalerError, metric_quantity, request_scale, with_fallback
from .arrivals import arrival_times, run_times
from .dist import stream
from .pipelines import Metric, View, due, make_view
from .pool import Pool
from .scenario import MicroserviceSpec, PipelineSpec, Scenario

HEARTBEAT = 5.0  # horizon-scaler's --heartbeat: StreamIsActive re-sends the state this often
ORACLE_BEHAVIOR_UP = hpa.Rules(window=0.0, select="Max", policies=(hpa.Policy("Pods", 1_000_000, 1),))


class OracleHPA(hpa.HPA):
    """The oracle's controller: `stabilize_with_behaviors` with a scale-up window of 0, which leaves the highest
    recommendation of the scale-down window; kept in a monotonic deque, because the oracle reconciles every second
    (the controller's list would hold a recommendation per second of the window)."""

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        window = self.__dict__.get("_window")
        if window is None:  # seeded with what the controller recorded so far (its initial recommendation)
            window = self.__dict__["_window"] = deque()
            for rec in self.recommendations or ():
                while window and window[-1][1] <= rec.replicas:
                    window.pop()
                window.append((rec.t, rec.replicas))
        assert self.behavior is not None
        cut = now - (self.behavior.down.window or 0.0)
        while window and window[0][0] <= cut:
            window.popleft()
        down = max(desired, window[0][1]) if window else desired
        while window and window[-1][1] <= desired:
            window.pop()
        window.append((now, desired))
        recommendation = max(current, desired)  # up: the up window is 0, so only this proposal
        return min(recommendation, down)


@dataclass(slots=True)
class Jobs:
    """A microservice's jobs, drawn once and shared by every pipeline."""

    arrivals: Any
    durations: Any


def draw_jobs(scenario: Scenario) -> dict[str, Jobs]:
    out = {}
    for ms in scenario.microservices:
        arrivals = arrival_times(ms.load.rate, scenario.duration, scenario.seed, ms.name)
        out[ms.name] = Jobs(arrivals, run_times(len(arrivals), ms.job, scenario.seed, ms.name))
    return out


def decide(
    controller: hpa.HPA, t: float, value: float | None, target: float, metric_type: str, spec_replicas: int,
    status_replicas: int, ready: int,
) -> hpa.Decision:  # fmt: skip
    """One HPA sync as the engine makes it: the replica calculator on KEDA's value (None: the read failed), then
    the controller's stabilization, policies and min/max."""
    proposal = None
    if value is not None:
        up, down = controller.tolerances()
        proposal = replica_proposal(value, target, metric_type=metric_type, status_replicas=status_replicas,
                                    spec_replicas=spec_replicas, ready=ready, tolerance_up=up,
                                    tolerance_down=down)  # fmt: skip
    return controller.reconcile(t, spec_replicas, proposal)


@dataclass(slots=True)
class Sample:
    """One second of one microservice in one pipeline (a row of timeseries.csv)."""

    t: int
    arrivals: int
    backlog: int
    processes: int
    desired: int
    ready: int
    pending: int
    nodes: int
    oldest_wait: float


@dataclass
class ServiceResult:
    name: str
    waits: Any
    queued_waits: list[float]
    time_to_scale: list[float]
    abandoned_episodes: int
    first_episode_open: float | None
    pod_seconds: float
    scale_ups: int
    scale_downs: int
    max_replicas: int
    max_ready: int
    arrived: int
    done: int
    running: int
    queued: int
    samples: list[Sample] = field(default_factory=list)


@dataclass
class PipelineResult:
    name: str
    kind: str
    services: dict[str, ServiceResult]
    node_seconds: float
    events: list[dict[str, Any]]


class Service:
    """One microservice in one pipeline's world: its queue and workers, its pods, its ScaledObject and HPA."""

    def __init__(self, world: World, spec: MicroserviceSpec, jobs: Jobs) -> None:
        self.world = world
        self.spec = spec
        self.name = spec.name
        h = spec.horizon
        self.limits = Limits(h.balance, h.min_processes, h.max_processes, "time", h.balance_max_shift)
        self.pool = Pool(jobs.arrivals, jobs.durations, h.worker_sleep)
        self.pods: list[Pod] = []
        self.processes: dict[int, int] = {}  # pod uid → worker processes (ready pods only)
        self.ready_tick: dict[int, int] = {}
        self.total_processes = 0
        pipe = world.pipe
        s = spec.scaling
        self.so: ScaledObject = s.scaled_object()
        self.metric_type = s.metric_type
        behavior = s.behavior
        if pipe.kind == "oracle" and behavior is None:
            # Without `behavior` the HPA's scale-up limit is per sync (max(2 × current, 4)); the oracle has no
            # syncs, so none. A `behavior` the user set is a choice, not a pipeline delay: the oracle keeps it.
            kube = world.scenario.kubernetes
            behavior = hpa.Behavior(ORACLE_BEHAVIOR_UP, hpa.scale_down_rules(None, kube.downscale_stabilization))
        fast = pipe.kind == "oracle" and behavior is not None and not behavior.up.window
        # the yardstick of time to scale: the microservice's own settings, the same in every pipeline
        configured = hpa.HPA(1, 1, s.behavior, world.scenario.kubernetes.tolerance)
        self.yardstick_tolerance = configured.tolerances()
        controller = OracleHPA if fast else hpa.HPA
        self.hpa = controller(self.so.hpa_min_replicas, s.max_replicas, behavior, world.scenario.kubernetes.tolerance,
                              world.scenario.kubernetes.downscale_stabilization)  # fmt: skip
        phases = stream(world.scenario.seed, spec.name, "phases")
        self.phase = {k: phases.random() for k in ("hpa", "keda", "view", "pods")}
        self.view: View = make_view(pipe, s, self.phase["view"])
        self.hpa_interval = max(1, round(pipe.hpa_sync))
        self.hpa_offset = math.floor(self.phase["hpa"] * self.hpa_interval)
        self.poll_interval = max(1, round(pipe.polling_interval or s.polling_interval))
        self.poll_offset = math.floor(self.phase["keda"] * self.poll_interval)
        self.cached = pipe.use_cached_metrics if pipe.use_cached_metrics is not None else s.use_cached_metrics
        self.pod_starts = stream(world.scenario.seed, spec.name, "pod-start")
        self.replicas = 0
        self.failures = 0
        self.last_active: float | None = None
        self.cache: tuple[Any, str | None] | None = None
        self.last_push = -math.inf
        self.pushed_active = False
        # figures
        self.pod_seconds = 0.0
        self.scale_ups = self.scale_downs = 0
        self.max_replicas = self.max_ready = 0
        self.episodes = Episodes()
        self._need_key: tuple[float, int] | None = None
        self._need = 0
        self._due: list[list[int]] = [[] for _ in range(spec.horizon.balance_cooldown)]  # pods by balance phase
        self.arrival_index = 0
        self.samples: list[Sample] = []

    # -- what is true ----------------------------------------------------------------------------------------

    @property
    def ready(self) -> int:
        return len(self.processes)

    def truth(self) -> float:
        metric = self.spec.scaling.metric
        if metric == "processes":
            return float(self.total_processes)
        if metric == "queueLength":
            return float(self.pool.length)
        # waitSeconds as Horizon estimates it: ready jobs × average runtime / processes, rounded
        work = self.pool.length * self.spec.job.expected
        return float(math.floor(work / self.total_processes + 0.5) if self.total_processes else math.floor(work + 0.5))

    def need(self) -> int:
        """Replicas the true value asks for with the ready pods there are (the yardstick of time to scale)."""
        s = self.spec.scaling
        value = self.truth()
        ready = self.ready
        key = (value, ready)
        if key == self._need_key:
            return self._need
        if ready == 0:
            need = max(1, self.so.hpa_min_replicas) if value > s.activation_threshold else 0
        else:
            rep = report(value, s.threshold, s.threshold_mode)
            up, down = self.yardstick_tolerance
            wanted = replica_proposal(metric_quantity(rep.value), rep.target, metric_type=s.metric_type,
                                      status_replicas=ready, ready=ready, tolerance_up=up,
                                      tolerance_down=down)  # fmt: skip
            need = max(self.so.hpa_min_replicas, min(s.max_replicas, wanted))
        self._need_key, self._need = key, need
        return need

    def track_episode(self, t: float) -> None:
        self.episodes.update(t, self.ready, self.need)

    # -- pods ------------------------------------------------------------------------------------------------

    def scale_to(self, n: int, t: float, by: str) -> None:
        if n == self.replicas:
            return
        self.world.log(t, self, "scale", by=by, **{"from": self.replicas, "to": n})
        if n > self.replicas:
            self.scale_ups += 1
        else:
            self.scale_downs += 1
        self.replicas = n
        self.max_replicas = max(self.max_replicas, n)
        self.reconcile_pods(t)

    def reconcile_pods(self, t: float) -> None:
        """The ReplicaSet: as many pods as `replicas`; extra ones go pending first, then not ready, then the
        most recently ready (its deletion ranking)."""
        cluster = self.world.cluster
        while len(self.pods) < self.replicas:
            delay = self.spec.pod.start.draw(self.pod_starts)
            self.pods.append(cluster.create_pod(self.name, self.spec.pod.cpu, delay, t))
        if len(self.pods) > self.replicas:
            for pod in deletion_order(self.pods)[: len(self.pods) - self.replicas]:
                self.pods.remove(pod)
                self.pod_gone(pod, t)
                cluster.delete_pod(pod, t)

    def pod_ready(self, pod: Pod, t: float) -> None:
        """Its Horizon master starts: the supervisor scales straight to its start size."""
        n = start_processes(self.limits, self.spec.horizon.start)
        self.processes[pod.uid] = n
        self.ready_tick[pod.uid] = math.ceil(t)
        self._due[math.ceil(t) % len(self._due)].append(pod.uid)
        self.total_processes += n
        self.pool.set_workers(self.total_processes, t)
        self.max_ready = max(self.max_ready, self.ready)

    def pod_gone(self, pod: Pod, t: float) -> None:
        n = self.processes.pop(pod.uid, None)
        tick = self.ready_tick.pop(pod.uid, None)
        if tick is not None:
            self._due[tick % len(self._due)].remove(pod.uid)
        if n is not None:
            self.total_processes -= n
            self.pool.set_workers(self.total_processes, t)  # busy workers finish their job first

    def balance(self, t: int) -> None:
        """Each ready pod's supervisor balances every balance_cooldown seconds from its own start."""
        due = self._due[t % len(self._due)]
        if not due:
            return
        size = self.pool.length
        changed = False
        processes = self.processes
        for uid in due:
            current = processes.get(uid)
            if current is not None and t > self.ready_tick[uid]:
                new = rebalance_one(self.limits, current, size)
                if new != current:
                    self.processes[uid] = new
                    self.total_processes += new - current
                    changed = True
        if changed:
            self.pool.set_workers(self.total_processes, t)

    # -- KEDA and the HPA ------------------------------------------------------------------------------------

    def _metric(self, t: float) -> tuple[Any, str | None]:
        try:
            return self.view.read(t), None
        except ScalerError as exc:
            return None, str(exc)

    def _fallback(self, metric: Any, error: str | None):
        r = with_fallback(self.so.fallback, self.failures, None if metric is None else metric.value, error,
                          metric_type=self.metric_type, target=self._target(), current=self.replicas,
                          ready=self.ready)  # fmt: skip
        self.failures = r.failures
        return r

    def _target(self) -> float:
        return report(0.0, self.spec.scaling.threshold, self.view.mode).target

    def keda_poll(self, t: float) -> None:
        """KEDA's polling loop: GetMetrics + IsActive (or the Prometheus query), fallback, RequestScale."""
        metric, error = self._metric(t)
        r = self._fallback(metric, error)
        if self.cached:  # KEDA's cache record holds what fallback made of the read
            cached = None if r.value is None else Metric(r.value, self._target(), r.value)
            self.cache = (cached, r.error)
        active = r.active or (
            r.error is None and metric is not None and metric.raw > self.spec.scaling.activation_threshold
        )
        result = request_scale(self.so, self.replicas, active, r.error is not None, t, self.last_active)
        self.last_active = result.last_active
        self.world.log(t, self, "keda_poll", active=active, error=r.error, failures=self.failures,
                       fallback=r.active, reason=result.reason, scale_to=result.scale_to)  # fmt: skip
        if result.scale_to is not None:
            self.scale_to(result.scale_to, t, "keda")

    def push(self, t: float) -> None:
        """A pushed `true` reached KEDA: RequestScale(active) at once (scale from zero; refresh LastActiveTime)."""
        result = request_scale(self.so, self.replicas, True, False, t, self.last_active)
        self.last_active = result.last_active
        if result.scale_to is not None:
            self.world.log(t, self, "push", active=True, scale_to=result.scale_to)
            self.scale_to(result.scale_to, t, "push")

    def hpa_sync(self, t: float) -> None:
        """One HPA reconcile: KEDA's metrics server reads the trigger (live, or KEDA's cache), fallback applies,
        the replica calculator proposes, the controller decides."""
        r = None
        if self.replicas > 0 and self.hpa.min_replicas <= self.replicas <= self.hpa.max_replicas:
            # only then does the HPA ask for the metric (outside, it clamps without reading)
            if self.cached and self.cache is not None:
                metric, error = self.cache
            else:
                metric, error = self._metric(t)
            r = self._fallback(metric, error)
        value = None
        if r is not None and r.error is None and r.value is not None:
            value = metric_quantity(r.value)
        decision = decide(self.hpa, t, value, self._target(), self.metric_type, self.replicas, len(self.pods),
                          self.ready)  # fmt: skip
        self.world.log(t, self, "hpa", value=value, target=self._target(), current=self.replicas,
                       ready=self.ready, proposal=decision.proposal, stabilized=decision.stabilized,
                       desired=decision.desired, reason=decision.reason,
                       error=None if r is None else r.error, fallback=bool(r and r.active))  # fmt: skip
        if decision.rescale:
            self.scale_to(decision.desired, t, "hpa")

    def oracle(self, t: float) -> None:
        """The oracle: KEDA's activation and the HPA's arithmetic on the true value, every second — no pipeline, no
        sync period, no per-sync scale-up limit; a `behavior` the user set (windows, policies) is kept."""
        value = self.view.raw(t)
        active = value > self.spec.scaling.activation_threshold
        result = request_scale(self.so, self.replicas, active, False, t, self.last_active)
        self.last_active = result.last_active
        if result.scale_to is not None:
            self.scale_to(result.scale_to, t, "oracle")
        if self.replicas == 0:
            return
        metric = self.view.read(t)
        decision = decide(self.hpa, t, metric_quantity(metric.value), metric.target, self.metric_type,
                          self.replicas, len(self.pods), self.ready)  # fmt: skip
        if decision.rescale:
            self.world.log(t, self, "oracle", value=metric.value, target=metric.target, current=self.replicas,
                           proposal=decision.proposal, desired=decision.desired)  # fmt: skip
            self.scale_to(decision.desired, t, "oracle")

    # -- each second -----------------------------------------------------------------------------------------

    def sample(self, t: int, nodes: int) -> None:
        arrivals = self.pool.arrivals
        end = bisect.bisect_right(arrivals, t, lo=self.arrival_index)
        pending = 0
        bound = 0
        for p in self.pods:
            if p.node is None or p.state == BINDING:
                pending += 1
            else:
                bound += 1
        self.pod_seconds += bound
        self.samples.append(Sample(t, end - self.arrival_index, self.pool.length, self.total_processes,
                                   self.replicas, self.ready, pending, nodes, self.pool.oldest_wait(t)))  # fmt: skip
        self.arrival_index = end

    def result(self, end: float) -> ServiceResult:
        pool = self.pool
        pool.advance(end)
        queued_waits = [end - pool.arrivals[j] for j in pool.queue]
        return ServiceResult(
            name=self.name, waits=pool.waits, queued_waits=queued_waits, time_to_scale=self.episodes.durations,
            abandoned_episodes=self.episodes.passing,
            first_episode_open=None if self.episodes.start is None else end - self.episodes.start,
            pod_seconds=self.pod_seconds, scale_ups=self.scale_ups, scale_downs=self.scale_downs,
            max_replicas=self.max_replicas, max_ready=self.max_ready, arrived=pool.next_job, done=pool.done,
            running=pool.running, queued=pool.length, samples=self.samples,
        )  # fmt: skip


class World:
    """Everything one pipeline runs: the services, the shared cluster, the fault windows, the event log."""

    def __init__(self, scenario: Scenario, pipe: PipelineSpec, jobs: dict[str, Jobs]) -> None:
        self.scenario = scenario
        self.pipe = pipe
        c = scenario.cluster
        policy = c.node_policy()
        node_stream = stream(scenario.seed, "node-start")
        self.cluster = Cluster(policy, lambda: c.node_start.draw(node_stream))
        self.events: list[dict[str, Any]] = []
        self.services = {ms.name: Service(self, ms, jobs[ms.name]) for ms in scenario.microservices}
        self._pushes: list[tuple[float, int, str]] = []
        self._push_seq = 0
        self.scan_interval = max(1, round(c.scan_interval)) if c.provisioner == "cluster-autoscaler" else 1
        for i in range(c.headroom.pods):
            pod = self.cluster.create_pod("headroom", c.headroom.cpu, 0.0, 0.0, placeholder=True)
            self.cluster.place_initial(pod, 0.0)
            del i
        for svc in self.services.values():  # pods that were running before t = 0, at min_processes
            svc.replicas = svc.spec.start_replicas
            for _ in range(svc.replicas):
                pod = self.cluster.create_pod(svc.name, svc.spec.pod.cpu, svc.spec.pod.start.draw(svc.pod_starts), 0.0)
                svc.pods.append(pod)
                if self.cluster.place_initial(pod, 0.0):
                    svc.processes[pod.uid] = svc.spec.horizon.min_processes
                    svc.ready_tick[pod.uid] = 0
                    svc._due[0].append(pod.uid)
                    svc.total_processes += svc.spec.horizon.min_processes
            svc.pool.set_workers(svc.total_processes, 0.0)
            svc.max_replicas = svc.replicas
            svc.max_ready = svc.ready
        self._handle(self.cluster.advance(0.0))

    def log(self, t: float, svc: Service | None, kind: str, **fields: Any) -> None:
        entry = {"t": round(t, 3), "pipeline": self.pipe.name, "microservice": svc.name if svc else None,
                 "kind": kind}  # fmt: skip
        entry.update(fields)
        self.events.append(entry)

    def _fault(self, t: float, kind: str, microservice: str | None = None) -> bool:
        return any(f.kind == kind and f.start <= t < f.end and (microservice is None or f.microservice == microservice)
                   for f in self.scenario.faults)  # fmt: skip

    def _handle(self, changes: list[Any]) -> None:
        """Apply the cluster's changes; a service whose pods changed is checked for its scale-up episode once per
        instant, after every change of that instant (k pods ready together close one episode, not k)."""
        touched: dict[Service, float] = {}
        for ch in changes:
            for svc, at in list(touched.items()):
                if at < ch.t:
                    svc.track_episode(at)
                    del touched[svc]
            if ch.kind in ("ready", "gone") and ch.pod is not None and not ch.pod.placeholder:
                svc = self.services[ch.pod.service]
                touched[svc] = ch.t
                svc.pool.advance(ch.t)
                if ch.kind == "ready":
                    svc.pod_ready(ch.pod, ch.t)
                else:
                    if ch.pod in svc.pods:
                        svc.pods.remove(ch.pod)
                    svc.pod_gone(ch.pod, ch.t)
                    svc.reconcile_pods(ch.t)  # the ReplicaSet replaces an evicted pod
            elif ch.kind in ("node_requested", "node_ready", "node_removed"):
                self.log(ch.t, None, "node", action=ch.kind.removeprefix("node_"), node=ch.node.uid,
                         nodes=self.cluster.live_node_count(), detail=ch.detail)  # fmt: skip
            elif ch.kind == "preempted":
                self.log(ch.t, None, "preempted", node=ch.node.uid, placeholder=ch.pod.uid)
        for svc, at in touched.items():
            svc.track_episode(at)

    def _run_until(self, t: float) -> None:
        """One-off events (pods and nodes becoming ready, pushes reaching KEDA) up to `t`, in time order."""
        while True:
            next_cluster = self.cluster.next_time()
            next_push = self._pushes[0][0] if self._pushes else math.inf
            when = min(next_cluster, next_push)
            if when > t:
                break
            if next_push <= next_cluster:
                _, _, name = heapq.heappop(self._pushes)
                svc = self.services[name]
                svc.pool.advance(when)
                svc.push(when)
                self._handle(self.cluster.advance(when))
            else:
                self._handle(self.cluster.advance(when))

    def run(self) -> PipelineResult:
        s = self.scenario
        pipe = self.pipe
        faults_logged: set[tuple[int, str]] = set()
        for t in range(1, s.duration + 1):
            self._run_until(t)
            self._handle(self.cluster.advance(t))
            for i, f in enumerate(s.faults):
                for edge, at in (("start", f.start), ("end", f.end)):
                    if t - 1 < at <= t and (i, edge) not in faults_logged:
                        faults_logged.add((i, edge))
                        self.log(at, None, "fault", fault=f.kind, edge=edge, target=f.microservice)
            exporter_down = self._fault(t, "metrics_down")
            horizon_down = {f.microservice for f in s.faults if f.kind == "horizon_down" and f.start <= t < f.end}
            for svc in self.services.values():
                svc.pool.advance(t)
                svc.balance(t)
                reachable = not exporter_down and svc.name not in horizon_down
                new = svc.view.observe(t, reachable, svc.truth())
                if pipe.kind == "push" and new:
                    try:
                        active = svc.view.raw(t) > svc.spec.scaling.activation_threshold
                    except ScalerError:
                        active = False  # the stream says nothing rather than a guess
                    was, svc.pushed_active = svc.pushed_active, active
                    if active and svc.replicas > 0:
                        # the stream sends on a change and every heartbeat (5 s): each refreshes LastActiveTime
                        if not was or t - svc.last_push >= HEARTBEAT:
                            svc.last_push = t
                            svc.last_active = t + pipe.push_delay
                    elif active and t - svc.last_push >= 1.0:
                        svc.last_push = t
                        self._push_seq += 1
                        heapq.heappush(self._pushes, (t + pipe.push_delay, self._push_seq, svc.name))
                if pipe.kind == "oracle":
                    svc.oracle(t)
                else:
                    if due(t, svc.poll_interval, svc.poll_offset):
                        svc.keda_poll(t)
                    if due(t, svc.hpa_interval, svc.hpa_offset):
                        svc.hpa_sync(t)
            if due(t, self.scan_interval, 0):
                self.cluster.autoscale(t)
                self._handle(self.cluster.advance(t))
            nodes = self.cluster.live_node_count()
            for svc in self.services.values():
                svc.track_episode(t)
                svc.sample(t, nodes)
        self._run_until(float(s.duration))
        end = float(s.duration)
        self.cluster.advance(end)
        return PipelineResult(pipe.name, pipe.kind, {n: svc.result(end) for n, svc in self.services.items()},
                              self.cluster.node_seconds, self.events)  # fmt: skip


def simulate(scenario: Scenario, jobs: dict[str, Jobs] | None = None) -> list[PipelineResult]:
    """Run every pipeline of `scenario` over the same jobs."""
    jobs = jobs if jobs is not None else draw_jobs(scenario)
    return [World(scenario, pipe, jobs).run() for pipe in scenario.pipelines]
