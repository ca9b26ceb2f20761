"""Soak: the real `horizon-exporter` and `horizon-scaler` for minutes against a churning, failing fake fleet. Do
their memory, file descriptors, asyncio tasks and threads stay flat, and does anything fail that should not?

What runs (all on 127.0.0.1, each its own process)
--------------------------------------------------
* fleet: `bench/fakefleet.py` with `--targets` + 1 fake Horizons (one microservice each). Every second 5 % of
  the microservices change (bodies change); `--faults` of the Horizons (default 5 %) fail at once — HTTP 500, an
  HTML page, the connection closed, or no answer — each for 3–45 s, then recover. `/-/faults` is their record.
* exporter: `.venv/bin/horizon-exporter --config FILE` polling the first `--targets` Horizons every second
  (timeout 2 s, backoff_max 5 s, stale_after 30 s), with examples/horizon.yml's `horizon_masters` module for
  /probe (allowed_targets: the fleet). Every `--reload-every` seconds the file is rewritten: the last Horizon's
  target is added or removed and the module's help text changes; every other time a SIGHUP follows. Each reload
  is verified: the reload metrics, the snapshot's targets and the module's help in a probe must show it.
* scaler: `.venv/bin/horizon-scaler --exporter URL` (max staleness 10 s).
* this process, every second: `--streams` StreamIsActive streams opened, read until their first answer (at most
  2 s) and closed, each followed by KEDA's IsActive, GetMetricSpec and GetMetrics for the same ScaledObject; a
  GET of /metrics and one /probe; and a sample of both processes: VmRSS, open fds (/proc/PID/fd; the exporter's
  connections to the fake Horizons, matched through /proc/net/tcp, are counted apart: they follow its keep-alive
  pools and the faults), threads (/proc/PID/status) and asyncio tasks (the file each process writes with
  HORIZON_KEDA_DEBUG_TASKS=PATH).

Every `--interval` seconds a row: the medians of that interval's samples. Unexpected errors: a gRPC status other
than UNAVAILABLE from IsActive/GetMetrics, any from StreamIsActive or GetMetricSpec, a stream the server ends; a
non-2xx or failed GET of /metrics or /probe; an ERROR line, an exception, a line that is not JSON or a warning
other than a target's poll failure in either process's log; a reload not applied; a process exiting. And, only
if the fleet's record shows no fault of that Horizon around that time: a poll failure, `probe_success 0`,
UNAVAILABLE, a stream silent for 2 s. VERDICT: after the warm-up (the first fifth of the run), the medians of the
last interval against those of the first: RSS growth < 10 %, fds and tasks at most 10 more, threads at most 2
more, the connections to the Horizons within the pools' limits (112), and 0 unexpected errors.

Run from the repository root:
    .venv/bin/python bench/soak.py                          # 10 minutes, 200 Horizons
    .venv/bin/python bench/soak.py --seconds 60 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import BIN, FAKE_FLEET, ROOT, cpu_seconds, free_port, get_json, memory_mb, spawn, stop, wait_http

POLL, TIMEOUT, STALE_AFTER, BACKOFF_MAX, MAX_STALENESS = 1.0, 2.0, 30.0, 5.0, 10.0
PROBE_TIMEOUT = 3.0  # X-Prometheus-Scrape-Timeout-Seconds: the probe's upstream gets 2.75 s
CONNECTION_LIMIT = 3 * 32 + 16  # the exporter's pools: 3 × max_concurrency (poller) + probe_concurrency
STREAM_WAIT = 2.0  # a stream that has not answered by then is closed, and counted silent
RPC_TIMEOUT = 10.0
ACTIVATION = "3"  # the microservices run 1-6 processes on one supervisor: streams flip both ways
# How long after a fault's end its consequences may still be seen (before its start: 1 s, two clocks):
AFTER = {
    "poll_failure": TIMEOUT + 1,  # a poll sent just before the end, timed out after it
    "probe_failure": PROBE_TIMEOUT + 1,
    "unavailable": BACKOFF_MAX * 1.1 + TIMEOUT + POLL + 3,  # the retry after backoff, its poll, the feed's push
    "stream_silent": BACKOFF_MAX * 1.1 + TIMEOUT + POLL + 3 + STREAM_WAIT,
}
_POLL_WARNING = re.compile(r"^target (\S+): .* \(([a-z0-9_]+)\)$")


@dataclass
class Settings:
    """What `run_soak` does; the defaults are the 10-minute soak of the issue."""

    seconds: float = 600.0
    targets: int = 200
    interval: float = 30.0
    warmup: float | None = None  # default: the first fifth of the run
    streams: int = 20
    churn: float = 0.05
    faults: float = 0.05
    reload_every: float = 60.0
    rss_growth: float = 0.10  # limits of the verdict
    fds_slack: int = 10
    tasks_slack: int = 10
    threads_slack: int = 2
    loop: str = "uvloop"
    logdir: Path | None = None
    out: Callable[[str], None] = print

    @property
    def warmup_seconds(self) -> float:
        return self.seconds / 5 if self.warmup is None else self.warmup


@dataclass
class Sample:
    """One process at one second of the run."""

    t: float  # seconds since the start of the run
    rss: float  # MB
    fds: int  # open file descriptors but the connections to the fake Horizons
    conns: int  # connections to the fake Horizons: the pools' keep-alive connections, bounded by their limits
    threads: int
    tasks: int | None


@dataclass
class Event:
    """Something that is an error unless the fleet's record shows a fault of `horizon` around `at`."""

    at: float  # Unix time
    kind: str  # a key of AFTER
    horizon: str
    detail: str


@dataclass
class Report:
    """What the soak saw: a row per interval, the growth the verdict judged, errors sorted, what it did."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    growth: dict[str, dict[str, float]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    expected: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    verdict: list[str] = field(default_factory=list)
    ok: bool = False
    logdir: str = ""


# ------------------------------------------------------------------------------------------------- the processes


def tcp_peer_ports() -> dict[str, int]:
    """Socket inode → remote port of every TCP socket on this host (/proc/net/tcp and tcp6)."""
    peers = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                peers[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    return peers


def proc_sample(pid: int, tasks_file: Path, t: float, peers: dict[str, int], horizon_port: int) -> Sample:
    """One process's RSS, fds (its connections to the fake Horizons apart) and threads from /proc, and its asyncio
    tasks from its HORIZON_KEDA_DEBUG_TASKS file (None when the file is missing or older than 5 s)."""
    rss, _ = memory_mb(pid)
    fds = conns = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and peers.get(link[8:-1]) == horizon_port:
                conns += 1
            else:
                fds += 1
    threads = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("Threads:"))  # fmt: skip
    tasks = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        doc = json.loads(tasks_file.read_text())
        if time.time() - doc["time"] <= 5:
            tasks = int(doc["tasks"])
    return Sample(t, rss, fds, conns, threads, tasks)


def exporter_config(fleet_url: str, names: list[str], generation: int) -> dict[str, Any]:
    """The config file of reload `generation`: odd generations add the last Horizon's target, and the probe
    module's help text names the generation."""
    import yaml

    polled = names if generation % 2 else names[:-1]
    module = yaml.safe_load((ROOT / "examples" / "horizon.yml").read_text())["modules"]["horizon_masters"]
    module["allowed_targets"] = [f"{fleet_url}/*"]
    first = module["metrics"][0]
    first["help"] = f"{first['help']} (soak config generation {generation})"
    return {
        "poll_interval": POLL, "timeout": TIMEOUT, "stale_after": STALE_AFTER, "backoff_max": BACKOFF_MAX,
        "targets": [{"microservice": h, "url": f"{fleet_url}/{h}/horizon"} for h in polled],
        "modules": {"horizon_masters": module},
    }  # fmt: skip


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)  # a new inode: what a ConfigMap's symlink swap looks like to the watcher


def parse_log_time(value: str) -> float:
    """`2025-11-28T06:00:00.123Z` (the processes' JSON logs) as Unix time."""
    return calendar.timegm(time.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + value[19:].rstrip("Z"))


class LogReader:
    """Reads what a process appended to its log since the last call and sorts each line."""

    def __init__(self, who: str, path: Path) -> None:
        self.who, self.path, self.offset, self.partial = who, path, 0, b""

    def read(self, soak: Soak) -> None:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = self.partial + fh.read()
            self.offset = fh.tell()
        *lines, self.partial = data.split(b"\n")
        for raw in lines:
            self.sort(raw.decode("utf-8", "replace"), soak)

    def sort(self, line: str, soak: Soak) -> None:
        if not line.strip():
            return
        try:
            doc = json.loads(line)
            level, message, logger = doc["level"], doc["message"], doc["logger"]
        except (ValueError, KeyError, TypeError):
            soak.fail(f"{self.who} log: not a JSON log line: {line[:300]}")
            return
        if level in ("error", "critical") or "exception" in doc:
            soak.fail(f"{self.who} log: {level}: {message[:300]} {doc.get('exception', '')[-300:]}")
        elif level == "warning":
            poll = _POLL_WARNING.match(message) if logger == "horizon_keda.poller" else None
            if poll is not None:
                soak.events.append(Event(parse_log_time(doc["time"]), "poll_failure", poll[1], message[:200]))
            elif message.startswith("tenancy is off"):  # the scaler's notice at start without --tenants
                soak.report.expected["startup warning"] += 1
            else:
                soak.fail(f"{self.who} log: warning: {message[:300]}")


# ----------------------------------------------------------------------------------------------------- the soak


class Soak:
    """The load of the soak, the samples and the sorting of what went wrong, on one event loop."""

    def __init__(self, s: Settings, urls: dict[str, str], names: list[str], procs: dict[str, subprocess.Popen[bytes]],
                 tasks_files: dict[str, Path], config: Path, logs: dict[str, Path]) -> None:  # fmt: skip
        self.s, self.urls, self.procs, self.tasks_files, self.config = s, urls, procs, tasks_files, config
        self.names = names  # names[-1] is the Horizon a reload adds and removes: streams and probes leave it alone
        self.stable = names[:-1]
        self.logs = [LogReader(who, path) for who, path in logs.items()]
        self.report = Report()
        self.samples: dict[str, list[Sample]] = {who: [] for who in procs if who != "fleet"}
        self.events: list[Event] = []
        self.rng = random.Random(3)
        self.generation = 0
        self.t0 = time.monotonic()
        self.inflight: set[asyncio.Task[None]] = set()
        self.metric_names: dict[str, str] = {}
        self.fleet_port = int(urls["fleet"].rsplit(":", 1)[1])

    def fail(self, what: str) -> None:
        self.report.unexpected.append(f"{time.monotonic() - self.t0:6.1f}s {what}")

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    def every_second(self, until: float, tick: Callable[[], object]) -> Coroutine[Any, Any, None]:
        async def loop() -> None:
            next_at = time.monotonic()
            while next_at < until:
                tick()
                next_at += 1.0
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        return loop()

    async def run(self) -> Report:
        import aiohttp
        import grpc

        from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc

        until = self.t0 + self.s.seconds
        timeout = aiohttp.ClientTimeout(total=RPC_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as self.http, grpc.aio.insecure_channel(
            self.urls["scaler"]
        ) as channel:  # fmt: skip
            self.stub = pb_grpc.ExternalScalerStub(channel)
            await asyncio.gather(
                self.every_second(until, lambda: [self.spawn(self.cycle(ms)) for ms in
                                                  self.rng.sample(self.stable, self.s.streams)]),
                self.every_second(until, lambda: (self.spawn(self.scrape()), self.spawn(self.probe()))),
                self.sampling(until),
                self.reloading(until),
            )  # fmt: skip
            while self.inflight:  # the last streams and probes finish (each is bounded by its timeouts)
                await asyncio.gather(*list(self.inflight))
            await self.sort_events(final=True)
        return self.report

    # -- load ------------------------------------------------------------------------------------------------

    async def cycle(self, ms: str) -> None:
        """One ScaledObject: a StreamIsActive opened, read until its first answer and closed; then what KEDA's
        polling loop and the HPA ask (IsActive, GetMetricSpec, GetMetrics)."""
        import grpc

        from external_scaler._proto import externalscaler_pb2 as pb

        meta = {"microservice": ms, "activationThreshold": ACTIVATION}
        ref = pb.ScaledObjectRef(name=ms, namespace="soak", scalerMetadata=meta)
        counts = self.report.counts
        call = self.stub.StreamIsActive(ref)
        at = time.time()
        try:
            async with asyncio.timeout(STREAM_WAIT):
                answer = await call.read()
            if answer is grpc.aio.EOF:
                self.fail(f"StreamIsActive {ms}: the server ended the stream")
            else:
                counts["streams answered"] += 1
        except TimeoutError:
            self.events.append(Event(at, "stream_silent", ms, f"StreamIsActive {ms}: no answer in {STREAM_WAIT:g}s"))
        except grpc.aio.AioRpcError as exc:
            self.fail(f"StreamIsActive {ms}: {exc.code().name} {exc.details()}")
        finally:
            call.cancel()
        counts["streams opened and closed"] += 1
        for rpc in ("IsActive", "GetMetricSpec", "GetMetrics"):
            at = time.time()
            try:
                if rpc == "IsActive":
                    await self.stub.IsActive(ref, timeout=RPC_TIMEOUT)
                elif rpc == "GetMetricSpec":
                    spec = await self.stub.GetMetricSpec(ref, timeout=RPC_TIMEOUT)
                    self.metric_names[ms] = spec.metricSpecs[0].metricName
                else:
                    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=self.metric_names[ms])
                    await self.stub.GetMetrics(request, timeout=RPC_TIMEOUT)
                counts["unary calls answered"] += 1
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and rpc != "GetMetricSpec":
                    self.events.append(Event(at, "unavailable", ms, f"{rpc} {ms}: UNAVAILABLE {exc.details()}"))
                else:
                    self.fail(f"{rpc} {ms}: {exc.code().name} {exc.details()}")
                if rpc == "GetMetricSpec":
                    return

    async def get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, str] | None:
        import aiohttp

        try:
            async with self.http.get(url, headers=headers) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.fail(f"GET {url}: {type(exc).__name__} {exc}")
            return None

    async def scrape(self) -> None:
        got = await self.get(f"{self.urls['exporter']}/metrics")
        if got is not None:
            self.report.counts["/metrics scrapes"] += 1
            if got[0] != 200 or "horizon_up{" not in got[1]:
                self.fail(f"/metrics: HTTP {got[0]}: {got[1][:200]}")

    async def probe(self, ms: str | None = None) -> str | None:
        """A /probe of one microservice's /api/masters through the module; the body when it answered 200."""
        ms = ms or self.rng.choice(self.stable)
        at = time.time()
        target = f"{self.urls['fleet']}/{ms}/horizon/api/masters"
        got = await self.get(f"{self.urls['exporter']}/probe?module=horizon_masters&microservice={ms}&target={target}",
                             {"X-Prometheus-Scrape-Timeout-Seconds": f"{PROBE_TIMEOUT:g}"})  # fmt: skip
        if got is None:
            return None
        self.report.counts["/probe requests"] += 1
        status, body = got
        if status != 200:
            self.fail(f"/probe {ms}: HTTP {status}: {body[:200]}")
            return None
        if re.search(r"^probe_success 1$", body, re.M) is None:
            reasons = re.findall(r'^probe_json_errors\{reason="([^"]+)"\}', body, re.M)
            self.events.append(Event(at, "probe_failure", ms, f"/probe {ms}: probe_success 0 ({', '.join(reasons)})"))
        return body

    # -- reloads ---------------------------------------------------------------------------------------------

    async def reloading(self, until: float) -> None:
        while True:
            next_at = self.t0 + (self.generation + 1) * self.s.reload_every
            if next_at >= until:
                return
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await self.reload()

    async def reload(self) -> None:
        """Rewrite the config (a target added or removed, the module changed), SIGHUP every other time, and check
        that the exporter applied it within 10 s."""
        from prometheus_client.parser import text_string_to_metric_families

        before = await self.reload_stamp(text_string_to_metric_families)
        self.generation += 1
        gen = self.generation
        write_atomically(self.config, json.dumps(exporter_config(self.urls["fleet"], self.names, gen)))
        if gen % 2 == 0:
            self.procs["exporter"].send_signal(signal.SIGHUP)
        extra = self.names[-1]
        deadline = time.monotonic() + 10.0
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            stamp = await self.reload_stamp(text_string_to_metric_families)
            snap = await self.get(f"{self.urls['exporter']}/api/v1/snapshot")
            body = await self.probe()  # a random one: a failing Horizon's probe carries no module samples
            seen = {
                "reload metrics": stamp is not None and before is not None and stamp[0] == 1 and stamp[1] > before[1],
                "targets": snap is not None and (extra in json.loads(snap[1])["targets"]) == bool(gen % 2),
                "module": body is not None and f"(soak config generation {gen})" in body,
            }
            if all(seen.values()):
                self.report.counts["reloads verified"] += 1
                return
        self.fail(f"reload {gen}: not applied within 10 s: {seen}")

    async def reload_stamp(self, parse: Any) -> tuple[float, float] | None:
        got = await self.get(f"{self.urls['exporter']}/metrics")
        if got is None or got[0] != 200:
            return None
        values = {s.name: s.value for f in parse(got[1]) if f.name.startswith("horizon_exporter_config_last_reload")
                  for s in f.samples}  # fmt: skip
        return (values.get("horizon_exporter_config_last_reload_successful", 0.0),
                values.get("horizon_exporter_config_last_reload_success_timestamp_seconds", 0.0))  # fmt: skip

    # -- samples, rows and the sorting of events ------------------------------------------------------------

    async def sampling(self, until: float) -> None:
        next_row = self.t0 + self.s.interval
        row_from = 0.0
        while time.monotonic() < until:
            await asyncio.sleep(1.0 - (time.monotonic() - self.t0) % 1.0)
            now = time.monotonic()
            peers = tcp_peer_ports()
            for who in self.samples:
                proc = self.procs[who]
                if proc.poll() is not None:
                    self.fail(f"{who} exited with status {proc.returncode}")
                    raise SystemExit(f"soak: the {who} exited; logs in {self.report.logdir}")
                self.samples[who].append(
                    proc_sample(proc.pid, self.tasks_files[who], now - self.t0, peers, self.fleet_port)
                )
            if now >= next_row - 0.5 or now >= until - 0.5:
                for reader in self.logs:
                    reader.read(self)
                await self.sort_events(final=False)
                self.row(row_from, now - self.t0)
                row_from = now - self.t0
                next_row += self.s.interval

    async def sort_events(self, final: bool) -> None:
        """Events older than 2 s (so that the fleet has recorded any fault behind them) against the fault record."""
        got = await self.get(f"{self.urls['fleet']}/-/faults")
        if got is None:
            return
        faults: dict[str, list[tuple[float, float]]] = {}
        for f in json.loads(got[1]):
            faults.setdefault(f["horizon"], []).append((f["start"], f["end"]))
        horizon = time.time() - 2.0
        keep = []
        for e in self.events:
            if not final and e.at > horizon:
                keep.append(e)
            elif any(start - 1.0 <= e.at <= end + AFTER[e.kind] for start, end in faults.get(e.horizon, ())):
                self.report.expected[e.kind] += 1
            else:
                self.fail(f"{e.detail} (no fault of {e.horizon} then)")
        self.events = keep
        self.report.counts["faults started"] = sum(len(v) for v in faults.values())

    def row(self, t_from: float, t_to: float) -> None:
        row: dict[str, Any] = {"t": t_to}
        for who, samples in self.samples.items():
            window = [x for x in samples if t_from < x.t <= t_to] or samples[-1:]
            row[who] = window_medians(window)
        self.report.rows.append(row)
        c = self.report.counts
        if len(self.report.rows) == 1:
            self.s.out(
                f"{'time':>6} | {'exporter: RSS MB  fds tasks threads (conns)':>43} | "
                f"{'scaler: RSS MB  fds tasks threads':>33} | streams  probes reloads | expected unexpected"
            )
        cells = []
        for who in self.samples:
            m = row[who]
            cells.append(f"{m['rss']:>15.1f} {m['fds']:>4.0f} {_num(m['tasks']):>5} {m['threads']:>7.0f}")
        conns = f"{cells[0]} {row['exporter']['conns']:>7.0f}"
        self.s.out(f"{t_to:>5.0f}s | {conns:>43} | {cells[1]:>33} | {c['streams opened and closed']:>7} "
                   f"{c['/probe requests']:>7} {c['reloads verified']:>7} | {sum(self.report.expected.values()):>8} "
                   f"{len(self.report.unexpected):>10}")  # fmt: skip


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def window_medians(window: list[Sample]) -> dict[str, float | None]:
    tasks = [x.tasks for x in window if x.tasks is not None]
    return {"rss": statistics.median(x.rss for x in window), "fds": statistics.median(x.fds for x in window),
            "conns": statistics.median(x.conns for x in window),
            "threads": statistics.median(x.threads for x in window),
            "tasks": statistics.median(tasks) if tasks else None}  # fmt: skip


# ------------------------------------------------------------------------------------------------- the verdict


def judge(soak: Soak) -> None:
    """Growth from the first interval after the warm-up to the last one, against the limits; the VERDICT lines."""
    s, report = soak.s, soak.report
    warm = s.warmup_seconds
    flat = True
    lines = [f"warm-up: the first {warm:g} s; baseline: medians over {warm:g}–{warm + s.interval:g} s; end: medians "
             f"over the last {s.interval:g} s ({s.seconds - s.interval:g}–{s.seconds:g} s)"]  # fmt: skip
    for who, samples in soak.samples.items():
        base = window_medians([x for x in samples if warm < x.t <= warm + s.interval] or samples[:1])
        end = window_medians([x for x in samples if x.t > s.seconds - s.interval] or samples[-1:])
        peak = max((x.rss for x in samples if x.t > warm), default=0.0)
        growth = {"rss": end["rss"] / base["rss"] - 1}  # type: ignore[operator]
        parts = [f"RSS {base['rss']:.1f} → {end['rss']:.1f} MB ({growth['rss']:+.1%}, limit < {s.rss_growth:.0%}; "
                 f"max after warm-up {peak:.1f})"]  # fmt: skip
        flat &= growth["rss"] < s.rss_growth
        for key, slack in (("fds", s.fds_slack), ("tasks", s.tasks_slack), ("threads", s.threads_slack)):
            if base[key] is None or end[key] is None:
                parts.append(f"{key} unknown")
                flat = False
                continue
            growth[key] = end[key] - base[key]  # type: ignore[operator]
            flat &= growth[key] <= slack
            parts.append(f"{key} {base[key]:.0f} → {end[key]:.0f} ({growth[key]:+.0f}, slack {slack})")
        if who == "exporter":  # its keep-alive pools: 3 × max_concurrency for the poller, probe_concurrency
            most = max(x.conns for x in samples)
            flat &= most <= CONNECTION_LIMIT
            parts.append(f"connections to the Horizons {end['conns']:.0f} (max {most}, limit {CONNECTION_LIMIT})")
        report.growth[who] = growth
        lines.append(f"{who}: " + ", ".join(parts))
    c = report.counts
    lines.append(f"load: {c['streams opened and closed']} streams opened and closed ({c['streams answered']} "
                 f"answered), {c['unary calls answered']} unary calls answered, {c['/metrics scrapes']} /metrics, "
                 f"{c['/probe requests']} /probe, {c['reloads verified']} reloads verified, {c['faults started']} "
                 f"faults started")  # fmt: skip
    expected = ", ".join(f"{n} {k}" for k, n in sorted(report.expected.items())) or "none"
    lines.append(f"errors: {len(report.unexpected)} unexpected; expected (a fault of that Horizon then): {expected}")
    lines += [f"  unexpected: {u}" for u in report.unexpected[:20]]
    lines.append(
        f"VERDICT: {'flat' if flat else 'NOT flat'} after the warm-up of {warm:g} s, "
        f"{len(report.unexpected)} unexpected errors: {'PASS' if flat and not report.unexpected else 'FAIL'}"
    )
    report.ok, report.verdict = flat and not report.unexpected, lines


def run_soak(s: Settings) -> Report:
    """Start the fleet, the exporter and the scaler, run the soak for `s.seconds`, stop them, judge."""
    logdir = s.logdir or Path(tempfile.mkdtemp(prefix="soak-"))
    logdir.mkdir(parents=True, exist_ok=True)
    env = {"HORIZON_KEDA_EVENT_LOOP": s.loop}
    fleet_port, exp_port, scaler_port = free_port(), free_port(), free_port()
    urls = {"fleet": f"http://127.0.0.1:{fleet_port}", "exporter": f"http://127.0.0.1:{exp_port}",
            "scaler": f"127.0.0.1:{scaler_port}"}  # fmt: skip
    logs = {"exporter": logdir / "exporter.log", "scaler": logdir / "scaler.log"}
    tasks_files = {who: logdir / f"{who}.tasks" for who in logs}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for path in (*logs.values(), logdir / "fleet.log"):
        path.write_bytes(b"")  # spawn appends: a reused --logdir must not bring back an earlier run's lines
    try:
        procs["fleet"] = spawn([sys.executable, str(FAKE_FLEET), f"a:{s.targets + 1}", "--port", str(fleet_port),
                                "--churn", str(s.churn), "--faults", str(s.faults)], logdir / "fleet.log")  # fmt: skip
        wait_http(f"{urls['fleet']}/-/info", 120)
        names = get_json(f"{urls['fleet']}/-/info")["horizons"]
        config = logdir / "exporter.yml"
        write_atomically(config, json.dumps(exporter_config(urls["fleet"], names, 0)))
        procs["exporter"] = spawn([str(BIN / "horizon-exporter"), "--config", str(config), "--listen",
                                   f"127.0.0.1:{exp_port}", "--log-format", "json"], logs["exporter"],
                                  {**env, "HORIZON_KEDA_DEBUG_TASKS": str(tasks_files["exporter"])})  # fmt: skip
        wait_http(f"{urls['exporter']}/readyz", 120)
        scaler = [str(BIN / "horizon-scaler"), "--listen", urls["scaler"], "--exporter", urls["exporter"],
                  "--max-staleness", f"{MAX_STALENESS:g}", "--log-format", "json"]  # fmt: skip
        procs["scaler"] = spawn(scaler, logs["scaler"], {**env, "HORIZON_KEDA_DEBUG_TASKS": str(tasks_files["scaler"])})
        wait_serving(urls["scaler"])
        cpu0 = {who: cpu_seconds(procs[who].pid) for who in logs}
        soak = Soak(s, urls, names, procs, tasks_files, config, logs)
        soak.report.logdir = str(logdir)
        report = asyncio.run(soak.run())
        wall = time.monotonic() - soak.t0
        for who in logs:
            report.counts[f"{who} CPU %"] = round(100 * (cpu_seconds(procs[who].pid) - cpu0[who]) / wall, 1)
        for reader in soak.logs:
            reader.read(soak)
        judge(soak)
        return report
    finally:
        for proc in reversed(procs.values()):
            stop(proc)


def wait_serving(address: str, timeout: float = 60.0) -> None:
    """Until the scaler's grpc.health.v1 says SERVING (it has the exporter's snapshot)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.RpcError):
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"the scaler at {address} not SERVING within {timeout:g}s")
            time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--targets", type=int, default=200, help="fake Horizons polled (one more comes and goes)")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between report rows")
    p.add_argument("--warmup", type=float, help="seconds not judged (default: the first fifth of the run)")
    p.add_argument("--streams", type=int, default=20, help="StreamIsActive opened and closed per second")
    p.add_argument("--faults", type=float, default=0.05, help="share of the Horizons failing at once")
    p.add_argument("--reload-every", type=float, default=60.0)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--logdir", type=Path, help="logs, config and task files (default: a new temporary directory)")
    args = p.parse_args()
    s = Settings(seconds=args.seconds, targets=args.targets, interval=args.interval, warmup=args.warmup,
                 streams=args.streams, faults=args.faults, reload_every=args.reload_every, loop=args.loop,
                 logdir=args.logdir, out=lambda line: print(line, flush=True))  # fmt: skip
    print(
        f"soak: {s.seconds:g} s, {s.targets} Horizons ({s.faults:.0%} failing at once), {s.streams} streams/s, "
        f"a reload every {s.reload_every:g} s; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        flush=True,
    )
    report = run_soak(s)
    print("\n".join(report.verdict))
    print(f"exporter CPU {report.counts['exporter CPU %']} %, scaler CPU {report.counts['scaler CPU %']} % of a core; "
          f"load average over the last 15 min {os.getloadavg()[2]:.1f}; logs in {report.logdir}")  # fmt: skip
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
