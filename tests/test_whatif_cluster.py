"""Pods and nodes: scheduling by free CPU, Pending when nothing fits, the cluster autoscaler's scale-up and
scale-down, Karpenter's batches, and placeholder pods that real pods preempt."""

from __future__ import annotations

from simulator.cluster import PENDING, READY, STARTING, Cluster, NodePolicy


def cluster(**overrides) -> Cluster:
    policy = dict(node_cpu=2.0, initial_nodes=1, min_nodes=1, max_nodes=5, scan_interval=10.0,
                  scale_down_unneeded=600.0, scale_down_delay_after_add=600.0)  # fmt: skip
    policy.update(overrides)
    return Cluster(NodePolicy(**policy), lambda: 100.0)


def test_a_pod_that_fits_starts_and_is_ready_after_its_start_delay():
    c = cluster()
    pod = c.create_pod("orders", 1.0, 5.0, 0.0)
    assert pod.state == STARTING
    assert c.advance(4.9) == []
    [change] = c.advance(5.0)
    assert (change.kind, change.pod, pod.state) == ("ready", pod, READY)


def test_pods_that_do_not_fit_stay_pending_until_a_node_is_provisioned():
    c = cluster()
    a, b, late = (c.create_pod("orders", 1.0, 5.0, 0.0) for _ in range(3))
    assert (a.state, b.state, late.state) == (STARTING, STARTING, PENDING)
    c.autoscale(10.0)
    requested = [ch for ch in c.advance(10.0) if ch.kind == "node_requested"]
    assert len(requested) == 1, "one node for one pending pod"
    c.autoscale(20.0)
    assert not [ch for ch in c.advance(20.0) if ch.kind == "node_requested"], "the upcoming node already counts"
    changes = c.advance(110.0)
    assert [ch.kind for ch in changes] == ["node_ready"] and late.state == STARTING
    assert [ch.kind for ch in c.advance(115.0)] == ["ready"]


def test_the_autoscaler_never_exceeds_max_nodes():
    c = cluster(max_nodes=2)
    for _ in range(10):
        c.create_pod("orders", 1.0, 5.0, 0.0)
    c.autoscale(10.0)
    c.advance(10.0)
    assert c.live_node_count() == 2


def test_an_unneeded_node_is_removed_after_the_unneeded_time_empty_ones_first():
    c = cluster(initial_nodes=2, min_nodes=1, scale_down_unneeded=60.0, scale_down_delay_after_add=0.0)
    c.create_pod("orders", 0.5, 1.0, 0.0)
    for t in range(10, 70, 10):
        c.autoscale(float(t))
        c.advance(float(t))
        assert c.live_node_count() == 2, f"too early at {t}s"
    c.autoscale(70.0)
    assert [ch.kind for ch in c.advance(70.0)] == ["node_removed"]
    assert c.live_node_count() == 1


def test_scale_down_waits_for_the_delay_after_a_scale_up():
    c = cluster(initial_nodes=1, scale_down_unneeded=10.0, scale_down_delay_after_add=600.0)
    c.create_pod("orders", 2.0, 1.0, 0.0)
    extra = c.create_pod("orders", 2.0, 1.0, 0.0)
    c.autoscale(10.0)
    c.advance(200.0)
    c.delete_pod(extra, 200.0)
    for t in range(210, 600, 10):
        c.autoscale(float(t))
        assert c.live_node_count() == 2, t
    c.autoscale(620.0)
    c.autoscale(630.0)
    assert c.live_node_count() == 1


def test_pods_of_a_removed_node_are_evicted_and_reported_gone():
    c = cluster(initial_nodes=2, scale_down_unneeded=0.0, scale_down_delay_after_add=0.0)
    pods = [c.create_pod("orders", 0.5, 1.0, 0.0) for _ in range(2)]  # least allocated: one on each node
    assert {p.node.uid for p in pods} == {n.uid for n in c.nodes}
    c.advance(5.0)
    c.autoscale(10.0)
    changes = c.advance(10.0)
    assert [ch.kind for ch in changes] == ["node_removed", "gone"]
    assert changes[1].pod.deleted


def test_a_real_pod_preempts_placeholders_and_they_go_pending():
    c = cluster(initial_nodes=1)
    holders = [c.create_pod("headroom", 0.5, 0.0, 0.0, placeholder=True) for _ in range(4)]
    assert all(h.node is not None for h in holders)
    real = c.create_pod("orders", 1.0, 5.0, 1.0)
    assert real.state == STARTING and real.node is not None, "bound at once (grace period 0)"
    evicted = [h for h in holders if h.state == PENDING]
    assert len(evicted) == 2
    c.autoscale(10.0)
    assert [ch.kind for ch in c.advance(10.0)].count("node_requested") == 1, "evicted placeholders ask for a node"


def test_karpenter_waits_for_a_quiet_second_before_launching_a_batch():
    c = cluster(provisioner="karpenter", batch_idle=1.0, batch_max=10.0)
    c.create_pod("orders", 2.0, 1.0, 0.0)
    c.create_pod("orders", 2.0, 1.0, 0.0)
    c.autoscale(1.0)
    assert c.live_node_count() == 1, "the batch is still open"
    c.create_pod("orders", 2.0, 1.0, 1.5)
    c.autoscale(2.0)
    assert c.live_node_count() == 1
    c.autoscale(3.0)
    assert c.live_node_count() == 3, "two pending pods of 2 CPU: two nodes in one batch"


def test_node_minutes_count_every_node_from_request_to_removal():
    c = cluster(initial_nodes=1, scale_down_unneeded=0.0, scale_down_delay_after_add=0.0)
    c.create_pod("orders", 2.0, 1.0, 0.0)
    extra = c.create_pod("orders", 2.0, 1.0, 0.0)
    c.autoscale(10.0)  # a second node from t = 10, ready at 110
    c.advance(110.0)
    c.delete_pod(extra, 130.0)
    c.advance(140.0)
    c.autoscale(140.0)  # unneeded at once: removed at 140
    c.advance(200.0)
    assert c.node_seconds == 200.0 + 130.0
