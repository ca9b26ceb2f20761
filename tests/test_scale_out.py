"""Scale-out on loopback, with the real console scripts: 3 `horizon-exporter` shards reading one config file and 2
`horizon-scaler` replicas following every shard, over 300 fake Horizons served by one helper process
(tests/fake_fleet.py) — issue 14, item 5.

* Every target is polled by exactly one shard, its owner: the fleet counts each Horizon's requests by the
  `X-Fleet-Client` header, which the shared config sets from each exporter process's own environment.
* Both scalers answer every microservice, with the same value (the fleet's, never 0), through the generated gRPC
  client.
* `kill -9` of a shard: its microservices turn UNAVAILABLE on both scalers within `--max-staleness` + 1 s while every
  other microservice keeps answering its value, without one error; restarted, the shard's microservices answer again
  within seconds. A shard that hangs instead (SIGSTOP: no connection reset to notice) is found out by staleness
  alone, within the same bound.
* A reshard 3 → 4 (a fourth exporter started and the file's `sharding.total_shards` changed, applied by SIGHUP)
  moves about a quarter of the targets, all to the new shard; at no sample is a microservice's freshest reading
  over all shards' snapshots older than two poll intervals (plus slack for a loaded machine), and the scalers answer
  throughout without one error.

The scalers are given a fourth `--exporter` from the start, the address the added shard will have (as one lists a
StatefulSet's pods by their stable names; a `dns+` headless Service would find it within `--resolve-interval`):
until then that exporter is unreachable, which changes no answer about a microservice the others report.

The processes run for the whole module (each test is one step of the story, in file order); logs are in the
temporary directory named by a failure's message. The figures measured are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.sharding import owner
from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from tests.conftest import free_port
from tests.fake_fleet import CLIENT_HEADER, processes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = 300
NAMES = [f"ms-{i:03d}" for i in range(TARGETS)]  # one Horizon per microservice; the target is named after it
EXPECTED = {name: float(processes(i)) for i, name in enumerate(NAMES)}
POLL = 0.5  # the exporters' poll interval
MAX_STALENESS = 3.0  # the scalers' --max-staleness
GRACE = 12.0  # sharding.handoff_grace: covers the new shard's start and the scalers' reconnect backoff (≤ 5 s)
SLACK = 1.0  # on top of two poll intervals: scheduling on a shared, loaded machine
# A restarted shard's microservices answer again this long after it is ready: the scalers retry a lost exporter with
# a backoff capped at 5 s, then its first answer and polls. (Its own start, Python's, is measured, not bounded.)
BACK_AFTER_READY = 5.0 + 2 * POLL + SLACK


@dataclass
class Process:
    """One console script of the topology; `start` again after `kill` runs the same command."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.popen = subprocess.Popen(self.argv, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT,
                                          env={**os.environ, **self.env}, start_new_session=True)  # fmt: skip

    def signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None and self.popen.poll() is None, f"{self.name} is not running"
        self.popen.send_signal(sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.popen is not None
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Topology:
    tmp: Path
    fleet_url: str
    config: Path
    exporters: list[Process]  # shards 0-3; shard 3 starts at the reshard
    exporter_urls: list[str]
    scalers: list[Process]
    scaler_addresses: list[str]
    scaler_metrics: list[str]

    def write_config(self, total_shards: int) -> None:
        """The one config file every shard reads, replaced atomically (as a ConfigMap's symlink swap)."""
        targets = [{"microservice": n, "url": f"{self.fleet_url}/h/{i}/horizon",
                    "headers": {CLIENT_HEADER: "${FLEET_CLIENT}"}} for i, n in enumerate(NAMES)]  # fmt: skip
        config = {"poll_interval": POLL, "sharding": {"total_shards": total_shards, "handoff_grace": GRACE},
                  "targets": targets}  # fmt: skip
        tmp = self.config.with_suffix(".new")
        tmp.write_text(json.dumps(config))  # JSON is YAML
        os.replace(tmp, self.config)

    def where(self) -> str:
        return f"(logs in {self.tmp})"


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _wait_http(url: str, timeout: float, topology_tmp: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _get(url)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} not ready within {timeout:g}s (logs in {topology_tmp})") from None
            time.sleep(0.1)


def reserve_port() -> socket.socket:
    """A loopback port held for an exporter that starts later, or starts again: bound and never listening, so no
    other socket takes it meanwhile (not even an outgoing connection choosing its source port), while the exporter,
    binding with SO_REUSEADDR as aiohttp does, still can. Connections to it are refused, as to no one."""
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", 0))
    return held


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    tmp = tmp_path_factory.mktemp("scale-out")
    fleet_port = free_port()
    fleet = Process("fleet", [sys.executable, "-m", "tests.fake_fleet", "--port", str(fleet_port), "--targets",
                              str(TARGETS)], tmp / "fleet.log")  # fmt: skip
    held = [reserve_port() for _ in range(4)]
    exporter_ports = [h.getsockname()[1] for h in held]
    urls = [f"http://127.0.0.1:{p}" for p in exporter_ports]
    config = tmp / "config.yml"
    # The number of shards comes from the file alone (--total-shards would win over it at a reload too).
    exporters = [
        Process(f"shard-{i}", [str(BIN / "horizon-exporter"), "--config", str(config), "--shard", str(i),
                               "--listen", f"127.0.0.1:{port}"], tmp / f"shard-{i}.log", {"FLEET_CLIENT": f"shard-{i}"})
        for i, port in enumerate(exporter_ports)
    ]  # fmt: skip
    scaler_ports = [free_port() for _ in range(2)]
    metrics_ports = [free_port() for _ in range(2)]
    scalers = [
        Process(f"scaler-{j}", [str(BIN / "horizon-scaler"), "--listen", f"127.0.0.1:{port}",
                                *(a for url in urls for a in ("--exporter", url)),
                                "--max-staleness", f"{MAX_STALENESS:g}", "--metrics-listen", f"127.0.0.1:{mport}"],
                tmp / f"scaler-{j}.log")
        for j, (port, mport) in enumerate(zip(scaler_ports, metrics_ports, strict=True))
    ]  # fmt: skip
    top = Topology(tmp, f"http://127.0.0.1:{fleet_port}", config, exporters, urls, scalers,
                   [f"127.0.0.1:{p}" for p in scaler_ports],
                   [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports])  # fmt: skip
    top.write_config(total_shards=3)
    everything = [fleet, *exporters, *scalers]
    try:
        fleet.start()
        _wait_http(f"{top.fleet_url}/-/log", 60, tmp)
        for process in [*exporters[:3], *scalers]:
            process.start()
        for url in urls[:3]:
            _wait_http(f"{url}/readyz", 60, tmp)  # 200 once every target the shard owns was polled
        yield top
    finally:
        for process in reversed(everything):
            process.stop()
        for socket_ in held:
            socket_.close()


# -- reading the scalers and the shards ------------------------------------------------------------------------

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
Answer = float | grpc.StatusCode


def _request(name: str) -> pb.GetMetricsRequest:
    meta = {"scalerAddress": "horizon-scaler:6000", "microservice": name, "thresholdMode": "average"}
    ref = pb.ScaledObjectRef(name=f"{name}-so", namespace="shop", scalerMetadata=meta)
    return pb.GetMetricsRequest(scaledObjectRef=ref, metricName=f"horizon-{name}-processes")


REQUESTS = {name: _request(name) for name in NAMES}


@asynccontextmanager
async def stubs(top: Topology) -> AsyncIterator[list[pb_grpc.ExternalScalerStub]]:
    channels = [grpc.aio.insecure_channel(a) for a in top.scaler_addresses]
    try:
        yield [pb_grpc.ExternalScalerStub(c) for c in channels]
    finally:
        for channel in channels:
            await channel.close()


async def _get_metrics(stub: pb_grpc.ExternalScalerStub, name: str) -> tuple[Answer, float]:
    """GetMetrics for `name`'s processes: the value or the status code, and when the answer came (monotonic)."""
    try:
        answer = await stub.GetMetrics(REQUESTS[name], timeout=10)
        value: Answer = answer.metricValues[0].metricValueFloat
    except grpc.aio.AioRpcError as exc:
        value = exc.code()
    return value, time.monotonic()


async def sweep(
    scalers: list[pb_grpc.ExternalScalerStub], names: list[str] = NAMES
) -> list[dict[str, tuple[Answer, float]]]:
    """Every microservice of `names` from every scaler, at once."""
    per_scaler = await asyncio.gather(*(asyncio.gather(*(_get_metrics(s, n) for n in names)) for s in scalers))
    return [dict(zip(names, answers, strict=True)) for answers in per_scaler]


async def every_answer(scalers: list[pb_grpc.ExternalScalerStub], top: Topology, timeout: float = 30.0) -> None:
    """Wait until both scalers answer every microservice with its value."""
    deadline = time.monotonic() + timeout
    while True:
        wrong = {(j, n): a for j, answers in enumerate(await sweep(scalers)) for n, (a, _) in answers.items()
                 if a != EXPECTED[n]}  # fmt: skip
        if not wrong:
            return
        assert time.monotonic() < deadline, (
            f"{len(wrong)} answers wrong, e.g. {sorted(wrong.items())[:5]} {top.where()}"
        )
        await asyncio.sleep(0.2)


async def watch_loss(
    scalers: list[pb_grpc.ExternalScalerStub], lost: set[str], since: float, at_least: float, what: str
) -> tuple[dict[tuple[int, str], float], int]:
    """After a shard stopped answering at `since` (monotonic): until each of its microservices (`lost`) has answered
    UNAVAILABLE on every scaler and `at_least` seconds have passed, sweep the others, which must answer their values
    every time, and, apart and more often (for a finer time of loss), the lost ones, which answer their value or
    UNAVAILABLE, and stay UNAVAILABLE once they are. When each (scaler, microservice) first answered UNAVAILABLE, and
    how many sweeps of the others ran."""
    kept = sorted(set(NAMES) - lost)
    gone_at: dict[tuple[int, str], float] = {}
    done = asyncio.Event()
    sweeps = 0

    async def watch_lost() -> None:
        while len(gone_at) < len(scalers) * len(lost):
            assert time.monotonic() - since < at_least + 10, f"{len(scalers) * len(lost) - len(gone_at)} still answer"
            for j, answers in enumerate(await sweep(scalers, sorted(lost))):
                for name, (answer, at) in answers.items():
                    if answer == UNAVAILABLE:
                        gone_at.setdefault((j, name), at)
                    else:
                        assert answer == EXPECTED[name] and (j, name) not in gone_at, (j, name, answer)
            await asyncio.sleep(0.02)
        await asyncio.sleep(max(0.0, since + at_least - time.monotonic()))
        done.set()

    async def watch_kept() -> None:
        nonlocal sweeps
        while not done.is_set():
            for j, answers in enumerate(await sweep(scalers, kept)):
                check_answers(answers, set(kept), f"scaler {j}, {time.monotonic() - since:.1f}s after {what}")
            sweeps += 1
            await asyncio.sleep(0.05)

    async with asyncio.TaskGroup() as group:  # a failed check in either ends both
        group.create_task(watch_lost())
        group.create_task(watch_kept())
    return gone_at, sweeps


def check_answers(answers: dict[str, tuple[Answer, float]], names: set[str], where: str) -> None:
    """Each of `names` answered its value: no error, never 0."""
    wrong = {n: answers[n][0] for n in names if answers[n][0] != EXPECTED[n]}
    assert not wrong, f"{where}: {len(wrong)} microservices answered wrong: {sorted(wrong.items())[:5]}"


async def snapshots(session: aiohttp.ClientSession, urls: list[str]) -> list[tuple[dict[str, Any] | None, float]]:
    """Every shard's snapshot document (None for a shard that does not answer) and when it arrived (Unix time)."""

    async def one(url: str) -> tuple[dict[str, Any] | None, float]:
        try:
            async with session.get(f"{url}/api/v1/snapshot", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                doc = await resp.json() if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            doc = None
        return doc, time.time()

    return list(await asyncio.gather(*(one(u) for u in urls)))


async def fleet_log(top: Topology, session: aiohttp.ClientSession, seconds: float) -> dict[str, dict[str, int]]:
    """Which client asked which Horizon how often, over the next `seconds`."""
    async with session.post(f"{top.fleet_url}/-/log/reset") as resp:
        assert resp.status == 200
    await asyncio.sleep(seconds)
    async with session.get(f"{top.fleet_url}/-/log") as resp:
        return (await resp.json())["counts"]


def check_one_poller_each(counts: dict[str, dict[str, int]], total: int, top: Topology) -> None:
    pollers = {NAMES[int(i)]: set(clients) for i, clients in counts.items()}
    assert set(pollers) == set(NAMES), f"{len(set(NAMES) - set(pollers))} Horizons were not polled {top.where()}"
    wrong = {n: sorted(c) for n, c in pollers.items() if c != {f"shard-{owner(n, total)}"}}
    assert not wrong, f"polled by other than exactly their owner: {sorted(wrong.items())[:5]} {top.where()}"


def owned(shard: int, total: int) -> set[str]:
    return {n for n in NAMES if owner(n, total) == shard}


async def _ready_at(url: str, timeout: float = 60.0) -> float:
    """When (monotonic) the exporter at `url` first answers /readyz with 200: every target it owns polled once."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return time.monotonic()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def exporter_fresh(top: Topology, session: aiohttp.ClientSession) -> list[dict[str, float]]:
    """Per scaler: `horizon_scaler_exporter_fresh` by exporter URL."""
    out = []
    for url in top.scaler_metrics:
        async with session.get(url) as resp:
            text = await resp.text()
        fresh = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "horizon_scaler_exporter_fresh":
                    fresh[s.labels["exporter"]] = s.value
        out.append(fresh)
    return out


# -- the story -------------------------------------------------------------------------------------------------


async def test_every_target_is_polled_by_exactly_one_shard(topology):
    async with aiohttp.ClientSession() as session:
        counts = await fleet_log(topology, session, 3 * POLL)
        check_one_poller_each(counts, 3, topology)
        polls = sorted(sum(c.values()) for c in counts.values())
        assert polls[0] >= 2, "every Horizon was polled in those three poll intervals"
        docs = [doc for doc, _ in await snapshots(session, topology.exporter_urls[:3])]
    for shard, doc in enumerate(docs):
        assert doc is not None and (doc["shard"], doc["total_shards"]) == (shard, 3)
        assert set(doc["targets"]) == owned(shard, 3), "a shard's snapshot holds exactly the targets it owns"
        assert set(doc["microservices"]) == owned(shard, 3)
    print(f"\n3 shards own {[len(owned(s, 3)) for s in range(3)]} of {TARGETS} targets; requests per Horizon in "
          f"{3 * POLL:g}s: {polls[0]}-{polls[-1]}")  # fmt: skip


async def test_both_scalers_answer_for_every_microservice_alike(topology):
    async with stubs(topology) as scalers:
        await every_answer(scalers, topology)
        first, second = await sweep(scalers)
    assert {n: a for n, (a, _) in first.items()} == {n: a for n, (a, _) in second.items()} == EXPECTED
    assert min(EXPECTED.values()) > 0


async def test_kill_9_of_a_shard_makes_only_its_microservices_unavailable_until_it_is_back(topology):
    victim = 1
    lost, kept = owned(victim, 3), set(NAMES) - owned(victim, 3)
    async with stubs(topology) as scalers:
        await every_answer(scalers, topology)
        topology.exporters[victim].kill9()
        killed = time.monotonic()
        # Past max-staleness + 1 s too: a staleness that spread to the others would show by then.
        gone_at, sweeps = await watch_loss(scalers, lost, killed, MAX_STALENESS + 1.5, "kill -9")
        latency = max(gone_at.values()) - killed
        assert latency <= MAX_STALENESS + 1, f"UNAVAILABLE only {latency:.2f}s after kill -9 {topology.where()}"

        topology.exporters[victim].start()
        restarted = time.monotonic()
        ready = asyncio.create_task(_ready_at(topology.exporter_urls[victim]))
        back_at: dict[tuple[int, str], float] = {}
        while len(back_at) < 2 * len(lost):
            waited = time.monotonic() - restarted
            if ready.done():
                assert time.monotonic() - ready.result() < BACK_AFTER_READY, (
                    f"{2 * len(lost) - len(back_at)} answers not back {topology.where()}"
                )
            for j, answers in enumerate(await sweep(scalers)):
                check_answers(answers, kept, f"scaler {j}, {waited:.1f}s after the restart")
                for name in lost:
                    answer, at = answers[name]
                    if answer == EXPECTED[name]:
                        back_at.setdefault((j, name), at)
                    else:
                        assert answer == UNAVAILABLE and (j, name) not in back_at, (j, name, answer)
            await asyncio.sleep(0.1)
        back = max(back_at.values()) - restarted
        ready_at = await ready
        ready_after = ready_at - restarted
        assert max(back_at.values()) - ready_at <= BACK_AFTER_READY, f"{back:.2f}s, ready after {ready_after:.2f}s"
    print(f"\nkill -9 of shard {victim} ({len(lost)} microservices): all UNAVAILABLE on both scalers after "
          f"{latency:.2f}s (first {min(gone_at.values()) - killed:.2f}s; bound {MAX_STALENESS + 1:g}s), "
          f"{sweeps} sweeps of the others without an error; restarted: ready after "
          f"{ready_after:.2f}s, all back after {back:.2f}s (bound: ready + {BACK_AFTER_READY:g}s)")  # fmt: skip


async def test_a_hung_shard_is_found_out_by_staleness_alone(topology):
    """kill -9 closes the shard's connections, which the scalers see at once; a shard that hangs (SIGSTOP: no reset,
    no answer) is found out only by --max-staleness, the bound item 5 names."""
    victim = 2
    lost = owned(victim, 3)
    async with stubs(topology) as scalers:
        await every_answer(scalers, topology)
        topology.exporters[victim].signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            gone_at, sweeps = await watch_loss(scalers, lost, stopped, MAX_STALENESS + 1.5, "SIGSTOP")
        finally:
            topology.exporters[victim].signal(signal.SIGCONT)
        latency = max(gone_at.values()) - stopped
        assert latency <= MAX_STALENESS + 1, f"UNAVAILABLE only {latency:.2f}s after SIGSTOP {topology.where()}"
        resumed = time.monotonic()
        await every_answer(scalers, topology)
        back = time.monotonic() - resumed
    print(f"\nSIGSTOP of shard {victim}: its {len(lost)} microservices UNAVAILABLE on both scalers after {latency:.2f}s"
          f" (first {min(gone_at.values()) - stopped:.2f}s; bound {MAX_STALENESS + 1:g}s), {sweeps} sweeps of the "
          f"others without an error; SIGCONT: all back after {back:.2f}s")  # fmt: skip


async def test_a_reshard_3_to_4_moves_a_quarter_to_the_new_shard_without_a_gap(topology):
    before = [owned(s, 3) for s in range(3)]
    urls = topology.exporter_urls
    worst: dict[str, float] = dict.fromkeys(NAMES, 0.0)
    handed: list[set[str]] = [set(), set(), set()]
    samples = sweeps = 0
    stop = asyncio.Event()

    async def watch_snapshots(session: aiohttp.ClientSession) -> None:
        """Every 0.2 s: each microservice's freshest reading over every shard's snapshot, and how old it was when
        the document arrived (the answer's own transit counts against it)."""
        nonlocal samples
        while not stop.is_set():
            age = dict.fromkeys(NAMES, float("inf"))  # in no snapshot: a gap
            for shard, (doc, received) in enumerate(await snapshots(session, urls)):
                if doc is None:
                    continue
                if shard < 3:
                    handed[shard] |= {n for n, t in doc["targets"].items() if t.get("handed_off")}
                for name, entry in doc["microservices"].items():
                    if entry["fetched_at"] is not None:
                        age[name] = min(age[name], received - entry["fetched_at"])
            for name in NAMES:
                worst[name] = max(worst[name], age[name])
            samples += 1
            await asyncio.sleep(0.2)

    async def watch_scalers(scalers: list[pb_grpc.ExternalScalerStub], started: float) -> None:
        nonlocal sweeps
        while not stop.is_set():
            for j, answers in enumerate(await sweep(scalers)):
                check_answers(answers, set(NAMES), f"scaler {j}, {time.monotonic() - started:.1f}s into the reshard")
            sweeps += 1
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession() as session, stubs(topology) as scalers:
        await every_answer(scalers, topology)
        # Steady state first, for comparison: the same measure over 3 poll intervals before the reshard.
        watcher = asyncio.create_task(watch_snapshots(session))
        await asyncio.sleep(3 * POLL)
        stop.set()
        await watcher
        steady = max(worst.values())
        worst = dict.fromkeys(NAMES, 0.0)
        stop.clear()

        started = time.monotonic()
        watchers = [asyncio.create_task(watch_snapshots(session)), asyncio.create_task(watch_scalers(scalers, started))]
        topology.write_config(total_shards=4)
        for shard in topology.exporters[:3]:
            shard.signal(signal.SIGHUP)  # the file watcher would within a second; the signal makes it now
        topology.exporters[3].start()
        try:
            # Until the grace is over: the old shards stop polling what they gave away and drop it.
            async with asyncio.timeout(GRACE + 20):
                while True:
                    await asyncio.sleep(0.5)
                    done = [t for t in watchers if t.done()]
                    if done:
                        await done[0]  # a failed check
                    docs = [doc for doc, _ in await snapshots(session, urls)]
                    if (time.monotonic() - started > GRACE and all(d is not None for d in docs)
                            and all(set(d["targets"]) == owned(s, 4) for s, d in enumerate(docs))):  # fmt: skip
                        break
            await asyncio.sleep(2 * POLL)  # and a little after, as the scalers read the new owner alone
        finally:
            stop.set()
            results = await asyncio.gather(*watchers, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        fresh = await exporter_fresh(topology, session)
        counts = await fleet_log(topology, session, 3 * POLL)

    moved = set().union(*handed)
    assert moved == owned(3, 4), "the targets handed off are exactly those the new shard owns"
    for shard in range(3):
        assert handed[shard] == before[shard] & owned(3, 4), "a shard hands off only targets it owned, to shard 3"
        assert owned(shard, 4) == before[shard] - moved, "nothing moves between the old shards"
    fraction = len(moved) / TARGETS
    assert 0.15 <= fraction <= 0.35, fraction
    gap = max(worst.values())
    stalest = sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    assert gap <= 2 * POLL + SLACK, f"a reading {gap:.2f}s old during the reshard: {stalest} {topology.where()}"
    assert all(f == {url: 1.0 for url in urls} for f in fresh), fresh
    check_one_poller_each(counts, 4, topology)
    print(f"\nreshard 3 -> 4: moved {len(moved)} of {TARGETS} targets ({fraction:.1%}), all to shard 3; freshest "
          f"reading at most {gap:.2f}s old over {samples} samples (bound {2 * POLL + SLACK:g}s; steady state before: "
          f"{steady:.2f}s); {sweeps} sweeps of {TARGETS} x 2 without an error")  # fmt: skip
