"""The monitoring files every deployment shares, and how to read them.

One copy lives in the Helm chart (Helm's `.Files` reads only inside the chart folder), and
docker-compose.yml (profile "monitoring") and the tests use the same paths:

    deploy/helm/triton-encoders/files/recording-rules.yaml           Prometheus rule file
    deploy/helm/triton-encoders/files/prometheus-adapter-rules.yaml  the HPA metric's adapter rule
    deploy/helm/triton-encoders/files/grafana-dashboard.json         written by deploy.monitoring.dashboard

Readers here return what a test or a tool needs from those files (every recorded name, the
adapter's query with its template filled as prometheus-adapter fills it, every panel's query)
without knowing the files' contents beyond the names the contract fixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = ROOT / "deploy" / "helm" / "triton-encoders" / "files"
RECORDING_RULES = CHART_FILES / "recording-rules.yaml"
ADAPTER_RULES = CHART_FILES / "prometheus-adapter-rules.yaml"
DASHBOARD = CHART_FILES / "grafana-dashboard.json"

# Names fixed by the contract (the HPA asks the adapter for ADAPTER_METRIC).
RECORD_PREFIX = "triton_encoders:"
QUEUE_RECORD = "triton_encoders:queue_us:rate1m"
COMPUTE_RECORD = "triton_encoders:compute_us:rate1m"
RATIO_RECORD = "triton_encoders:queue_compute_ratio"
ADAPTER_METRIC = "triton_queue_compute_ratio"
# Triton exports its latency summaries (the dashboard's percentile panels) only when started with
# this; every server this project starts passes it (serve, the chart, compose, the image's CMD).
SUMMARY_LATENCIES_ARG = "--metrics-config=summary_latencies=true"

# A dashboard panel that cannot answer everywhere says so in the first words of its description;
# the live test skips exactly those, and checks they query only what that source exports.
NEEDS = {
    "gpu": "Needs a GPU host.",
    "kubernetes": "Needs Kubernetes (the kubelet's cAdvisor metrics).",
}

TEMPLATE_FIELD = re.compile(r"<<\s*\.(\w+)\s*>>")
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


class MonitoringFileError(ValueError):
    """A monitoring file does not have the shape the contract describes; the message says where."""


# ----------------------------------------------------------------- recording rules

@dataclass(frozen=True)
class RecordingRule:
    group: str
    record: str
    expr: str


def recording_rules(path: Path = RECORDING_RULES) -> list[RecordingRule]:
    """Every `record:` rule of a Prometheus rule file, in file order (alerts are left out)."""
    document = _load_yaml(path)
    if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
        raise MonitoringFileError(f"{path}: a Prometheus rule file starts with `groups:` (a list)")
    return [RecordingRule(group["name"], rule["record"], str(rule["expr"]).strip())
            for group in document["groups"] for rule in group.get("rules", []) if "record" in rule]


# ----------------------------------------------------------------- prometheus-adapter rules

@dataclass(frozen=True)
class AdapterRule:
    series_query: str
    overrides: dict[str, str]    # series label -> Kubernetes resource
    name_matches: str
    name_as: str
    metrics_query: str

    def metric_name(self, series_name: str) -> str | None:
        """The name the adapter serves a discovered series under, or None if `matches` rejects it.

        prometheus-adapter applies `as` as a Go regexp replacement; empty `as` means "$1" when
        `matches` has a group, else "$0" (the series name).
        """
        pattern = re.compile(self.name_matches)
        if not pattern.search(series_name):
            return None
        replacement = self.name_as or ("$1" if pattern.groups else "$0")
        python_replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", replacement)
        return pattern.sub(python_replacement, series_name, count=1)

    def fill(self, series: str, label_matchers: str, group_by: str) -> str:
        """metricsQuery with its template filled, as the adapter fills it for one query."""
        values = {"Series": series, "LabelMatchers": label_matchers, "GroupBy": group_by}
        unknown = set(TEMPLATE_FIELD.findall(self.metrics_query)) - set(values)
        if unknown:
            raise MonitoringFileError(f"metricsQuery uses template fields this reader does not fill: {sorted(unknown)}")
        return TEMPLATE_FIELD.sub(lambda match: values[match.group(1)], self.metrics_query)


def adapter_rules(path: Path = ADAPTER_RULES) -> list[AdapterRule]:
    """The rule list in the form of the prometheus-adapter chart's `rules.custom`."""
    document = _load_yaml(path)
    if not isinstance(document, list):
        raise MonitoringFileError(f"{path}: expected a list of adapter rules (the chart's rules.custom)")
    rules = []
    for index, item in enumerate(document):
        try:
            overrides = {label: target["resource"] for label, target in item["resources"]["overrides"].items()}
            rules.append(AdapterRule(item["seriesQuery"], overrides, item["name"]["matches"],
                                     item["name"].get("as", ""), item["metricsQuery"]))
        except (KeyError, TypeError) as missing:
            raise MonitoringFileError(f"{path}: rule {index} lacks {missing}") from None
    return rules


def pod_label_matchers(namespace: str, pods: list[str]) -> str:
    """`<<.LabelMatchers>>` of a per-pod query, as prometheus-adapter writes it."""
    return f'namespace="{namespace}",pod=~"{"|".join(pods)}"'


# ----------------------------------------------------------------- the dashboard

@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    needs: str | None    # a key of NEEDS when the panel answers only there


def panel_queries(dashboard: dict) -> list[PanelQuery]:
    """Every target expression of every panel, rows' nested panels included."""
    queries = []
    for panel in _panels(dashboard.get("panels", [])):
        description = panel.get("description") or ""
        needs = next((key for key, mark in NEEDS.items() if description.startswith(mark)), None)
        for target in panel.get("targets") or []:
            queries.append(PanelQuery(panel["title"], target.get("refId", ""), target["expr"], needs))
    return queries


def fill_grafana_variables(expr: str, values: Mapping[str, str]) -> str:
    """A panel's PromQL with its dashboard variables replaced; an unknown variable is an error,
    so that a variable added to the dashboard cannot slip past the live test unfilled."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise MonitoringFileError(f"no value for the dashboard variable ${name} in: {expr}")
        return values[name]
    return GRAFANA_VARIABLE.sub(value, expr)


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels") or [])
        else:
            yield panel


def _load_yaml(path: Path):
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise MonitoringFileError(f"{path} is missing: it belongs to the Helm chart's files/ folder") from None
