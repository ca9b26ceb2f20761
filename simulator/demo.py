"""`make run`: the Horizon simulator, the exporter and the scaler sidecar on loopback, and what to curl.

Each runs as its own process, exactly as it would be started in a pod; Ctrl-C (or SIGTERM) stops all three.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from .cli import targets_text

SIMULATOR = ("127.0.0.1", 9200)
EXPORTER = ("127.0.0.1", 9108)
SCALER = ("127.0.0.1", 6000)
SCALER_WEB = ("127.0.0.1", 9109)  # the scaler's /metrics and status page (--metrics-listen)
EXAMPLE_MODULES = Path(__file__).resolve().parents[1] / "examples" / "horizon.yml"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves bind: a port left in TIME_WAIT by the previous `make run` is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _wait_http(url: str, seconds: float, procs: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    """Start the three processes, print how to look at them, and wait."""
    parser = argparse.ArgumentParser(prog="python -m simulator.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    parser.add_argument("--start-at", type=float, default=0.0, help="simulated second to begin at (default 0)")
    args = parser.parse_args(argv)
    want = [("simulator", SIMULATOR), ("exporter", EXPORTER)]
    with_scaler = importlib.util.find_spec("external_scaler.cli") is not None
    if with_scaler:
        want += [("scaler", SCALER), ("scaler status page", SCALER_WEB)]
    taken = [f"{name} {host}:{port}" for name, (host, port) in want if not _port_free(host, port)]
    if taken:
        print(f"make run: port already in use: {', '.join(taken)} (is a previous `make run` still going?)")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="horizon-keda-demo-"))
    sim_url = f"http://{SIMULATOR[0]}:{SIMULATOR[1]}"
    config = workdir / "exporter.yml"
    config_text = targets_text(sim_url)
    with_modules = EXAMPLE_MODULES.is_file()  # from a checkout; an installed wheel has no examples/
    if with_modules:
        config_text += f"# modules for /probe, from {EXAMPLE_MODULES}\n" + EXAMPLE_MODULES.read_text()
    config.write_text(config_text)
    py = sys.executable
    simulator = [py, "-m", "simulator.cli", "--listen", f"{SIMULATOR[0]}:{SIMULATOR[1]}", "--speed",
                 str(args.speed), "--start-at", str(args.start_at)]  # fmt: skip
    if with_scaler:  # the simulated KEDA + HPA + cluster scales the demo's pods through the real scaler
        simulator += ["--keda", f"{SCALER[0]}:{SCALER[1]}"]
    status_page = f"http://{SCALER_WEB[0]}:{SCALER_WEB[1]}/"
    exporter = [py, "-m", "exporter", "--config", str(config), "--listen", f"{EXPORTER[0]}:{EXPORTER[1]}"]
    if with_scaler:  # the exporter's landing page links to the scaler's status page
        exporter += ["--status-page-url", status_page]
    commands = [simulator, exporter]
    if with_scaler:
        commands.append([
            py, "-m", "external_scaler", "--listen", f"{SCALER[0]}:{SCALER[1]}",
            "--exporter", f"http://{EXPORTER[0]}:{EXPORTER[1]}", "--metrics-listen", f"{SCALER_WEB[0]}:{SCALER_WEB[1]}",
        ])  # fmt: skip
    procs = [subprocess.Popen(cmd) for cmd in commands]

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(0)))
    try:
        if not _wait_http(f"http://{EXPORTER[0]}:{EXPORTER[1]}/readyz", 60, procs):
            print("make run: the exporter did not become ready; see the log lines above")
            stop()
            return 1
        m = f"localhost:{EXPORTER[1]}"
        print(
            "\nhorizon-keda is running on loopback (Ctrl-C stops it):\n"
            f"  Horizon simulator  {sim_url}/  (orders, payments, shipping; core: notifications, inventory, reports)\n"
            f"  exporter           http://{m}/\n"
            + (
                f"  scaler (gRPC)      {SCALER[0]}:{SCALER[1]}\n"
                f"  status page        {status_page}  (live: processes against thresholds, KEDA's decisions)\n"
                if with_scaler
                else ""
            )
            + "\nTry:\n"
            f"  curl -s {m}/metrics | grep horizon_microservice_processes\n"
            f"  curl -s {m}/api/v1/snapshot | python3 -m json.tool | head -40\n"
            + (
                f"  curl -s '{m}/probe?module=horizon_masters&microservice=orders"
                f"&target={sim_url}/orders/horizon/api/masters'      # json_exporter-style probe\n"
                if with_modules
                else ""
            )
            + (
                f"  {py} -m external_scaler.watch --scaler {SCALER[0]}:{SCALER[1]} orders"
                "      # live KEDA decisions for orders\n"
                if with_scaler
                else ""
            )
            + (
                f"  curl -s {sim_url}/-/live | python3 -m json.tool      # simulated KEDA/HPA: replicas, pods, "
                "time to scale\n"
                if with_scaler
                else ""
            )
            + f"Config used: {config}\n",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("make run: a process exited; stopping the others")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
        for f in workdir.iterdir():
            f.unlink()
        os.rmdir(workdir)


if __name__ == "__main__":
    sys.exit(main())
