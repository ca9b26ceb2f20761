"""PNG plots (matplotlib, from the `whatif` extra) and a self-contained report.html that embeds them."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .engine import PipelineResult
from .outputs import table
from .scenario import Scenario

PLOTS = ("load-capacity", "backlog-wait", "replicas-nodes")


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed (it comes with `pip install horizon-keda[whatif]`)."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'horizon-keda[whatif]'") from None
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "horizon-keda"  # no per-run randomness in the files
    import matplotlib.pyplot as plt

    return plt


def _sums(res: PipelineResult, scenario: Scenario) -> dict[str, list[float]]:
    """Per-second series summed over the microservices of one pipeline."""
    n = scenario.duration
    out = {k: [0.0] * n for k in ("arrivals", "capacity", "backlog", "wait", "desired", "ready", "pending", "nodes")}
    means = {ms.name: ms.job.expected for ms in scenario.microservices}
    for name, svc in res.services.items():
        for i, s in enumerate(svc.samples):
            out["arrivals"][i] += s.arrivals
            out["capacity"][i] += s.processes / means[name]
            out["backlog"][i] += s.backlog
            out["wait"][i] = max(out["wait"][i], s.oldest_wait)
            out["desired"][i] += s.desired
            out["ready"][i] += s.ready
            out["pending"][i] += s.pending
            out["nodes"][i] = s.nodes
    return out


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot(scenario: Scenario, results: Sequence[PipelineResult], out: Path) -> list[Path]:
    """Three PNGs, one panel per pipeline each; returns their paths."""
    plt = _pyplot()
    minutes = [(i + 1) / 60 for i in range(scenario.duration)]
    series = {r.name: _sums(r, scenario) for r in results}
    window = max(1, min(60, scenario.duration // 120))
    paths = []
    for kind in PLOTS:
        fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.3 * len(results) + 0.6), sharex=True, squeeze=False)
        for ax, res in zip(axes[:, 0], results, strict=True):
            s = series[res.name]
            if kind == "load-capacity":
                ax.plot(minutes, _smooth(s["arrivals"], window), label="arrivals (jobs/s)", color="#d62728", lw=1)
                ax.plot(minutes, s["capacity"], label="capacity (processes / job time)", color="#1f77b4", lw=1)
                ax.set_ylabel("jobs/s")
            elif kind == "backlog-wait":
                ax.plot(minutes, s["backlog"], label="backlog (ready jobs)", color="#ff7f0e", lw=1)
                ax.set_ylabel("jobs")
                twin = ax.twinx()
                twin.plot(minutes, s["wait"], label="oldest wait (s)", color="#9467bd", lw=1)
                twin.set_ylabel("s")
                twin.legend(loc="upper right", fontsize=7)
            else:
                ax.plot(minutes, s["desired"], label="desired replicas", color="#2ca02c", lw=1, drawstyle="steps-post")
                ax.plot(minutes, s["ready"], label="ready replicas", color="#17becf", lw=1, drawstyle="steps-post")
                ax.plot(minutes, s["pending"], label="pending pods", color="#bcbd22", lw=1, drawstyle="steps-post")
                ax.plot(minutes, s["nodes"], label="nodes", color="#7f7f7f", lw=1.5, drawstyle="steps-post")
            ax.set_title(f"{res.name}", fontsize=9, loc="left")
            ax.legend(loc="upper left", fontsize=7)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("minutes")
        fig.suptitle(f"{scenario.name}: {kind.replace('-', ' and ')}", fontsize=10)
        fig.tight_layout()
        path = out / f"{kind}.png"
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        paths.append(path)
    return paths


def write_html(scenario: Scenario, summary: dict[str, Any], pngs: Sequence[Path], out: Path) -> Path:
    """report.html: the summary table and every plot inline (data: URIs), nothing fetched from anywhere."""
    images = "\n".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in pngs
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>horizon-whatif: {html.escape(scenario.name)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;max-width:70em}}pre{{background:#f6f6f6;padding:1em;
overflow-x:auto}}img{{max-width:100%}}figcaption{{color:#666}}</style></head><body>
<h1>horizon-whatif: {html.escape(scenario.name)}</h1>
<p>{html.escape(scenario.description)}</p>
<p>{scenario.duration} simulated seconds, seed {scenario.seed}, SLO: a job starts within
{scenario.slo_wait_seconds:g} s. Pipelines: {html.escape(", ".join(p.name for p in scenario.pipelines))}.</p>
<pre>{html.escape(table(summary))}</pre>
{images}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
