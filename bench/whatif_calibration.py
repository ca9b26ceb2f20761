"""Calibration: the live loop of `make run` (simulated KEDA + HPA + cluster against the real horizon-scaler) and the
what-if engine on the same scenario (examples/whatif/demo.yml, push path) — does the engine's time to scale agree?

Starts the real console scripts on loopback — horizon-simulator --keda at an accelerated --speed, horizon-exporter
polling at 1/speed s (one simulated second), horizon-scaler — lets them run `--seconds` simulated seconds, reads the
live loop's episodes from /-/live, runs the engine over the same seconds, and prints both and their ratio. The
demo's load repeats every 300 s, a multiple of the HPA's 15 s sync, so one seed repeats the same few phase
relations between a need and the next sync; the comparison pools several seeds (each its own HPA and polling
offsets, in the live loop and the engine alike), `--parallel` of them at a time.

    .venv/bin/python bench/whatif_calibration.py [--speed 10] [--seconds 1200] [--seeds 8] [--parallel 4]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from simulator.cli import targets_text  # noqa: E402
from simulator.whatif.engine import simulate  # noqa: E402
from simulator.whatif.scenario import load_scenario  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def live_episodes(speed: float, seconds: float, seed: int) -> tuple[dict[str, list[float]], float]:
    sim_port, exp_port, scaler_port = free_port(), free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="whatif-calibration-"))
    config = work / "exporter.yml"
    config.write_text(targets_text(f"http://127.0.0.1:{sim_port}"))
    procs = [
        subprocess.Popen([str(BIN / "horizon-simulator"), "--listen", f"127.0.0.1:{sim_port}", "--speed", str(speed),
                          "--seed", str(seed), "--keda", f"127.0.0.1:{scaler_port}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen([str(BIN / "horizon-exporter"), "--config", str(config), "--listen", f"127.0.0.1:{exp_port}",
                          "--poll-interval", str(1 / speed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([str(BIN / "horizon-scaler"), "--listen", f"127.0.0.1:{scaler_port}", "--exporter",
                          f"http://127.0.0.1:{exp_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + seconds / speed + 60
        status: dict = {}
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if any(p.poll() is not None for p in procs):
                raise SystemExit("a process exited early")
            try:
                status = get(f"http://127.0.0.1:{sim_port}/-/live")
            except OSError:
                continue
            if status["t"] >= seconds:
                break
        return {k: v["time_to_scale_seconds"] for k, v in status["microservices"].items()}, status["t"]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=1200.0)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    os.chdir(ROOT)
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda seed: live_episodes(args.speed, args.seconds, seed), range(args.seeds)))
    base = load_scenario(ROOT / "examples" / "whatif" / "demo.yml")
    all_live: list[float] = []
    all_engine: list[float] = []
    print(f"live loop at speed {args.speed:g} vs the engine on examples/whatif/demo.yml, push path, "
          f"{args.seeds} seeds × {args.seconds:g} simulated s")  # fmt: skip
    print(f"{'seed':>4}{'live episodes':>15}{'engine episodes':>17}{'live median':>13}{'engine median':>15}")
    for seed, (live, reached) in enumerate(runs):
        scenario = replace(base, seed=seed, duration=int(reached),
                           pipelines=tuple(p for p in base.pipelines if p.kind == "push"))  # fmt: skip
        engine = [x for svc in simulate(scenario)[0].services.values() for x in svc.time_to_scale]
        mine = [x for v in live.values() for x in v]
        all_live += mine
        all_engine += engine
        med = lambda xs: f"{statistics.median(xs):.1f} s" if xs else "—"  # noqa: E731
        print(f"{seed:>4}{len(mine):>15}{len(engine):>17}{med(mine):>13}{med(engine):>15}")
    if not all_live or not all_engine:
        print("no scale-up episode on one side: run longer (--seconds)")
        return 1
    ratios = {}
    for label, fn in (("median", statistics.median), ("mean", statistics.fmean)):
        a, b = fn(all_live), fn(all_engine)
        ratios[label] = b / a
        print(f"time to scale, {label} over all episodes: live {a:.1f} s ({len(all_live)} episodes), "
              f"engine {b:.1f} s ({len(all_engine)}), engine/live {b / a:.2f}")  # fmt: skip
    ok = abs(1 - ratios["median"]) <= 0.2
    print(f"VERDICT: {'PASS' if ok else 'FAIL'} — engine/live {ratios['median']:.2f} on the median (goal: within 20 %)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
