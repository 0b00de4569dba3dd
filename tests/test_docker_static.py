"""The GPU deployment files, checked on a machine without Docker or a GPU.

hadolint lints every Dockerfile; the compose file validates against the compose-spec schema;
the parsed files are held to what a GPU host needs (one NGC release everywhere, the GPU
reserved, the server waiting for the converter, a healthcheck, restricted admin APIs). The
server command of docker-compose.yml and the image's CMD also run here, against the real
tritonserver of nvidia-pytriton, to show that they start and keep the model-repository API closed.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NGC_IMAGE = re.compile(r"^nvcr\.io/nvidia/tritonserver:(?P<release>\d\d\.\d\d)-(?P<flavour>py3(?:-sdk)?)$")
LOCAL_IMAGE = re.compile(r"^triton-encoders-[a-z]+:(?P<release>\d\d\.\d\d)-(?P<flavour>py3(?:-sdk)?)$")
ADMIN_HEADER = "triton-admin-key"


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is missing from {BIN}: install requirements.txt into the virtual environment")
    return str(path)


# ---------------------------------------------------------------- reading the files

@dataclass
class Stage:
    name: str
    base: str                                  # image after ARG substitution, or a stage name
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arguments for word, arguments in self.instructions if word == keyword]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue   # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_stages(path: Path) -> dict[str, Stage]:
    global_args, stages, current = {}, {}, None
    for keyword, arguments in dockerfile_instructions(path):
        if keyword == "ARG" and current is None:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            parts = re.split(r"\s+as\s+", arguments, flags=re.IGNORECASE)
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], parts[0])
            current = Stage(parts[1] if len(parts) > 1 else image, image)
            stages[current.name] = current
        else:
            current.instructions.append((keyword, arguments))
    return stages


def stage_arg(stage: Stage, name: str) -> str:
    for arguments in stage.args("ARG"):
        key, _, value = arguments.partition("=")
        if key == name:
            return value
    raise AssertionError(f"stage {stage.name} declares no ARG {name}")


def requirement_pin(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(rf"^{re.escape(package)}==(\S+)", line.strip(), flags=re.IGNORECASE)
        if match:
            return match.group(1)
    raise AssertionError(f"requirements.txt pins no {package}")


def dockerignore_excludes(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    excluded = False
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated, pattern = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        regex = "".join("(.*/)?" if token == "**/" else ".*" if token == "**" else "[^/]*" if token == "*"
                        else "[^/]" if token == "?" else re.escape(token)
                        for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern))
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return dockerfile_stages(DOCKERFILE)


def service_command(service: dict) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


# ---------------------------------------------------------------- linters and schema

def test_hadolint_passes_on_every_dockerfile():
    dockerfiles = [p for p in ROOT.rglob("*Dockerfile*")
                   if p.is_file() and not {".venv", ".git", "node_modules"} & set(p.relative_to(ROOT).parts)]
    assert DOCKERFILE in dockerfiles
    for dockerfile in dockerfiles:
        result = subprocess.run([_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), "--no-color",
                                 str(dockerfile)], capture_output=True, text=True)
        assert result.returncode == 0, f"hadolint on {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_config_does_fail_on_a_bad_dockerfile(tmp_path):
    # The check above means something only if the configuration lets findings fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install curl\n")
    result = subprocess.run([_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_compose_file_validates_against_the_compose_spec():
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- one NGC release

def test_every_image_uses_the_same_ngc_release(compose, stages):
    from_images = {stage.name: NGC_IMAGE.match(stage.base) for stage in stages.values()
                   if stage.base not in stages and stage.base != "scratch"}   # scratch: the empty image
    assert from_images and all(from_images.values()), f"FROM lines must use NGC tritonserver tags: {from_images}"
    releases = {match.group("release") for match in from_images.values()}
    assert {m.group("flavour") for m in from_images.values()} == {"py3", "py3-sdk"}

    for name in ("convert", "triton", "perf"):
        tag = LOCAL_IMAGE.match(compose["services"][name]["image"])
        assert tag, f"{name}: image tag must carry the NGC release, got {compose['services'][name]['image']}"
        releases.add(tag.group("release"))
    assert len(releases) == 1, f"Dockerfile and docker-compose.yml name different releases: {sorted(releases)}"
    assert compose["services"]["perf"]["image"].endswith("-py3-sdk")


def test_compose_services_build_the_dockerfile_targets(compose, stages):
    for name in ("convert", "triton", "perf"):
        build = compose["services"][name]["build"]
        assert build["context"] == "." and build["target"] in stages
    # The Kubernetes images (model-repository, triton-cpu) follow the server stage; the last one,
    # triton-cpu, is the server plus ONNX Runtime, so a plain `docker build .` still gives a server.
    assert list(stages)[-1] in ("triton", "triton-cpu"), "a plain `docker build .` should give the server"


# ---------------------------------------------------------------- the images

def test_serving_image_pins_what_the_tokenizer_model_imports(stages):
    runtime = stages["serving-runtime"]
    assert stage_arg(runtime, "TOKENIZERS_VERSION") == requirement_pin("tokenizers")
    assert stage_arg(runtime, "NUMPY_VERSION") == requirement_pin("numpy")
    assert int(stage_arg(runtime, "NUMPY_VERSION").split(".")[0]) < 2
    installs = runtime.args("RUN")[0]
    assert '"tokenizers==${TOKENIZERS_VERSION}"' in installs and '"numpy==${NUMPY_VERSION}"' in installs


def test_convert_image_pins_torch_cpu_onnxruntime_and_tensorrt(stages):
    convert = stages["convert"]
    assert convert.base == "serving-runtime", "convert must run in the image version that serves"
    runs = " ".join(convert.args("RUN"))
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs and '"torch==${TORCH_VERSION}"' in runs
    assert stage_arg(convert, "TORCH_VERSION") == requirement_pin("torch")
    assert re.fullmatch(r"\d+\.\d+\.\d+", stage_arg(convert, "ONNXRUNTIME_VERSION"))
    assert re.fullmatch(r"10\.\d+\.\d+\.\d+", stage_arg(convert, "TENSORRT_VERSION"))
    assert '"tensorrt-cu13==${TENSORRT_VERSION}"' in runs
    assert "python3 -m convert.tensorrt_engine --strict" in runs, "the bindings/libnvinfer check must run at build"


def test_containers_run_as_a_non_root_user_and_never_install_at_start(stages):
    for name in ("convert", "triton", "perf"):
        users = stages[name].args("USER")
        assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name} runs as root"
        start = " ".join(stages[name].args("CMD") + stages[name].args("ENTRYPOINT"))
        assert "pip" not in start, f"{name} installs packages when it starts"


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_private(stages):
    sources = [token for stage in stages.values() for arguments in stage.args("COPY")
               if not arguments.startswith("--from") for token in shlex.split(arguments)[:-1]]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not dockerignore_excludes(source), f".dockerignore excludes {source}, which the Dockerfile copies"
    for private in (".venv", ".git", ".env", "triton_models", "perf/results", "convert/__pycache__"):
        assert dockerignore_excludes(private), f".dockerignore lets {private} into the build context"


# ---------------------------------------------------------------- docker-compose.yml

def _gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_default_up_converts_then_serves_and_perf_is_opt_in(compose):
    services = compose["services"]
    assert "profiles" not in services["convert"] and "profiles" not in services["triton"]
    assert services["perf"]["profiles"] == ["perf"]
    assert services["triton"]["depends_on"]["convert"]["condition"] == "service_completed_successfully"
    assert services["perf"]["depends_on"]["triton"]["condition"] == "service_healthy"
    command = service_command(services["convert"])
    assert "-m convert minilm-intent" in command and "--target gpu" in command
    assert "--out /models/repository" in command
    assert "--model-repository=/models/repository" in service_command(services["triton"])


def test_converter_and_server_share_the_repository_volume_and_the_same_gpu(compose):
    services = compose["services"]
    assert "model-repository:/models" in services["convert"]["volumes"]
    assert "model-repository:/models:ro" in services["triton"]["volumes"]
    assert "model-repository" in compose["volumes"]
    for name in ("convert", "triton"):
        devices = _gpu_devices(services[name])
        assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
    # A plan runs only on the GPU model that built it: both services must get the same device.
    assert _gpu_devices(services["convert"]) == _gpu_devices(services["triton"])


def test_server_ports_shared_memory_ulimits_and_healthcheck(compose):
    triton = compose["services"]["triton"]
    container_ports = {str(port).rsplit(":", 1)[-1] for port in triton["ports"]}
    assert container_ports == {"8000", "8001", "8002"}
    assert triton["shm_size"]
    assert triton["ulimits"]["memlock"] == -1 and triton["ulimits"]["stack"] == 67108864
    health = triton["healthcheck"]
    # The script the serving image copies in (tests/test_faults.py runs it against a real server).
    assert health["test"][:3] == ["CMD", "python3", "/opt/triton-encoders/healthcheck.py"]
    assert "minilm-intent" in health["test"]
    assert health["start_period"], "loading the encoder builds the TensorRT engines: the first check must wait"


def test_server_bounds_the_http_request_size_like_the_local_server(compose):
    from convert.python_models.tokenizer_model import MAX_REQUEST_TEXT_BYTES

    script = _compose_server_script(compose)
    assert f"--http-max-input-size={MAX_REQUEST_TEXT_BYTES}" in script.split()


def test_compose_and_image_servers_export_the_latency_summaries(compose, stages):
    """The dashboard's percentile panels read Triton's summaries, which are off unless asked for."""
    from deploy.monitoring.contract import SUMMARY_LATENCIES_ARG

    assert SUMMARY_LATENCIES_ARG in _compose_server_script(compose).split()
    image_command = yaml.safe_load(stages["triton"].args("CMD")[-1])[-1]
    assert SUMMARY_LATENCIES_ARG in image_command.split()


def test_model_repository_api_is_restricted_with_a_key_from_the_environment(compose, stages):
    triton = compose["services"]["triton"]
    command = service_command(triton)
    for flag in ("--http-restricted-api=", "--grpc-restricted-protocol="):
        settings = re.search(re.escape(flag) + r"(\S+)", command)
        assert settings, f"the server command lacks {flag}"
        apis, _, header_and_key = settings.group(1).partition(":")
        assert "model-repository" in apis.split(",")
        header, _, key = header_and_key.partition("=")
        assert header == ADMIN_HEADER and key == "$${TRITON_ADMIN_KEY}", "the key must come from the environment"
    assert triton["environment"]["TRITON_ADMIN_KEY"] == "${TRITON_ADMIN_KEY:-}"
    image_cmd = " ".join(stages["triton"].args("CMD"))
    assert "--http-restricted-api=model-repository" in image_cmd
    assert "--grpc-restricted-protocol=model-repository" in image_cmd


def test_perf_runs_the_gpu_sweep_against_the_server(compose):
    perf = compose["services"]["perf"]
    command = service_command(perf)
    assert "-m perf run" in command and "--preset gpu-t4" in command
    assert "localhost:8001" in command and "localhost:8000" in command   # in the server's network namespace
    assert (ROOT / "perf" / "sweeps" / "gpu-t4.yaml").is_file()
    assert "deploy" not in perf, "perf_analyzer needs no GPU; the server has it"


# ---------------------------------------------------------------- the server commands, run for real

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _local_tritonserver() -> tuple[Path, dict[str, str]]:
    site = next(Path(p) for p in sys.path if p.endswith("site-packages") and (Path(p) / "pytriton").is_dir())
    tree = site / "pytriton" / "tritonserver"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(str(p) for p in (site / "nvidia_pytriton.libs", tree / "lib",
                                                                tree / "external_libs") if p.is_dir())
    return tree, env


class StartedServer:
    """A shell command that execs `tritonserver`, run with a wrapper that adds local ports."""

    def __init__(self, script: str, repository: Path, tmp: Path, admin_key: str | None):
        tree, self.env = _local_tritonserver()
        self.http, self.grpc = _free_port(), _free_port()
        wrapper = tmp / "bin" / "tritonserver"
        wrapper.parent.mkdir(exist_ok=True)
        # The compose command's flags come last, so they are the ones under test. The local
        # 2.51 binary predates --http-max-input-size (the image's server has it): dropped here.
        wrapper.write_text('#!/bin/sh\nfor arg do shift; case "$arg" in --http-max-input-size=*) ;; '
                           '*) set -- "$@" "$arg";; esac; done\n'
                           f'exec {tree}/bin/tritonserver --backend-directory={tree}/backends '
                           f'--http-address=127.0.0.1 --grpc-address=127.0.0.1 --http-port={self.http} '
                           f'--grpc-port={self.grpc} --allow-metrics=false "$@"\n')
        wrapper.chmod(0o755)
        self.env["PATH"] = f"{wrapper.parent}{os.pathsep}{self.env['PATH']}"
        self.env.pop("TRITON_ADMIN_KEY", None)
        if admin_key is not None:
            self.env["TRITON_ADMIN_KEY"] = admin_key
        script = script.replace("/models/repository", str(repository))
        self.log = tmp / "server.log"
        self.process = subprocess.Popen(["/bin/sh", "-c", script], env=self.env, stdout=self.log.open("w"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}):\n{self.log.read_text()}")
            if self.http_status("/v2/health/ready", "GET") == 200:
                return
            time.sleep(0.3)
        raise AssertionError(f"the server was not ready in {timeout_s} s:\n{self.log.read_text()}")

    def http_status(self, path: str, method: str = "POST", headers: dict | None = None) -> int | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    def grpc_index_allowed(self, headers: dict) -> bool:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.grpc}")
        try:
            client.get_model_repository_index(headers=headers)
            return True
        except InferenceServerException:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _compose_server_script(compose: dict) -> str:
    command = compose["services"]["triton"]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    assert not re.search(r"(?<!\$)\$\{", command[2].replace("$${", "")), "compose would interpolate the script"
    return command[2].replace("$$", "$")     # what compose hands the container's shell


@pytest.mark.slow
def test_compose_server_command_closes_the_repository_api_without_a_key(compose, tmp_path):
    (tmp_path / "repository").mkdir()
    server = StartedServer(_compose_server_script(compose), tmp_path / "repository", tmp_path, admin_key=None)
    try:
        server.wait_ready()
        assert server.http_status("/v2/repository/index") == 403
        assert server.http_status("/v2/repository/index", headers={ADMIN_HEADER: ""}) == 403
        assert server.http_status("/v2/logging", "GET") == 403
        assert server.http_status("/v2/health/ready", "GET") == 200   # the healthcheck stays open
        assert not server.grpc_index_allowed({})
    finally:
        server.stop()
    assert "TRITON_ADMIN_KEY is not set" in server.log.read_text()


@pytest.mark.slow
def test_compose_server_command_opens_the_repository_api_to_the_key(compose, tmp_path):
    (tmp_path / "repository").mkdir()
    server = StartedServer(_compose_server_script(compose), tmp_path / "repository", tmp_path, admin_key="k-123")
    try:
        server.wait_ready()
        assert server.http_status("/v2/repository/index", headers={ADMIN_HEADER: "k-123"}) == 200
        assert server.http_status("/v2/repository/index", headers={ADMIN_HEADER: "wrong"}) == 403
        # Over gRPC Triton expects the header with the prefix "triton-grpc-protocol-".
        assert server.grpc_index_allowed({f"triton-grpc-protocol-{ADMIN_HEADER}": "k-123"})
        assert not server.grpc_index_allowed({ADMIN_HEADER: "k-123"})
    finally:
        server.stop()


def test_image_server_command_refuses_to_start_without_a_key(stages, tmp_path):
    cmd = stages["triton"].args("CMD")[-1]
    argv = yaml.safe_load(cmd)          # the exec form is a JSON (so YAML) list
    assert argv[:2] == ["/bin/sh", "-c"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_ADMIN_KEY"}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "set TRITON_ADMIN_KEY" in result.stderr


# ---------------------------------------------------------------- the monitoring profile

def _bind_mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts ("./x:/y[:ro]")."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def _mounted_at(service: dict, host_path: Path) -> str:
    found = [target for target, source in _bind_mounts(service).items() if source == host_path.resolve()]
    assert found, f"{host_path.relative_to(ROOT)} is not mounted into the service"
    return found[0]


def test_monitoring_is_an_opt_in_profile_with_grafana_of_the_dashboards_release(compose):
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], f"{name} must not start with a plain `up`"
        assert all(source.exists() for source in _bind_mounts(services[name]).values())
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", services["prometheus"]["image"])
    # The dashboard is built with grafana-foundation-sdk for one Grafana release: run that release.
    sdk_grafana = requirement_pin("grafana-foundation-sdk").split("!")[-1]
    assert services["grafana"]["image"] == f"grafana/grafana:{sdk_grafana}"


def test_monitoring_services_use_the_charts_own_rules_and_dashboard(compose):
    from deploy.monitoring.contract import DASHBOARD, RECORDING_RULES

    prometheus, grafana = compose["services"]["prometheus"], compose["services"]["grafana"]
    config_path = _bind_mounts(prometheus)["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == [_mounted_at(prometheus, RECORDING_RULES)]

    grafana_mounts = _bind_mounts(grafana)
    [provider_file], [datasource_file] = ([source for target, source in grafana_mounts.items()
                                           if target.startswith(f"/etc/grafana/provisioning/{kind}/")]
                                          for kind in ("dashboards", "datasources"))
    provider_dir = yaml.safe_load(provider_file.read_text())["providers"][0]["options"]["path"]
    assert Path(_mounted_at(grafana, DASHBOARD)).parent == Path(provider_dir)
    datasource = yaml.safe_load(datasource_file.read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


def test_compose_prometheus_scrapes_the_server_with_pod_labels_and_valid_rules(compose, tmp_path):
    from deploy.monitoring.contract import RECORDING_RULES
    from deploy.monitoring.prometheus import find_binary

    mounts = _bind_mounts(compose["services"]["prometheus"])
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    metrics_port = next(str(p).rsplit(":", 1)[-1] for p in compose["services"]["triton"]["ports"] if "8002" in str(p))
    [static] = config["scrape_configs"][0]["static_configs"]
    assert static["targets"] == [f"triton:{metrics_port}"]
    assert {"namespace", "pod"} <= set(static["labels"]), "the rules and the dashboard group by namespace and pod"
    promtool = find_binary("promtool")
    if promtool is None:
        pytest.skip("no promtool: install the Debian package `prometheus`")
    # The config as the container reads it, with the rule file at its host path: checks both.
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config | {"rule_files": [str(RECORDING_RULES)]}))
    result = subprocess.run([str(promtool), "check", "config", str(local)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
