"""The monitoring files on their own: the dashboard is what its generator writes, the rule file
passes promtool, the adapter rule serves the HPA's metric, and the readers behave.

What the queries return against real servers is tests/test_monitoring_live.py.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from deploy.monitoring import contract, dashboard
from deploy.monitoring.prometheus import find_binary

# What each source that a marked panel waits for exports (Triton's DCGM metrics; the kubelet's cAdvisor).
SOURCE_METRICS = {"gpu": re.compile(r"^(nv_gpu_\w+|nv_energy_consumption)$"), "kubernetes": re.compile(r"^container_\w+$")}
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "group", "by", "without", "rate", "irate", "increase",
                "clamp_min", "timestamp", "on", "ignoring"}


def metric_names(expr: str) -> set[str]:
    """Identifiers that stand before a `{` selector: the metrics a query reads."""
    return {name for name in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{", expr) if name not in PROMQL_WORDS}


@pytest.fixture(scope="module")
def board() -> dict:
    return json.loads(contract.DASHBOARD.read_text())


def test_committed_dashboard_is_what_the_generator_writes():
    assert contract.DASHBOARD.read_text() == dashboard.render(), (
        "grafana-dashboard.json drifted from deploy/monitoring/dashboard.py: "
        "run `.venv/bin/python -m deploy.monitoring.dashboard` and commit the result")


def test_dashboard_check_command_reports_drift(tmp_path):
    stale = tmp_path / "dashboard.json"
    stale.write_text("{}\n")
    assert dashboard.main(["--check", "--out", str(stale)]) == 1
    assert dashboard.main(["--out", str(stale)]) == 0 and dashboard.main(["--check", "--out", str(stale)]) == 0


def test_dashboard_asks_for_a_prometheus_datasource_through_a_variable(board):
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [panel for panel in board["panels"] if panel["type"] != "row"]
    refs = [panel["datasource"] for panel in panels] + [t["datasource"] for p in panels for t in p["targets"]]
    assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"] and "id" not in board


def test_dashboard_covers_what_the_operators_need(board):
    queried = set().union(*(metric_names(query.expr) for query in contract.panel_queries(board)))
    needed = {"nv_inference_request_success", "nv_inference_count", "nv_inference_request_failure",
              "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
              "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
              "nv_inference_queue_summary_us", "nv_inference_exec_count", "nv_inference_pending_request_count",
              contract.RATIO_RECORD, "nv_cpu_utilization", "nv_cpu_memory_used_bytes", "nv_gpu_utilization",
              "nv_gpu_memory_used_bytes"}
    assert needed <= queried, f"no panel reads {sorted(needed - queried)}"


def test_panels_marked_for_another_place_read_only_what_that_place_exports(board):
    marked = [query for query in contract.panel_queries(board) if query.needs is not None]
    assert {query.needs for query in marked} == set(contract.NEEDS)
    for query in marked:
        foreign = {name for name in metric_names(query.expr) if not SOURCE_METRICS[query.needs].match(name)}
        assert not foreign, f"{query.panel!r} is skipped as {query.needs}-only but reads {foreign}"


def test_a_panel_marked_as_needing_something_must_say_so_first():
    spec = dashboard.PanelSpec("x", "no mark here", "short", (dashboard.Query("up", "u"),), needs="gpu")
    with pytest.raises(ValueError, match="must start with"):
        dashboard.panel(spec, 1)


def test_unknown_dashboard_variable_is_an_error_not_a_silent_pass():
    assert contract.fill_grafana_variables('x{a=~"$pod"}[$__rate_interval]', {"pod": "p", "__rate_interval": "1m"}) \
        == 'x{a=~"p"}[1m]'
    with pytest.raises(contract.MonitoringFileError, match=r"\$model"):
        contract.fill_grafana_variables('x{model="$model"}', {})


def test_recording_rules_hold_the_contract_names():
    records = [rule.record for rule in contract.recording_rules()]
    assert {contract.QUEUE_RECORD, contract.COMPUTE_RECORD, contract.RATIO_RECORD} <= set(records)
    assert all(record.startswith(contract.RECORD_PREFIX) for record in records), records
    assert len(records) == len(set(records))


def test_promtool_accepts_the_rule_file():
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("no promtool: install the Debian package `prometheus`")
    result = subprocess.run([str(promtool), "check", "rules", str(contract.RECORDING_RULES)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_adapter_serves_the_ratio_record_under_the_hpa_metric_name():
    served = {rule.metric_name(contract.RATIO_RECORD): rule for rule in contract.adapter_rules()}
    rule = served.get(contract.ADAPTER_METRIC)
    assert rule is not None, f"no adapter rule turns {contract.RATIO_RECORD} into {contract.ADAPTER_METRIC}"
    assert rule.overrides.get("namespace") == "namespace" and rule.overrides.get("pod") == "pod"
    filled = rule.fill(contract.RATIO_RECORD, contract.pod_label_matchers("ns", ["a", "b"]), "pod")
    assert "<<" not in filled and contract.RATIO_RECORD in filled and 'pod=~"a|b"' in filled


def test_adapter_name_rule_follows_the_adapters_replacement_rules():
    rule = contract.AdapterRule("x", {}, "^(.*)_total$", "", "q")
    assert rule.metric_name("requests_total") == "requests" and rule.metric_name("other") is None
    renamed = contract.AdapterRule("x", {}, "^ns:(.*)$", "${1}_per_pod", "q")
    assert renamed.metric_name("ns:ratio") == "ratio_per_pod"
    with pytest.raises(contract.MonitoringFileError, match="Resource"):
        contract.AdapterRule("x", {}, "a", "", "<<.Resource>>").fill("a", "", "pod")
