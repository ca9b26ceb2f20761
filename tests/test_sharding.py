"""Sharding's pure parts: FNV-1a 64 and jump consistent hash against known values and an independent transcription,
how few targets move when the number of shards changes, a StatefulSet pod's ordinal from its name."""

from __future__ import annotations

from functools import reduce

import pytest

from exporter.sharding import Sharding, fnv64a, jump, ordinal_from_pod_name, owner

M64 = (1 << 64) - 1


def paper_jump(key: int, num_buckets: int) -> int:
    """Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014), figure 1, line by line, with
    Python ints masked to 64 bits where C++ wraps."""
    b, j = -1, 0
    while j < num_buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & M64
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def spec_fnv1a_64(text: str) -> int:
    """FNV-1a from its definition: for each octet, XOR it into the low byte, then multiply by the FNV prime."""
    return reduce(lambda h, octet: ((h ^ octet) * 0x100000001B3) % 2**64, text.encode("utf-8"), 0xCBF29CE484222325)


def names(n: int) -> list[str]:
    """Target names as a config has them: microservices, and host/path names of shared Horizons."""
    return [f"svc-{i}" if i % 3 else f"core-{i}.shop.svc/horizon" for i in range(n)]


def test_fnv64a_known_values():
    assert fnv64a("") == 0xCBF29CE484222325  # the offset basis: nothing hashed
    assert fnv64a("a") == 0xAF63DC4C8601EC8C
    assert fnv64a("foobar") == 0x85944171F73967E8
    assert fnv64a(b"foobar") == fnv64a("foobar")
    assert fnv64a("é") == spec_fnv1a_64("é") != fnv64a("e"), "UTF-8 bytes, not code points"
    for name in [*names(200), "orders", "ünïcødé-ßervice", "x" * 300]:
        assert fnv64a(name) == spec_fnv1a_64(name)


def test_jump_matches_the_reference_vectors_and_the_paper():
    # github.com/dgryski/go-jump's test table (the library kube-state-metrics uses), generated from the reference
    # C++ code: key -> bucket for 1, 2, 3, ... buckets.
    table = {
        0: [0] * 20,
        1: [0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17],
        0xDEADBEEF: [0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16],
        0x0DDC0FFEEBADF00D: [0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15],
    }
    for key, buckets in table.items():
        assert [jump(key, n) for n in range(1, len(buckets) + 1)] == buckets
    for name in names(300):
        key = fnv64a(name)
        for n in (1, 2, 3, 4, 7, 10, 64, 1000):
            assert jump(key, n) == paper_jump(key, n)
    with pytest.raises(ValueError):
        jump(1, 0)


def test_owner_is_kube_state_metrics_rule():
    # kube-state-metrics' own test (pkg/sharding/listwatch_test.go): UID "test_uid" belongs to shard 0 of 2.
    assert owner("test_uid", 2) == 0
    assert all(owner(n, 1) == 0 for n in names(100))
    counts = [0] * 4
    for n in names(10_000):
        counts[owner(n, 4)] += 1
    assert all(abs(c - 2500) < 250 for c in counts), counts


@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 8, 12])
def test_going_to_one_more_shard_moves_about_one_in_n_plus_1_and_only_to_the_new_shard(total):
    population = names(10_000)
    moved = [n for n in population if owner(n, total) != owner(n, total + 1)]
    share = len(moved) / len(population)
    # Binomial with p = 1/(N+1) over 10,000 names: the standard deviation is at most 0.005; 0.02 is 4 of them.
    assert abs(share - 1 / (total + 1)) < 0.02, share
    assert {owner(n, total + 1) for n in moved} == {total}, "a moved target goes to the new shard, nowhere else"
    # The hashmod alternative (Prometheus' relabelling: hash mod N) moves most of them.
    hashmod_moved = sum(fnv64a(n) % total != fnv64a(n) % (total + 1) for n in population) / len(population)
    assert total == 1 or hashmod_moved > 0.4


def test_going_back_moves_the_same_targets_back():
    population = names(2_000)
    for n in population:
        if owner(n, 4) != 3:
            assert owner(n, 3) == owner(n, 4), "a target the removed shard did not own stays where it is"


def test_ordinal_from_pod_name():
    assert ordinal_from_pod_name("horizon-keda-exporter-2") == 2
    assert ordinal_from_pod_name("web-10") == 10
    assert ordinal_from_pod_name("horizon-keda-7d9f8b6c4-x2kqz") is None  # a Deployment pod
    assert ordinal_from_pod_name("horizon-keda-2-canary") is None
    assert ordinal_from_pod_name("3") is None


def test_sharding_owns():
    assert Sharding().owns("anything") and Sharding(5, 1).owns("anything")
    assert Sharding(5, 1).effective_shard == 0
    population = names(500)
    owned = [{n for n in population if Sharding(i, 3).owns(n)} for i in range(3)]
    assert set().union(*owned) == set(population) and sum(map(len, owned)) == len(population)
    assert not any(Sharding(3, 3).owns(n) for n in population), "an ordinal the total leaves out owns nothing"
    assert not any(Sharding(None, 3).owns(n) for n in population)
