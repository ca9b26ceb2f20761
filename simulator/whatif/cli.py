"""`horizon-whatif`: replay a load through the seed chain, pull, push and an oracle, and say what each does to
queue wait, pods and nodes."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from .loads import LoadError, PrometheusQuery, csv_load, prometheus_load, timestamp
from .scenario import ScenarioError, parse_scenario

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "whatif"
INSTALLED = Path(sys.prefix) / "share" / "horizon-keda" / "whatif"
DEFAULT_QUERY = 'sum(horizon_jobs_per_minute{target="{microservice}"})'


def builtin_dirs() -> list[Path]:
    return [d for d in (EXAMPLES, INSTALLED) if d.is_dir()]


def builtins() -> dict[str, Path]:
    """Built-in scenarios by name (a checkout's examples/whatif/, or the copy an installed wheel carries)."""
    out: dict[str, Path] = {}
    for d in reversed(builtin_dirs()):
        out.update({p.stem: p for p in sorted(d.glob("*.yml"))})
    return dict(sorted(out.items()))


def resolve(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    found = builtins().get(name)
    if found is None:
        known = ", ".join(builtins()) or "none found"
        raise ScenarioError(f"{name}: no such file, and not a built-in scenario (built-in: {known})")
    return found


def _set(doc: Any, assignment: str) -> None:
    """`a.b[2].c=value` on the decoded document; the value is YAML (`4`, `true`, `[1, 2]`, `{x: 1}`)."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise ScenarioError(f"--set {assignment}: expected KEY=VALUE, e.g. cluster.headroom.pods=4")
    keys: list[str | int] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            keys.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if not index.isdigit():
                raise ScenarioError(f"--set {assignment}: expected [number] after {name!r}")
            keys.append(int(index))
            rest = rest.removeprefix("[")
    node = doc
    for key in keys[:-1]:
        try:
            if isinstance(key, str) and isinstance(node, dict) and key not in node:
                node[key] = {}
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise ScenarioError(f"--set {assignment}: {key!r} does not exist") from None
    try:
        node[keys[-1]] = yaml.safe_load(raw)
    except (IndexError, TypeError):
        raise ScenarioError(f"--set {assignment}: {keys[-1]!r} does not exist") from None


def _range(start: str, end: str) -> tuple[float, float]:
    """--start and --end as Unix seconds, start before end; raises ScenarioError naming the flag."""
    times = []
    for flag, text in (("--start", start), ("--end", end)):
        try:
            times.append(timestamp(text))
        except ValueError:
            raise ScenarioError(f"{flag}: expected an RFC 3339 time or Unix seconds, got {text!r}") from None
    if times[1] <= times[0]:
        raise ScenarioError(f"--end: expected a time after --start, got {end!r}")
    return times[0], times[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="horizon-whatif",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Built-in scenarios: " + (", ".join(builtins()) or "none found")
        + ". The scenario format and every parameter: docs/whatif.md.",
    )  # fmt: skip
    p.add_argument("scenario", nargs="?", help="a scenario file, or the name of a built-in scenario")
    p.add_argument("--out", metavar="DIR", help="write summary.json, timeseries.csv, events.jsonl, plots, report.html")
    p.add_argument("--list", action="store_true", help="list the built-in scenarios and exit")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario key, e.g. cluster.headroom.pods=4 or pipelines=[push,oracle]")  # fmt: skip
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs and report.html")
    p.add_argument("--load-csv", metavar="FILE", help="every microservice's load from rows t,microservice,jobs/s")
    p.add_argument("--load-prometheus", metavar="URL", help="every microservice's load from a Prometheus range query")
    p.add_argument("--start", help="with --load-prometheus: range start (RFC 3339 or Unix seconds)")
    p.add_argument("--end", help="with --load-prometheus: range end; the scenario lasts end − start")
    p.add_argument("--step", type=float, default=15.0, help="with --load-prometheus: seconds between points (15)")
    p.add_argument("--query", default=DEFAULT_QUERY,
                   help="with --load-prometheus: PromQL, {microservice} replaced; jobs per minute unless "
                   "--per-second (default %(default)s)")  # fmt: skip
    p.add_argument("--per-second", action="store_true", help="the query gives jobs per second, not per minute")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    return p


def load(args: argparse.Namespace) -> Any:
    """The scenario as the flags shape it: `--set` on the document, then `--load-csv` / `--load-prometheus`."""
    path = resolve(args.scenario)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from None
    for assignment in args.set:
        if not isinstance(doc, dict):
            break
        _set(doc, assignment)
    if args.load_prometheus and isinstance(doc, dict):
        if not (args.start and args.end):
            raise ScenarioError("--load-prometheus needs --start and --end")
        start, end = _range(args.start, args.end)
        doc["duration"] = int(end - start)
    scenario = parse_scenario(doc, path.stem, path.resolve().parent)
    if args.load_csv:
        file = Path(args.load_csv)
        scenario = replace(scenario, microservices=tuple(
            replace(ms, load=csv_load(file, ms.name, "--load-csv")) for ms in scenario.microservices))  # fmt: skip
    if args.load_prometheus:
        start, end = _range(args.start, args.end)
        scenario = replace(scenario, microservices=tuple(
            replace(ms, load=prometheus_load(PrometheusQuery(
                args.load_prometheus, args.query.replace("{microservice}", ms.name), start, end, args.step,
                per_minute=not args.per_second), "--load-prometheus"))
            for ms in scenario.microservices))  # fmt: skip
    return scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, path in builtins().items():
            doc = yaml.safe_load(path.read_text()) or {}
            print(f"{name:<16} {(str(doc.get('description') or '').strip().splitlines() or [''])[0]}")
        return 0
    if not args.scenario:
        parser.error("give a scenario file or a built-in name (--list shows them)")
    try:
        scenario = load(args)
    except (ScenarioError, LoadError) as exc:
        print(f"horizon-whatif: {exc}", file=sys.stderr)
        return 2
    from .engine import draw_jobs, simulate
    from .outputs import table, write_events, write_summary, write_timeseries
    from .summary import summarize

    started = time.perf_counter()
    jobs = draw_jobs(scenario)
    results = simulate(scenario, jobs)
    summary = summarize(scenario, results)
    elapsed = time.perf_counter() - started
    if not args.quiet:
        arrived = sum(len(j.arrivals) for j in jobs.values())
        print(f"{scenario.name}: {scenario.duration} s × {len(scenario.microservices)} microservices × "
              f"{len(scenario.pipelines)} pipelines, {arrived} jobs, simulated in {elapsed:.1f} s\n")  # fmt: skip
    print(table(summary), end="")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = [write_summary(summary, out), write_timeseries(results, out), write_events(results, out)]
        if not args.no_plots:
            from .report import PlotsUnavailable, plot, write_html

            try:
                pngs = plot(scenario, results, out)
                written += [*pngs, write_html(scenario, summary, pngs, out)]
            except PlotsUnavailable as exc:
                print(f"horizon-whatif: {exc}; the other outputs are written", file=sys.stderr)
        if not args.quiet:
            print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
