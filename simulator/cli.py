"""`horizon-simulator`: serve the demo fleet's Horizon APIs, or print the exporter config that watches them."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence

import yaml
from aiohttp import web

from .fleet import DEFAULT_FLEET, QUEUE_PATTERN, default_fleet, exporter_targets, target_flags
from .load import CYCLE, FALL_UNTIL, PEAK_UNTIL, QUIET_UNTIL, RAMP_UNTIL
from .server import FAULTS, Simulator, check_fault, create_app

DEFAULT_LISTEN = "127.0.0.1:9200"


def _description() -> str:
    dedicated = ", ".join(f"/{h.name}/horizon" for h in DEFAULT_FLEET if h.dedicated)
    shared = "; ".join(
        f"/{h.name}/horizon ({', '.join(ms.name for ms in h.microservices if ms.name != h.name)})"
        for h in DEFAULT_FLEET if not h.dedicated
    )  # fmt: skip
    return f"""\
Serve simulated Laravel Horizons (/api/stats, /api/workload, /api/masters, in Horizon 5's exact shapes) for a
demo fleet under a Black-Friday load: quiet until {QUIET_UNTIL:g}s, a ramp to {RAMP_UNTIL:g}s, a peak in waves
to {PEAK_UNTIL:g}s, back to quiet by {FALL_UNTIL:g}s; it repeats every {CYCLE:g}s of simulated time.
Supervisors autoscale their worker processes as Horizon's `auto` balancing does.

  topology (a), one Horizon per microservice:  {dedicated}
  topology (b), one Horizon for several:       {shared}
      supervisors are <microservice>-worker, queues <microservice>-<name>

Watch it with the exporter:
  horizon-simulator --print-targets > simulator.yml
  horizon-exporter --config simulator.yml
"""


def _epilog() -> str:
    kinds = "\n".join(f"  {kind:<12} {meaning}" for kind, meaning in FAULTS.items())
    return f"fault kinds (--fault NAME=KIND; NAME is a Horizon, or for `down` also a microservice):\n{kinds}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to document the flags)."""
    p = argparse.ArgumentParser(
        prog="horizon-simulator", description=_description(), epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT", help=f"default {DEFAULT_LISTEN}")
    p.add_argument(
        "--speed", type=float, default=1.0, metavar="X",
        help="simulated seconds per real second (default 1; 10 plays a whole cycle in 30 s)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, metavar="N", help="pod names, waves and noise (default 0)")
    p.add_argument(
        "--start-at", type=float, default=0.0, metavar="SECONDS",
        help=f"begin this far into the scenario (default 0; {RAMP_UNTIL:g} starts at the peak)",
    )  # fmt: skip
    p.add_argument(
        "--fault", action="append", default=[], metavar="NAME=KIND",
        help="make a Horizon misbehave (kinds below); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--keda", metavar="HOST:PORT",
        help="run a simulated KEDA + HPA + cluster that asks the horizon-scaler at HOST:PORT over gRPC and scales "
        "the demo microservices' pods (masters); its state at /-/live",
    )  # fmt: skip
    p.add_argument(
        "--print-targets", nargs="?", const="yaml", choices=("yaml", "flags"), metavar="yaml|flags",
        help="print a horizon-exporter config for the fleet at --listen (default yaml; `flags`: the --target "
        "flags of the topology-(a) Horizons only) and exit",
    )  # fmt: skip
    return p


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into its parts; raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def targets_text(base_url: str, form: str = "yaml") -> str:
    """What `--print-targets` prints: a horizon-exporter YAML config, or `--target` flags."""
    if form == "flags":
        return " ".join(target_flags(base_url)) + "\n"
    body = yaml.safe_dump({"targets": exporter_targets(base_url)}, sort_keys=False, width=200)
    return (
        f"# horizon-exporter config for horizon-simulator at {base_url}\n"
        "# Topology (b) by supervisor name; `microservices_from: queue` with pattern "
        f"'{QUEUE_PATTERN}' gives the same microservices.\n{body}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        host, port = split_listen(args.listen)
    except ValueError as exc:
        parser.error(f"--listen: {exc}")
    if args.speed <= 0 or args.start_at < 0:
        parser.error("--speed must be > 0 and --start-at >= 0")
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    if args.print_targets:
        sys.stdout.write(targets_text(f"http://{url_host}:{port}", args.print_targets))
        return 0
    fleet = default_fleet(args.seed)
    faults: dict[str, str] = {}
    for item in args.fault:
        name, _, kind = item.partition("=")
        try:
            check_fault(fleet, name, kind)
        except ValueError as exc:
            parser.error(f"--fault {item}: {exc}")
        faults[name] = kind
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        print(f"horizon-simulator: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("horizon_keda.simulator").info(
        "serving %d simulated Horizons on http://%s:%d/ (speed %gx, seed %d): %s", len(fleet.horizons),
        url_host, port, args.speed, args.seed, " ".join(f"/{name}/horizon" for name in fleet.horizons),
    )  # fmt: skip
    sim = Simulator(fleet, speed=args.speed, start_at=args.start_at, faults=faults)
    live = None
    if args.keda:
        try:
            split_listen(args.keda)
        except ValueError as exc:
            parser.error(f"--keda: {exc}")
        from .live import LiveLoop

        def live(s: Simulator) -> LiveLoop:
            return LiveLoop(s, args.keda, seed=args.seed)

    web.run_app(create_app(sim, live), sock=sock, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
