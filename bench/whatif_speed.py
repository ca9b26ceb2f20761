"""How fast horizon-whatif runs: a 2-hour scenario of 20 microservices × 4 pipelines, through the real console
script, against a bare replay of the same jobs in the same run.

The engine: `horizon-whatif SCENARIO --out DIR` as a user runs it (CPU time and peak RSS of that process from the
kernel, wall time). The baseline: a bare Python replay of exactly the same jobs through a FIFO queue with a fixed
number of workers, once per pipeline — the cost any job-level simulation of this load pays, with no KEDA, HPA,
pods or outputs. Printed: both wall times, their ratio, and simulated seconds per wall second.

    .venv/bin/python bench/whatif_speed.py [--microservices 20] [--duration 7200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

BASELINE = """
import heapq, sys, time
from pathlib import Path
from simulator.whatif.engine import draw_jobs
from simulator.whatif.scenario import load_scenario
s = load_scenario(Path(sys.argv[1]))
start = time.perf_counter()
jobs = draw_jobs(s)
for _ in s.pipelines:
    for ms in s.microservices:
        j = jobs[ms.name]
        workers = [0.0] * (ms.horizon.max_processes * 4)
        for a, d in zip(j.arrivals, j.durations):
            free = heapq.heappop(workers)
            heapq.heappush(workers, max(a, free) + d)
print(time.perf_counter() - start)
"""


def scenario(n: int, duration: int) -> dict:
    ms = []
    for i in range(n):
        ms.append({
            "name": f"svc-{i:02d}", "job_seconds": 1.0 + (i % 4) * 0.5,
            "load": {"shape": "black_friday", "base": 0.5, "peak": 4.0 + (i % 5) * 3, "scale": duration / 300,
                     "delay": 60.0 * i},
            "horizon": {"min_processes": 1, "max_processes": 8},
        })  # fmt: skip
    return {
        "duration": duration, "seed": 1, "microservices": ms,
        "defaults": {"pod": {"cpu": 0.5, "start_seconds": 5},
                     "scaling": {"min_replicas": 1, "max_replicas": 30, "threshold": 6}},
        "cluster": {"node_cpu": 8, "initial_nodes": 3, "max_nodes": 60},
        "pipelines": ["seed", "pull", "push", "oracle"],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--microservices", type=int, default=20)
    parser.add_argument("--duration", type=int, default=7200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="whatif-speed-"))
    path = work / "scenario.yml"
    path.write_text(yaml.safe_dump(scenario(args.microservices, args.duration), sort_keys=False))
    start = time.perf_counter()
    proc = subprocess.Popen([str(BIN / "horizon-whatif"), str(path), "--out", str(work / "out"), "--quiet"],
                            stdout=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    peak = 0
    while True:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if status != 0:
        print(f"horizon-whatif failed (status {status})")
        return 1
    cpu = usage.ru_utime + usage.ru_stime
    base = subprocess.run([sys.executable, "-c", BASELINE, str(path)], capture_output=True, text=True, cwd=ROOT,
                          check=True)  # fmt: skip
    bare = float(base.stdout.strip())
    pipelines = 4
    simulated = args.duration * pipelines
    print(f"scenario: {args.duration} s × {args.microservices} microservices × {pipelines} pipelines")
    print(f"horizon-whatif (console script, outputs and plots included): wall {wall:.1f} s, CPU {cpu:.1f} s, "
          f"peak RSS {peak / 1024:.0f} MiB")  # fmt: skip
    print(f"bare replay of the same jobs (no KEDA/HPA/pods/outputs):    wall {bare:.1f} s")
    print(f"engine / bare replay: {wall / bare:.2f}×; {simulated / wall:.0f} simulated seconds per wall second "
          f"({args.duration / wall:.0f}× real time for all {pipelines} pipelines together)")  # fmt: skip
    verdict = "PASS" if wall < 60 else "FAIL"
    print(f"VERDICT: {verdict} — {wall:.1f} s for the 2-hour, 20 × 4 scenario (goal: well under a minute)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
