"""Pods and nodes: a scheduler, pod start-up, placeholder (headroom) pods that real pods preempt, and a node
autoscaler in the manner of the cluster autoscaler or Karpenter. A state machine over explicit times, no clock.

What it follows, with sources in docs/whatif.md: the scheduler binds a pod to a node whose free allocatable CPU
covers its request, preferring the least allocated node (NodeResourcesFit's default); a pod that fits nowhere
is Pending; a real pod preempts placeholder pods (priority -10) and binds when they are gone. The cluster
autoscaler scans every `scan_interval`, packs unschedulable pods first into nodes already being provisioned
(first-fit decreasing), asks for new nodes for the rest, and removes a node whose requests stay under
`scale_down_utilization` and whose pods fit elsewhere for `scale_down_unneeded` seconds, not within
`scale_down_delay_after_add` of a scale-up; the pods of a removed node are recreated elsewhere. Karpenter reacts
to pending pods in batches (`batch_idle`, `batch_max`) and consolidates a node whose pods fit elsewhere.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PENDING, BINDING, STARTING, READY = "pending", "binding", "starting", "ready"
_EPS = 1e-9


@dataclass(eq=False, slots=True)
class Pod:
    """One pod: a replica of a service (`placeholder` ones keep room for them)."""

    uid: int
    service: str
    cpu: float
    created: float
    start_delay: float
    placeholder: bool = False
    state: str = PENDING
    node: Node | None = None
    bound_at: float | None = None
    ready_at: float | None = None
    deleted: bool = False


@dataclass(eq=False, slots=True)
class Node:
    uid: int
    cpu: float
    created: float
    ready_at: float
    pods: list[Pod] = field(default_factory=list)
    ready: bool = False
    unneeded_since: float | None = None
    removed_at: float | None = None
    used: float = 0.0  # CPU requested by its pods, kept in step by `add` and `remove`

    @property
    def free(self) -> float:
        return self.cpu - self.used

    def add(self, pod: Pod) -> None:
        self.pods.append(pod)
        self.used += pod.cpu

    def remove(self, pod: Pod) -> None:
        self.pods.remove(pod)
        self.used = sum(p.cpu for p in self.pods)  # re-summed: no drift from float subtraction


@dataclass(frozen=True, slots=True)
class NodePolicy:
    """How nodes come and go (a `ClusterSpec` of the scenario, or the live loop's settings)."""

    node_cpu: float
    initial_nodes: int
    min_nodes: int
    max_nodes: int
    provisioner: str = "cluster-autoscaler"
    scan_interval: float = 10.0
    batch_idle: float = 1.0
    batch_max: float = 10.0
    scale_down_unneeded: float = 600.0
    scale_down_delay_after_add: float = 600.0
    scale_down_utilization: float = 0.5
    preemption_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """Something the owner of the pods must react to: a pod became ready, or a ready/starting pod went away."""

    t: float
    kind: str  # "ready" | "gone" | "node_requested" | "node_ready" | "node_removed" | "preempted"
    pod: Pod | None = None
    node: Node | None = None
    detail: str = ""


class Cluster:
    """Nodes, pods and the node autoscaler; `advance(t)` runs due events and returns what changed."""

    def __init__(self, policy: NodePolicy, node_start: Callable[[], float], start: float = 0.0) -> None:
        self.policy = policy
        self._node_start = node_start  # draws a provisioning delay for the next node asked for
        self._uids = itertools.count(1)
        self._seq = itertools.count()
        self._events: list[tuple[float, int, str, object]] = []
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []  # every live (not deleted) pod
        self.changes: list[Change] = []
        self.last_scale_up = -float("inf")
        self._batch_start: float | None = None
        self._batch_last: float | None = None
        self._pending_seen = 0
        self.node_seconds = 0.0
        self._node_clock = start
        for _ in range(policy.initial_nodes):
            node = Node(next(self._uids), policy.node_cpu, start, start, ready=True)
            self.nodes.append(node)

    # -- the owner's requests ------------------------------------------------------------------------------------

    def create_pod(self, service: str, cpu: float, start_delay: float, t: float, *, placeholder: bool = False) -> Pod:
        pod = Pod(next(self._uids), service, cpu, t, start_delay, placeholder)
        self.pods.append(pod)
        self._schedule(t)
        return pod

    def delete_pod(self, pod: Pod, t: float) -> None:
        """Delete a pod now (its resources are free at once; the owner handles its workers)."""
        if pod.deleted:
            return
        pod.deleted = True
        self.pods.remove(pod)
        if pod.node is not None:
            pod.node.remove(pod)
        self._schedule(t)

    def place_initial(self, pod: Pod, t: float) -> bool:
        """Bind a pod that was already running before the simulation starts: ready at `t`, if it fits."""
        self._schedule(t, only=pod)
        if pod.state in (STARTING, BINDING):
            pod.state, pod.ready_at = READY, t
            self._drop_event(pod)
            return True
        return False

    # -- time ----------------------------------------------------------------------------------------------------

    def next_time(self) -> float:
        return self._events[0][0] if self._events else float("inf")

    def advance(self, t: float) -> list[Change]:
        """Run every event due at or before `t` (in time order) and return the changes since the last call."""
        while self._events and self._events[0][0] <= t + _EPS:
            when, _, kind, obj = heapq.heappop(self._events)
            self._account(when)
            if kind == "pod_ready":
                pod = obj
                if not pod.deleted and pod.state == STARTING and pod.ready_at == when:
                    pod.state = READY
                    self.changes.append(Change(when, "ready", pod))
            elif kind == "pod_bind":
                pod = obj
                if not pod.deleted and pod.state == BINDING:
                    self._start(pod, when)
            elif kind == "node_ready":
                node = obj
                if node.removed_at is None:
                    node.ready = True
                    self.changes.append(Change(when, "node_ready", node=node))
                    self._schedule(when)
        self._account(t)
        out, self.changes = self.changes, []
        return out

    def _account(self, t: float) -> None:
        if t > self._node_clock:
            self.node_seconds += (t - self._node_clock) * sum(1 for n in self.nodes if n.removed_at is None)
            self._node_clock = t

    def _push(self, when: float, kind: str, obj: object) -> None:
        heapq.heappush(self._events, (when, next(self._seq), kind, obj))

    def _drop_event(self, pod: Pod) -> None:
        self._events = [e for e in self._events if e[3] is not pod]
        heapq.heapify(self._events)

    # -- scheduling ----------------------------------------------------------------------------------------------

    def pending(self) -> list[Pod]:
        return [p for p in self.pods if p.state == PENDING]

    def _schedule(self, t: float, only: Pod | None = None) -> None:
        """Bind what fits, real pods first (they preempt placeholders), each in creation order."""
        queue = [only] if only is not None else sorted(self.pending(), key=lambda p: (p.placeholder, p.created, p.uid))
        preempted = False
        for pod in queue:
            if pod.state != PENDING:
                continue
            node = self._best_fit(pod)
            if node is not None:
                self._bind(pod, node, t)
            elif not pod.placeholder:
                preempted |= self._preempt(pod, t)
        if preempted and only is None:
            self._schedule(t)  # the evicted placeholders may fit on another node right away

    def _best_fit(self, pod: Pod) -> Node | None:
        best, best_share = None, -1.0
        for node in self.nodes:
            if node.ready and node.removed_at is None and node.free + _EPS >= pod.cpu:
                share = node.free / node.cpu  # LeastAllocated: the node with most free capacity
                if share > best_share + _EPS:
                    best, best_share = node, share
        return best

    def _bind(self, pod: Pod, node: Node, t: float) -> None:
        pod.node = node
        node.add(pod)
        node.unneeded_since = None
        self._start(pod, t)

    def _start(self, pod: Pod, t: float) -> None:
        pod.state, pod.bound_at = STARTING, t
        pod.ready_at = t + pod.start_delay
        self._push(pod.ready_at, "pod_ready", pod)

    def _preempt(self, pod: Pod, t: float) -> bool:
        for node in self.nodes:
            if not node.ready or node.removed_at is not None:
                continue
            holders = sorted((p for p in node.pods if p.placeholder), key=lambda p: -p.cpu)
            if node.free + sum(p.cpu for p in holders) + _EPS < pod.cpu:
                continue
            freed = node.free
            for victim in holders:
                if freed + _EPS >= pod.cpu:
                    break
                node.remove(victim)
                self._drop_event(victim)
                victim.node, victim.state, victim.bound_at, victim.ready_at = None, PENDING, None, None
                freed += victim.cpu
                self.changes.append(Change(t, "preempted", victim, node))
            pod.node = node
            node.add(pod)
            if self.policy.preemption_seconds > 0:
                pod.state = BINDING
                self._push(t + self.policy.preemption_seconds, "pod_bind", pod)
            else:
                self._start(pod, t)
            return True
        return False

    # -- node autoscaling ----------------------------------------------------------------------------------------

    def _live_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.removed_at is None]

    def unschedulable(self) -> list[Pod]:
        """Pending pods that fit on no ready node as it is now."""
        return [p for p in self.pending() if self._best_fit(p) is None]

    def autoscale(self, t: float) -> None:
        """One pass of the node autoscaler at `t` (the caller calls it every `scan_interval` for the cluster
        autoscaler, every second for Karpenter, whose batching decides when to act)."""
        self._account(t)
        waiting = self.unschedulable()
        if self.policy.provisioner == "karpenter":
            if waiting:
                if self._batch_start is None:
                    self._batch_start = t
                if len(waiting) != self._pending_seen:
                    self._batch_last, self._pending_seen = t, len(waiting)
                last = t if self._batch_last is None else self._batch_last
                idle = t - last >= self.policy.batch_idle
                if idle or t - self._batch_start >= self.policy.batch_max:
                    self._scale_up(waiting, t)
                    self._batch_start = self._batch_last = None
                    self._pending_seen = 0
                return
            self._batch_start = self._batch_last = None
            self._pending_seen = 0
        elif waiting and self._scale_up(waiting, t):
            return
        self._scale_down(t)

    def _scale_up(self, waiting: list[Pod], t: float) -> bool:
        upcoming = [n.cpu - 0.0 for n in self._live_nodes() if not n.ready]
        needed = _bins_needed(sorted((p.cpu for p in waiting), reverse=True), upcoming, self.policy.node_cpu)
        room = self.policy.max_nodes - len(self._live_nodes())
        count = min(needed, room)
        for _ in range(count):
            delay = self._node_start()
            node = Node(next(self._uids), self.policy.node_cpu, t, t + delay)
            self.nodes.append(node)
            self._push(node.ready_at, "node_ready", node)
            self.changes.append(Change(t, "node_requested", node=node, detail=f"ready in {delay:.0f}s"))
        if count:
            self.last_scale_up = t
        return count > 0

    def _scale_down(self, t: float) -> None:
        p = self.policy
        live = [n for n in self._live_nodes() if n.ready]
        removable = len(self._live_nodes()) - p.min_nodes
        for node in sorted(live, key=lambda n: (n.used / n.cpu, -n.uid)):
            others = [n for n in live if n is not node and n.removed_at is None]
            fits = _fits_elsewhere([q.cpu for q in node.pods], [n.free for n in others])
            if node.used / node.cpu < p.scale_down_utilization and fits:
                if node.unneeded_since is None:
                    node.unneeded_since = t
            else:
                node.unneeded_since = None
        if t - self.last_scale_up < p.scale_down_delay_after_add:
            return  # the unneeded time keeps counting through the cooldown; nothing is removed during it
        # empty nodes go first (in bulk), then the least used; a non-empty node is drained one at a time
        for node in sorted(live, key=lambda n: (bool(n.pods), n.used / n.cpu, n.unneeded_since or 0.0, n.uid)):
            if removable <= 0:
                break
            if node.unneeded_since is not None and t - node.unneeded_since >= p.scale_down_unneeded:
                drained = bool(node.pods)
                self._remove(node, t)
                removable -= 1
                if drained:
                    break

    def _remove(self, node: Node, t: float) -> None:
        self._account(t)
        node.removed_at = t
        evicted, node.pods, node.used = list(node.pods), [], 0.0
        self.changes.append(Change(t, "node_removed", node=node, detail=f"{len(evicted)} pods evicted"))
        for pod in evicted:
            self._drop_event(pod)
            pod.node = None
            if pod.placeholder:
                pod.state, pod.bound_at, pod.ready_at = PENDING, None, None
            else:  # the owner sees it gone; its ReplicaSet makes a replacement
                pod.deleted = True
                self.pods.remove(pod)
                self.changes.append(Change(t, "gone", pod, detail="evicted by scale-down"))
        self._schedule(t)

    def live_node_count(self) -> int:
        return len(self._live_nodes())


def deletion_order(pods: Iterable[Pod]) -> list[Pod]:
    """Which pods a ReplicaSet deletes first when it scales down: unscheduled and pending ones, then not ready, then
    the most recently ready (kube-controller-manager's `ActivePodsWithRanks`, simplified to what is modelled)."""
    rank = {PENDING: 0, BINDING: 0, STARTING: 1, READY: 2}
    return sorted(pods, key=lambda p: (rank[p.state], -(p.ready_at or 0.0), -p.uid))


def _bins_needed(sizes: Iterable[float], upcoming: list[float], capacity: float) -> int:
    """First-fit decreasing: pack `sizes` into the `upcoming` nodes' room, then count new bins of `capacity`."""
    bins = list(upcoming)
    n_upcoming = len(bins)
    for size in sizes:
        for i, room in enumerate(bins):
            if room + _EPS >= size:
                bins[i] = room - size
                break
        else:
            if size > capacity + _EPS:
                continue  # fits on no node at all: no node would help
            bins.append(capacity - size)
    return len(bins) - n_upcoming


def _fits_elsewhere(sizes: list[float], free: list[float]) -> bool:
    room = list(free)
    for size in sorted(sizes, reverse=True):
        for i, r in enumerate(room):
            if r + _EPS >= size:
                room[i] = r - size
                break
        else:
            return False
    return True
