"""Builds deploy/monitoring/dashboard.json, the horizon-keda Grafana dashboard, with Grafana's foundation SDK.

`make monitoring` (or `python deploy/monitoring/dashboard.py`) rewrites the JSON; tests/test_monitoring.py fails
when the committed file differs from what this builds, runs every query against a real Prometheus scraping the
exporter and the scaler, and checks every metric name against what they serve.
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, statetimeline, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

OUTPUT = Path(__file__).resolve().parent / "dashboard.json"
UID = "horizon-keda"
# The scaler's scrape job (deploy/components/servicemonitor, docs/deploy.md); the exporter's series need no job.
SCALER = 'job="horizon-keda-scaler"'
KEDA_RPC = f'{SCALER}, grpc_service="externalscaler.ExternalScaler"'
# What HorizonScalerErrors counts (rules.yml): Canceled and StreamMetricSpec's UNIMPLEMENTED are normal.
KEDA_ERRORS = f'{KEDA_RPC}, grpc_method!="StreamMetricSpec", grpc_code!~"OK|Canceled"'
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")


def keda_hpa(metric: str) -> str:
    """A kube-state-metrics HPA series by ScaledObject (KEDA names the HPA keda-hpa-<scaledobject>), for the
    ScaledObjects the scaler serves: empty without kube-state-metrics, never another team's HPAs."""
    return (
        f'max by (namespace, scaledobject) (label_replace({metric}{{horizontalpodautoscaler=~"keda-hpa-.+"}}, '
        '"scaledobject", "$1", "horizontalpodautoscaler", "keda-hpa-(.+)"))'
        " and on (namespace, scaledobject) max by (namespace, scaledobject) "
        f'(horizon_scaler_trigger_replicas_wanted{{{SCALER}, microservice=~"$microservice"}})'
    )


UP_DOWN = [
    model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="down", color="red", index=0),
            "1": model.ValueMappingResult(text="up", color="green", index=1),
        }
    )
]
SERVING = [
    model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="not serving", color="red", index=0),
            "1": model.ValueMappingResult(text="serving", color="green", index=1),
        }
    )
]
STALE = [
    model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="fresh", color="green", index=0),
            "1": model.ValueMappingResult(text="stale", color="orange", index=1),
        }
    )
]


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(["lastNotNull", "max"])
    )


def graph(panel_id: int, title: str, description: str, unit: str, *queries: prometheus.Dataquery,
          width: int = 12, height: int = 8) -> timeseries.Panel:  # fmt: skip
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .fill_opacity(10)
        .legend(legend())
        .grid_pos(model.GridPos(h=height, w=width, x=0, y=0))
    )
    for q in queries:
        panel = panel.with_target(q)
    return panel


def states(panel_id: int, title: str, description: str, mappings: list[model.ValueMapping],
           *queries: prometheus.Dataquery, width: int = 12, height: int = 8) -> statetimeline.Panel:  # fmt: skip
    panel = (
        statetimeline.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .mappings(mappings)
        .show_value(common.VisibilityMode.NEVER)
        .grid_pos(model.GridPos(h=height, w=width, x=0, y=0))
    )
    for q in queries:
        panel = panel.with_target(q)
    return panel


def build() -> dashboard.Dashboard:
    processes_vs_threshold = (
        graph(
            2,
            "Processes vs threshold: $microservice",
            "Horizon worker processes of the microservice (over every master, the number KEDA thresholds), the "
            "threshold of each ScaledObject that scales on it (dashed), and Horizon's maxProcesses.",
            "short",
            query('max(horizon_microservice_processes{microservice="$microservice"})', "processes"),
            query(
                f"max by (namespace, scaledobject) (horizon_scaler_trigger_threshold{{{SCALER}, "
                f'microservice="$microservice", metric="processes", queue=""}})',
                "threshold {{namespace}}/{{scaledobject}}",
                "B",
            ),
            query('max(horizon_microservice_max_processes{microservice="$microservice"})', "max processes", "C"),
            width=24,
        )
        .repeat("microservice")
        .repeat_direction("h")
        .max_per_row(4)
        .override_by_regexp(
            "^threshold.*",
            [model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})],
        )
    )
    return (
        dashboard.Dashboard("Horizon KEDA")
        .uid(UID)
        .description(
            "Laravel Horizon workloads scaled by KEDA through horizon-keda: what each microservice runs against "
            "its threshold, what the scaler asks for, the exporter's polls of Horizon and the scaler's answers "
            "to KEDA."
        )
        .tags(["horizon-keda", "keda", "laravel-horizon"])
        .editable()
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("microservice")
            .label("Microservice")
            .datasource(DATASOURCE)
            .query("label_values(horizon_microservice_processes, microservice)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
        )
        # --- what is scaled -------------------------------------------------------------------------------
        .with_row(dashboard.Row("Scaling").id(1))
        .with_panel(processes_vs_threshold)
        .with_panel(
            graph(
                3,
                "Replicas: wanted, current, max",
                "What the scaler's last GetMetrics asks for per ScaledObject (floor(value / threshold) + 1, the "
                "highest of its triggers), and its HPA's current and maximum replicas from kube-state-metrics "
                "(empty without it).",
                "short",
                query(
                    f"max by (namespace, scaledobject) (horizon_scaler_trigger_replicas_wanted{{{SCALER}, "
                    f'microservice=~"$microservice"}})',
                    "wanted {{namespace}}/{{scaledobject}}",
                ),
                query(
                    keda_hpa("kube_horizontalpodautoscaler_status_current_replicas"),
                    "current {{namespace}}/{{scaledobject}}",
                    "B",
                ),
                query(
                    keda_hpa("kube_horizontalpodautoscaler_spec_max_replicas"),
                    "max {{namespace}}/{{scaledobject}}",
                    "C",
                ),
            ).override_by_regexp(
                "^max .*",
                [model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})],
            )
        )
        .with_panel(
            states(
                4,
                "Active (scaler decision)",
                "The scaler's last IsActive/StreamIsActive decision per ScaledObject: active scales from zero.",
                [
                    model.ValueMap(
                        options={
                            "0": model.ValueMappingResult(text="inactive", color="blue", index=0),
                            "1": model.ValueMappingResult(text="active", color="green", index=1),
                        }
                    )
                ],
                query(
                    f"max by (namespace, scaledobject) (horizon_scaler_trigger_active{{{SCALER}, "
                    f'microservice=~"$microservice"}})',
                    "{{namespace}}/{{scaledobject}}",
                ),
            )
        )
        # --- the exporter's polls of Horizon --------------------------------------------------------------
        .with_row(dashboard.Row("Exporter: Horizon targets").id(5))
        .with_panel(
            states(
                6,
                "Horizon targets up",
                "1 while the latest poll of the Horizon target succeeded on every exporter replica, 0 when one "
                "failed (HorizonTargetDown fires when all have failed for 5 minutes).",
                UP_DOWN,
                query("min by (target) (horizon_target_up)", "{{target}}"),
            )
        )
        .with_panel(
            graph(
                7,
                "Poll errors",
                "Failed polls per second by target and reason (README, Metrics: http_403, not_json, timeout, ...).",
                "reqps",
                query(
                    "sum by (target, reason) (rate(horizon_poll_errors_total[$__rate_interval]))",
                    "{{target}} {{reason}}",
                ),
            )
        )
        .with_panel(
            graph(
                8,
                "Data age per target",
                "Seconds since the latest successful poll of each target (the oldest over the exporter replicas).",
                "s",
                query("time() - min by (target) (horizon_last_success_timestamp_seconds)", "{{target}}"),
            )
        )
        .with_panel(
            states(
                9,
                "Microservices stale",
                "1 while a microservice's values are kept from an earlier poll because the latest one failed "
                "(HorizonMicroserviceStale).",
                STALE,
                query(
                    'max by (microservice) (horizon_microservice_stale{microservice=~"$microservice"})',
                    "{{microservice}}",
                ),
            )
        )
        # --- the scaler's answers to KEDA ----------------------------------------------------------------
        .with_row(dashboard.Row("Scaler: answers to KEDA").id(10))
        .with_panel(
            states(
                11,
                "Scaler replicas serving",
                "grpc.health.v1 SERVING (the source is fresh) per scaler replica, and whether Prometheus scrapes "
                "it (HorizonScalerNotServing, HorizonScalerUnavailable).",
                SERVING,
                query(f"min by (pod, instance) (horizon_scaler_source_fresh{{{SCALER}}})", "{{pod}} {{instance}}"),
                query(f"min by (pod, instance) (up{{{SCALER}}})", "{{pod}} {{instance}} scraped", "B"),
                width=8,
            )
        )
        .with_panel(
            graph(
                12,
                "Source age",
                "Seconds since each scaler last heard from its exporter (older than --max-staleness, 10 s as "
                "deployed: the scaler answers UNAVAILABLE).",
                "s",
                query(f"max by (pod, instance) (horizon_scaler_source_age_seconds{{{SCALER}}})", "{{pod}}"),
                width=8,
            )
        )
        .with_panel(
            graph(
                13,
                "Push latency",
                "From the source applying a change to the StreamIsActive message carrying it being written.",
                "s",
                query(
                    "histogram_quantile(0.5, sum by (le) "
                    f"(rate(horizon_scaler_push_latency_seconds_bucket{{{SCALER}}}[$__rate_interval])))",
                    "p50",
                ),
                query(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(horizon_scaler_push_latency_seconds_bucket{{{SCALER}}}[$__rate_interval])))",
                    "p99",
                    "B",
                ),
                width=8,
            )
        )
        .with_panel(
            graph(
                14,
                "RPC rate",
                "Calls KEDA made to the scaler per second, by method and status.",
                "reqps",
                query(
                    f"sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{KEDA_RPC}}}"
                    "[$__rate_interval]))",
                    "{{grpc_method}} {{grpc_code}}",
                ),
                width=8,
            )
        )
        .with_panel(
            graph(
                15,
                "RPC errors",
                "Calls that reached KEDA as errors (Canceled streams and StreamMetricSpec's UNIMPLEMENTED are "
                "normal and left out, as in HorizonScalerErrors), and the scaler's refusals by reason.",
                "reqps",
                query(
                    f"sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{KEDA_ERRORS}}}"
                    "[$__rate_interval]))",
                    "{{grpc_method}} {{grpc_code}}",
                ),
                query(
                    f"sum by (rpc, reason) (rate(horizon_scaler_refused_calls_total{{{SCALER}}}[$__rate_interval]))",
                    "refused {{rpc}}: {{reason}}",
                    "B",
                ),
                width=8,
            )
        )
        .with_panel(
            graph(
                16,
                "RPC latency (unary)",
                "p50 and p99 of the unary calls (IsActive, GetMetricSpec, GetMetrics) by method.",
                "s",
                query(
                    "histogram_quantile(0.5, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket"
                    f'{{{KEDA_RPC}, grpc_type="unary"}}[$__rate_interval])))',
                    "p50 {{grpc_method}}",
                ),
                query(
                    "histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket"
                    f'{{{KEDA_RPC}, grpc_type="unary"}}[$__rate_interval])))',
                    "p99 {{grpc_method}}",
                    "B",
                ),
                width=8,
            )
        )
        .with_panel(
            graph(
                17,
                "Pushes and open streams",
                "StreamIsActive messages per second by reason (first, change, heartbeat) and the streams open.",
                "short",
                query(
                    f"sum by (reason) (rate(horizon_scaler_pushes_total{{{SCALER}}}[$__rate_interval]))",
                    "pushes/s {{reason}}",
                ),
                query(f"sum(horizon_scaler_open_streams{{{SCALER}}})", "open streams", "B"),
                width=24,
            )
        )
    )


def render() -> str:
    """The dashboard as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(build().build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def main() -> None:
    OUTPUT.write_text(render())


if __name__ == "__main__":
    main()
