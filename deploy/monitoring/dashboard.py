"""The Grafana dashboard of triton-encoders, written from code with grafana-foundation-sdk.

    python -m deploy.monitoring.dashboard           (re)write deploy/helm/.../files/grafana-dashboard.json
    python -m deploy.monitoring.dashboard --check   exit 1 if the committed file differs from this code

Every query uses only metrics Triton 2.51 exports (plus the recording rule the HPA scales on),
and tests/test_monitoring_live.py runs each one against a real Prometheus scraping real
servers. Panels that cannot answer everywhere (GPU, Kubernetes' cAdvisor) start their
description with a mark from contract.NEEDS; the live test skips exactly those.

The dashboard asks for a Prometheus data source through a variable (`datasource`), so the same
file imports into any Grafana and provisions from a ConfigMap or a folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as grafana
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DataSourceRef, VariableRefresh

from deploy.monitoring.contract import DASHBOARD, NEEDS, RATIO_RECORD, SUMMARY_LATENCIES_ARG

UID = "triton-encoders"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTOR = 'namespace=~"$namespace", pod=~"$pod"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 8
    needs: str | None = None    # a key of contract.NEEDS


# ----------------------------------------------------------------- PromQL pieces

def selected(metric: str, extra: str = "") -> str:
    """The metric on the pods the dashboard's variables select."""
    return f"{metric}{{{SELECTOR}{', ' + extra if extra else ''}}}"


def rate_by(labels: str, metric: str, extra: str = "") -> str:
    return f"sum by ({labels}) (rate({selected(metric, extra)}[$__rate_interval]))"


def per_request(duration_metric: str) -> str:
    """Average microseconds per successful request: Triton adds each request's time to the counter."""
    return f"{rate_by('model', duration_metric)} / {rate_by('model', 'nv_inference_request_success')}"


def worst_pod_quantile(summary_metric: str, quantile: str) -> Query:
    # A summary's quantiles cannot be combined across pods; the worst pod is the honest view.
    on_quantile = selected(summary_metric, f'quantile="{quantile}"')
    return Query(f"max by (model) ({on_quantile})", f"{{{{model}}}} p{float(quantile) * 100:g}")


# ----------------------------------------------------------------- the panels, by row

def traffic() -> list[PanelSpec]:
    return [
        PanelSpec("Requests per second", "Successful inference requests, per model (a batch counts once).",
                  "reqps", (Query(rate_by("model", "nv_inference_request_success"), "{{model}}"),)),
        PanelSpec("Texts per second", "Inferences per model: one text of a batched request is one inference.",
                  "short", (Query(rate_by("model", "nv_inference_count"), "{{model}}"),)),
        PanelSpec("Failures per second by reason",
                  "Failed requests per model and Triton's reason (REJECTED: queue full or timed out; "
                  "BACKEND: the model raised; CANCELED; OTHER).",
                  "reqps", (Query(rate_by("model, reason", "nv_inference_request_failure"), "{{model}} {{reason}}"),)),
    ]


def latency_averages() -> list[PanelSpec]:
    phases = [("Queue", "nv_inference_queue_duration_us", "waiting in the model's scheduling queue"),
              ("Compute input", "nv_inference_compute_input_duration_us", "copying inputs into the backend"),
              ("Compute infer", "nv_inference_compute_infer_duration_us", "running the model"),
              ("Compute output", "nv_inference_compute_output_duration_us", "copying outputs out of the backend")]
    return [PanelSpec(f"{name} time per request (average)",
                      f"Microseconds per successful request spent {what}, from Triton's cumulative counters.",
                      "µs", (Query(per_request(metric), "{{model}}"),), width=6)
            for name, metric, what in phases]


def latency_percentiles() -> list[PanelSpec]:
    summaries = [("Queue time", "nv_inference_queue_summary_us"),
                 ("Compute infer time", "nv_inference_compute_infer_summary_us"),
                 ("Request time", "nv_inference_request_summary_us")]
    return [PanelSpec(f"{name} p50 / p99 (worst pod)",
                      f"Triton's summaries over its last minute; empty unless the server runs with "
                      f"`{SUMMARY_LATENCIES_ARG}`. Quantiles cannot be averaged across pods: the worst pod is shown.",
                      "µs", (worst_pod_quantile(metric, "0.5"), worst_pod_quantile(metric, "0.99")))
            for name, metric in summaries]


def scaling() -> list[PanelSpec]:
    return [
        PanelSpec("Queue / compute ratio (HPA metric)",
                  f"The recording rule {RATIO_RECORD} per pod: time queued per unit of time computed in the "
                  "tokenizer and encoder over one minute. prometheus-adapter serves it to the HPA.",
                  "none", (Query(f"{RATIO_RECORD}{{{SELECTOR}}}", "{{pod}}"),), width=6),
        PanelSpec("Average batch size per execution",
                  "Inferences over executions per model: how full the dynamic batcher fills each batch.",
                  "short", (Query(f"{rate_by('model', 'nv_inference_count')} / "
                                  f"{rate_by('model', 'nv_inference_exec_count')}", "{{model}}"),), width=6),
        PanelSpec("Pending requests", "Requests waiting in each model's queue now (a gauge), summed over pods.",
                  "short", (Query(f"sum by (model) ({selected('nv_inference_pending_request_count')})", "{{model}}"),),
                  width=6),
        PanelSpec("Replicas", "Pods whose Triton metrics Prometheus scrapes now.",
                  "short", (Query('count(group by (pod) (nv_inference_count{namespace=~"$namespace"}))', "pods"),),
                  width=6),
    ]


def resources() -> list[PanelSpec]:
    kubernetes, gpu = NEEDS["kubernetes"], NEEDS["gpu"]
    cadvisor = 'namespace=~"$namespace", pod=~"$pod", container!=""'
    return [
        PanelSpec("CPU utilisation (Triton's view)",
                  "nv_cpu_utilization: Triton reads /proc/stat, which in a container is the node's, not the pod's.",
                  "percentunit", (Query(f"max by (pod) ({selected('nv_cpu_utilization')})", "{{pod}}"),), width=6),
        PanelSpec("Memory used (Triton's view)",
                  "nv_cpu_memory_used_bytes: from /proc/meminfo, the node's memory in a container.",
                  "bytes", (Query(f"max by (pod) ({selected('nv_cpu_memory_used_bytes')})", "{{pod}}"),), width=6),
        PanelSpec("Pod CPU", f"{kubernetes} CPU cores the pod's containers use.", "short",
                  (Query(f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{cadvisor}}}[$__rate_interval]))",
                         "{{pod}}"),), width=6, needs="kubernetes"),
        PanelSpec("Pod memory (working set)", f"{kubernetes} What the kubelet counts against the memory limit.",
                  "bytes", (Query(f"sum by (pod) (container_memory_working_set_bytes{{{cadvisor}}})", "{{pod}}"),),
                  width=6, needs="kubernetes"),
        PanelSpec("GPU utilisation", f"{gpu} nv_gpu_utilization, from DCGM, per pod and GPU.", "percentunit",
                  (Query(f"max by (pod, gpu_uuid) ({selected('nv_gpu_utilization')})", "{{pod}} {{gpu_uuid}}"),),
                  width=12, needs="gpu"),
        PanelSpec("GPU memory", f"{gpu} Used and total GPU memory, from DCGM.", "bytes",
                  (Query(f"max by (pod, gpu_uuid) ({selected('nv_gpu_memory_used_bytes')})", "{{pod}} used"),
                   Query(f"max by (pod, gpu_uuid) ({selected('nv_gpu_memory_total_bytes')})", "{{pod}} total")),
                  width=12, needs="gpu"),
    ]


ROWS = (("Traffic", traffic), ("Latency: averages", latency_averages),
        ("Latency: percentiles (summaries)", latency_percentiles), ("Scaling", scaling),
        ("Resources", resources))


# ----------------------------------------------------------------- building the JSON

def panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel:
    if spec.needs is not None and not spec.description.startswith(NEEDS[spec.needs]):
        raise ValueError(f"panel {spec.title!r} needs {spec.needs}: its description must start with "
                         f"{NEEDS[spec.needs]!r} (the live test reads that mark)")
    built = (timeseries.Panel().id(panel_id).title(spec.title).description(spec.description)
             .datasource(DATASOURCE).unit(spec.unit).height(8).span(spec.width))
    for index, query in enumerate(spec.queries):
        built = built.with_target(prometheus.Dataquery().ref_id(chr(ord("A") + index)).expr(query.expr)
                                  .legend_format(query.legend).datasource(DATASOURCE))
    return built


def variables() -> list:
    labels_of = "label_values(nv_inference_request_success{namespace=~\"$namespace\"}, pod)"
    return [
        grafana.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        grafana.QueryVariable("namespace").label("Namespace").datasource(DATASOURCE)
        .query("label_values(nv_inference_request_success, namespace)").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True).all_value(".*"),
        grafana.QueryVariable("pod").label("Pod").datasource(DATASOURCE).query(labels_of)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*"),
    ]


def build() -> dict:
    """The dashboard as a JSON-ready dict."""
    board = (grafana.Dashboard("triton-encoders").uid(UID).tags(["triton", "triton-encoders"])
             .description("Triton Inference Server serving triton-encoders models: traffic, latency, "
                          "the autoscaling signal and resources. Generated by deploy/monitoring/dashboard.py.")
             .refresh("30s").time("now-1h", "now").tooltip(DashboardCursorSync.CROSSHAIR).editable()
             .variables(variables()))
    panel_id = 0
    for title, specs in ROWS:
        panel_id += 1
        board = board.with_row(grafana.Row(title).id(panel_id))
        for spec in specs():
            panel_id += 1
            board = board.with_panel(panel(spec, panel_id))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.monitoring.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DASHBOARD, help=f"where to write (default {DASHBOARD})")
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} differs from what deploy/monitoring/dashboard.py generates; "
                  "run `python -m deploy.monitoring.dashboard` and commit the result.", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
