"""The monitoring files against a real Prometheus scraping two real tritonservers under real load.

Two local servers of the minilm-intent repository stand in for two pods (static scrape targets
labelled `namespace` and `pod`, as a PodMonitor labels them); Prometheus 2.42 scrapes them every
second with the chart's recording rules loaded. perf_analyzer loads both, first at concurrency 1
then at 16. Through Prometheus's HTTP API the tests then check that every recording rule, the
prometheus-adapter query (its template filled as the adapter fills it) and every dashboard
panel query return data, and that the queue/compute ratio is 0 when idle and rises with
concurrency. Nothing here knows the files' contents beyond the names the contract fixes.

Skips where no `prometheus` binary is installed (the reason says how to get one); with
TRITON_ENCODERS_REQUIRE_PROMETHEUS=1 (CI) a missing binary is an error instead.
About a minute and a half on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

import pytest

from deploy.monitoring import contract
from deploy.monitoring.prometheus import INSTALL_HINT, LocalPrometheus, find_binary

REQUIRE_ENV = "TRITON_ENCODERS_REQUIRE_PROMETHEUS"
if find_binary() is None:
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but no prometheus binary was found: {INSTALL_HINT}", pytrace=False)
    pytest.skip(f"no prometheus binary: {INSTALL_HINT}", allow_module_level=True)

pytestmark = pytest.mark.slow

PODS = 2
# Seconds of load per concurrency. Idle adds nothing to the counters, so the 1-minute windows see
# concurrency 1 alone, then mostly 16 (its counters grow ~10x faster). 30 s at concurrency 1 lets the
# ratio settle: over the first seconds a few slow requests on a busy machine weigh a lot.
LOAD_S = {1: 30.0, 16: 20.0}
STATE_TIMEOUT_S = 90   # a wait bound for states on a busy machine, never a speed assertion
IDLE_RATIO_MAX = 0.01
RATE_INTERVAL = "1m"   # what $__rate_interval stands for here
DASHBOARD = json.loads(contract.DASHBOARD.read_text())


@dataclass
class Observations:
    pods: list[str]
    namespace: str
    prometheus: LocalPrometheus
    idle: dict[str, float]          # pod -> ratio before any load
    at_concurrency: dict[int, dict[str, float]]
    loaded_at: float                # a time (Unix s) whose rate windows hold the heaviest load


def ratios(prometheus: LocalPrometheus, at: float | None = None) -> dict[str, float]:
    return {item["metric"]["pod"]: float(item["value"][1]) for item in prometheus.query(contract.RATIO_RECORD, at)}


def wait_for_evaluation_after(prometheus: LocalPrometheus, moment: float, pods: list[str]) -> float:
    """Wait until every pod's ratio was recorded after `moment` (a scrape and a rule evaluation
    later), and return that evaluation's time."""
    newer = f"timestamp({contract.RATIO_RECORD}) > {moment + 1.0:.3f}"
    result = prometheus.wait_for(newer, lambda result: {item["metric"]["pod"] for item in result} >= set(pods),
                                 STATE_TIMEOUT_S, "a rule evaluation after the load")
    return min(float(item["value"][1]) for item in result)


@pytest.fixture(scope="module")
def observations(intent_repository, tmp_path_factory) -> Observations:
    from deploy.monitoring.load import ensemble_input, load_pods
    from deploy.monitoring.local import monitored_pods

    work = tmp_path_factory.mktemp("monitoring")
    ensemble, input_data = ensemble_input(intent_repository, "minilm-intent", work / "inputs")
    with monitored_pods(intent_repository, PODS) as (pods, prometheus):
        names = [pod.name for pod in pods]
        prometheus.wait_for(contract.RATIO_RECORD, lambda result: len(result) == PODS, STATE_TIMEOUT_S,
                            "the ratio of both idle pods")
        # Two evaluations after the first one: the rates have two idle samples at least.
        idle_at = wait_for_evaluation_after(prometheus, time.time() + 1, names)
        observed = Observations(names, pods[0].namespace, prometheus, ratios(prometheus, idle_at), {}, 0.0)
        for concurrency, seconds in LOAD_S.items():
            runs = load_pods(pods, ensemble, input_data, concurrency, seconds, work / "perf")
            assert all(run.ok for run in runs), [run.output_tail for run in runs if not run.ok]
            observed.loaded_at = wait_for_evaluation_after(prometheus, time.time(), names)
            observed.at_concurrency[concurrency] = ratios(prometheus, observed.loaded_at)
        yield observed


def test_prometheus_scrapes_every_pod_with_its_labels(observations):
    targets = observations.prometheus.active_targets()
    assert {target["labels"]["pod"] for target in targets} == set(observations.pods)
    assert all(target["health"] == "up" for target in targets), [t["lastError"] for t in targets]
    assert {target["labels"]["namespace"] for target in targets} == {observations.namespace}


@pytest.mark.parametrize("rule", contract.recording_rules(), ids=lambda rule: rule.record)
def test_recording_rule_is_healthy_and_returns_data_for_every_pod(observations, rule):
    loaded = {item["name"]: item for item in observations.prometheus.rules() if item["type"] == "recording"}
    assert loaded[rule.record]["health"] == "ok", loaded[rule.record].get("lastError")
    result = observations.prometheus.query(rule.record, observations.loaded_at)
    assert {item["metric"].get("pod") for item in result} == set(observations.pods), result
    assert any(math.isfinite(float(item["value"][1])) for item in result), result


@pytest.mark.parametrize("record", [contract.QUEUE_RECORD, contract.COMPUTE_RECORD, contract.RATIO_RECORD])
def test_contract_records_are_one_series_per_pod(observations, record):
    result = observations.prometheus.query(record, observations.loaded_at)
    assert sorted(item["metric"]["pod"] for item in result) == sorted(observations.pods)
    assert all(set(item["metric"]) == {"__name__", "namespace", "pod"} for item in result), result


def test_ratio_is_zero_when_idle_and_rises_with_concurrency(observations):
    idle, low, high = observations.idle, observations.at_concurrency[1], observations.at_concurrency[16]
    assert set(idle) == set(low) == set(high) == set(observations.pods)
    assert all(value <= IDLE_RATIO_MAX for value in idle.values()), f"idle pods should read ~0: {idle}"
    assert all(high[pod] > low[pod] > 0 for pod in observations.pods), f"concurrency 1: {low}, 16: {high}"
    mean = lambda values: sum(values.values()) / len(values)   # noqa: E731
    assert mean(high) > 1.5 * mean(low), f"16 requests in flight must queue clearly more: {low} -> {high}"


def test_adapter_query_serves_the_ratio_per_pod_as_the_hpa_asks(observations):
    prometheus, at = observations.prometheus, observations.loaded_at
    served = {}
    for rule in contract.adapter_rules():
        assert {"namespace", "pod"} <= set(rule.overrides), "the HPA's Pods metric needs both resources mapped"
        for series in {item["__name__"] for item in prometheus.series(rule.series_query)}:
            name = rule.metric_name(series)
            if name is not None:
                served[name] = rule.fill(series, contract.pod_label_matchers(observations.namespace,
                                                                              observations.pods), "pod")
    assert contract.ADAPTER_METRIC in served, f"the adapter would serve only {sorted(served)}"
    result = prometheus.query(served[contract.ADAPTER_METRIC], at)
    by_pod = {item["metric"]["pod"]: float(item["value"][1]) for item in result}
    assert by_pod == pytest.approx(ratios(prometheus, at)), "the HPA must see the recorded ratio, pod by pod"


def _panel_id(query: contract.PanelQuery) -> str:
    return f"{query.panel} [{query.ref_id}]"


@pytest.mark.parametrize("query", contract.panel_queries(DASHBOARD), ids=_panel_id)
def test_dashboard_query_returns_data(observations, query):
    if query.needs is not None:
        pytest.skip(f"{query.panel!r} cannot answer on this machine: {contract.NEEDS[query.needs]}")
    variables = {"namespace": observations.namespace, "pod": f"({'|'.join(observations.pods)})",
                 "__rate_interval": RATE_INTERVAL}
    expr = contract.fill_grafana_variables(query.expr, variables)
    result = observations.prometheus.query(expr, observations.loaded_at)
    assert result, f"no series: {expr}"
    values = [float(item["value"][1]) for item in result]
    assert any(math.isfinite(value) for value in values), f"only NaN/Inf: {expr} -> {result}"
