"""What each image holds and runs, checked without Docker: the layout its COPY lines make,
the modules its commands import, the folders its models write, the runs its sweep can make.

Each check reads the Dockerfile and docker-compose.yml as they are (nothing is listed here
by hand), lays out in an empty folder exactly the project files a stage copies, and runs
there what the stage's commands would run. A stage that misses a module its command
imports fails here, not on a GPU host's first `docker compose up`.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_docker_static import (
    COMPOSE,
    DOCKERFILE,
    ROOT,
    Stage,
    dockerfile_stages,
    dockerignore_excludes,
    service_command,
)

# The image's interpreter is Python 3.12 with the stage's pip packages; the project's
# environment has every package the stages install, so it stands in for them here.
PYTHON = sys.executable
MODULE_COMMAND = re.compile(r"\bpython3?(?:\.\d+)?\s+(?:-[A-Za-z]+\s+)*-m\s+([\w.]+)")
SCRIPT_COMMAND = re.compile(r"\bpython3?(?:\.\d+)?\s+(?:-[A-Za-z]+\s+)*(/\S+\.py)\b")


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return dockerfile_stages(DOCKERFILE)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# ---------------------------------------------------------------- laying out an image

def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, base first."""
    chain = [stages[name]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return chain


def _copy_tree(source: Path, destination: Path) -> None:
    """Docker's COPY of a folder: its contents, less what .dockerignore keeps out of the context."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not dockerignore_excludes(relative):
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _copy(sources: list[str], destination: str, root: Path) -> None:
    target = root / destination.lstrip("/")
    for source in sources:
        path = ROOT / source
        if path.is_dir():
            _copy_tree(path, target)
        elif destination.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def lay_out(stages: dict[str, Stage], name: str, root: Path) -> str:
    """Copy into `root` (the image's /) the project files the stage's COPY lines bring;
    return the stage's final WORKDIR (an image path)."""
    workdir = "/"
    for stage in stage_chain(stages, name):
        for keyword, arguments in stage.instructions:
            if keyword == "WORKDIR":
                workdir = posixpath.join(workdir, arguments)
            elif keyword == "COPY" and "--from=" not in arguments:
                tokens = [t for t in shlex.split(arguments) if not t.startswith("--")]
                _copy(tokens[:-1], posixpath.join(workdir, tokens[-1]), root)
    (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return workdir


# ---------------------------------------------------------------- what the commands run

def _as_text(command) -> str:
    if isinstance(command, list):
        return " ".join(command)
    if command.lstrip().startswith("["):
        return " ".join(json.loads(command))   # the exec form of CMD
    return command


def stage_commands(stages: dict[str, Stage], compose: dict, name: str) -> list[str]:
    """Everything that runs Python in the stage: its RUN lines (at build time), its CMD and
    HEALTHCHECK, and the command and healthcheck of every compose service built from it."""
    stage = stages[name]
    commands = stage.args("RUN") + [_as_text(c) for c in stage.args("CMD")] + stage.args("HEALTHCHECK")
    for service in compose["services"].values():
        if service.get("build", {}).get("target") == name:
            if "command" in service:
                commands.append(service_command(service))
            if "healthcheck" in service:
                commands.append(_as_text(service["healthcheck"]["test"]))
    return commands


def _is_triton_model(path: Path) -> bool:
    """A Python-backend model file: Triton runs it inside the server, no command imports it as is."""
    return "class TritonPythonModel" in path.read_text()


def modules_to_import(commands: list[str], workdir: Path) -> tuple[list[str], list[str]]:
    """(modules, scripts): for each `python -m pkg...`, every module of that package the layout
    holds (a subcommand may import any of them); for each `python /path/script.py`, the script."""
    modules, scripts = set(), set()
    for command in commands:
        for entry in MODULE_COMMAND.findall(command):
            package = workdir / entry.split(".")[0]
            modules.add(entry)
            for path in package.rglob("*.py") if package.is_dir() else []:
                if not _is_triton_model(path):
                    modules.add(".".join(path.relative_to(workdir).with_suffix("").parts).removesuffix(".__init__"))
        scripts.update(SCRIPT_COMMAND.findall(command))
    return sorted(modules), sorted(scripts)


# Only a missing module counts: some modules refuse to load without their settings
# (perf.fastapi_app wants the model it serves in its environment), which is by design.
IMPORT_ALL = """
import importlib, json, runpy, sys
failures = {}
modules, scripts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in modules:
    try:
        importlib.import_module(name)
    except ImportError as error:
        failures[name] = [f"{type(error).__name__}: {error}", (error.name or "").split(".")[0]]
    except Exception:
        pass
for path in scripts:
    try:
        runpy.run_path(path, run_name="imported_by_the_test")   # its imports, not its main()
    except ImportError as error:
        failures[path] = [f"{type(error).__name__}: {error}", (error.name or "").split(".")[0]]
print(json.dumps(failures))
"""


PROJECT_PACKAGES = {path.parent.name for path in ROOT.glob("*/__init__.py")}


def import_in_layout(root: Path, workdir: str, modules: list[str], scripts: list[str]) -> dict[str, str]:
    """Import the modules as `python3 -m` would from the stage's WORKDIR: only the laid-out
    project files and the installed packages are on the path (-E: no PYTHONPATH, -s: no user site).
    Returns {module: error} for the project modules the layout lacks. A missing installed
    package is a skip: this Python stands in for the image's and may lack one (the Python 3.12
    test environment has no torch)."""
    cwd = root / workdir.lstrip("/")
    local_scripts = [str(root / script.lstrip("/")) for script in scripts]
    result = subprocess.run([PYTHON, "-E", "-s", "-c", IMPORT_ALL, json.dumps(modules), json.dumps(local_scripts)],
                            cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    missing_packages = {missing for _, missing in failures.values() if missing not in PROJECT_PACKAGES}
    if missing_packages:
        pytest.skip(f"{PYTHON} lacks {sorted(missing_packages)}, which the image installs")
    return {name: message for name, (message, _) in failures.items()}


def _stages_that_run_python(stages, compose) -> list[str]:
    return [name for name in stages
            if any(MODULE_COMMAND.search(c) or SCRIPT_COMMAND.search(c) for c in stage_commands(stages, compose, name))]


def test_every_stage_that_runs_python_is_checked(stages, compose):
    # The perf, convert and triton images run Python (a sweep, the converter, the healthcheck):
    # if the parsing above stopped seeing one of them, the import test would pass on nothing.
    assert {"perf", "convert", "triton"} <= set(_stages_that_run_python(stages, compose))


@pytest.mark.parametrize("stage_name", ["perf", "convert", "triton"])
def test_each_images_commands_import_from_what_the_image_holds(stages, compose, stage_name, tmp_path):
    workdir = lay_out(stages, stage_name, tmp_path)
    modules, scripts = modules_to_import(stage_commands(stages, compose, stage_name), tmp_path / workdir.lstrip("/"))
    assert modules or scripts, f"{stage_name}: no Python command found"
    failures = import_in_layout(tmp_path, workdir, modules, scripts)
    assert not failures, (f"the {stage_name} image lacks what its commands import (add it to the stage's COPY lines "
                          f"and to .dockerignore's allowed paths): {failures}")


def test_the_import_check_catches_a_missing_project_module(tmp_path):
    # The check above means something only if a module the layout lacks fails it.
    (tmp_path / "app" / "tool").mkdir(parents=True)
    (tmp_path / "app" / "tool" / "__init__.py").write_text("")
    (tmp_path / "app" / "tool" / "run.py").write_text("from convert.triton_config import read_config\n")
    failures = import_in_layout(tmp_path, "/app", *modules_to_import(["python3 -m tool run"], tmp_path / "app"))
    assert failures == {"tool.run": "ModuleNotFoundError: No module named 'convert'"}


# ---------------------------------------------------------------- folders the served models write

def gpu_encoder_paths() -> dict[str, str]:
    """Every path the GPU encoder's config.pbtxt names, from convert's own config writer."""
    from convert import triton_config as tc

    tokens = [tc.Tensor(name, tc.INT64, (-1,)) for name in ("input_ids", "attention_mask")]
    config = tc.gpu_encoder_config("minilm-intent-encoder", tokens, [tc.Tensor("probabilities", tc.FP32, (157,))],
                                   tc.Batching(32, 0), max_length=128, opt_length=64, use_tensorrt=True,
                                   warmup_files={t.name: t.name for t in tokens}, warmup_length=12)
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    return {key: value for accelerator in accelerators for key, value in accelerator.parameters.items()
            if key.endswith("_path")}


def _mkdir_targets(run: str) -> list[str]:
    return [word for match in re.findall(r"\bmkdir\s+([^&;|]+)", run) for word in match.split()
            if not word.startswith("-")]


def _chowned_to_the_user(run: str, user: str) -> list[str]:
    targets = []
    for match in re.findall(r"\bchown\s+([^&;|]+)", run):
        words = [word for word in match.split() if not word.startswith("-")]
        if words and words[0].split(":")[0] == user:
            targets += words[1:]
    return targets


def serving_layout(stages: dict[str, Stage], compose: dict, root: Path) -> tuple[set[str], list[str]]:
    """Build in `root` the folders the server's image has for its user to write: /tmp (every
    image has it, writable by all) and what the stage's RUN lines make and give to that user.
    Returns (folders the user may write, read-only mount points of the compose service)."""
    user = stages["triton"].args("USER")[-1].split(":")[0]
    (root / "tmp").mkdir()
    writable = {"/tmp"}
    for stage in stage_chain(stages, "triton"):
        for run in stage.args("RUN"):
            for folder in _mkdir_targets(run):
                (root / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
            writable.update(_chowned_to_the_user(run, user))
    read_only = [volume.split(":")[1] for volume in compose["services"]["triton"].get("volumes", [])
                 if volume.endswith(":ro")]
    return writable, read_only


def test_every_folder_the_gpu_config_names_can_be_made_by_the_serving_user(stages, compose, tmp_path):
    # ONNX Runtime's TensorRT provider makes its engine and timing cache folders with one
    # std::filesystem::create_directory: the parent must exist and the server's user write it.
    paths = gpu_encoder_paths()
    assert {"trt_engine_cache_path", "trt_timing_cache_path"} <= set(paths)
    writable, read_only = serving_layout(stages, compose, tmp_path)
    made_by_the_server = set()
    for key, path in sorted(paths.items()):
        assert posixpath.isabs(path), f"{key}: {path} depends on the server's working folder"
        assert not any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in read_only), \
            f"{key}: {path} is under a read-only mount {read_only}"
        target = tmp_path / path.lstrip("/")
        if not target.is_dir():
            try:
                target.mkdir()   # one level, as create_directory does
            except FileNotFoundError:
                pytest.fail(f"{key}: {path} needs {posixpath.dirname(path)}, which the triton image lacks: "
                            "create it in the Dockerfile or name a folder directly under one that exists")
            parent = posixpath.dirname(path)
            assert parent in writable, f"{key}: the serving user cannot write {parent}"
            made_by_the_server.add(path)
        else:
            assert path in writable | made_by_the_server, \
                f"{key}: {path} exists in the image but is not the serving user's"


# ---------------------------------------------------------------- the GPU sweep, as compose runs it

def _option(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def _gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def compose_skip_reasons(compose: dict) -> dict[str, str]:
    """Run key -> why `docker compose --profile perf run perf` would skip it: the runner's own
    rules (perf.runner.skip_reason) on the URLs compose passes, and what the containers share."""
    from perf.runner import skip_reason
    from perf.sweeps import TRITON_RUNTIMES, load_sweep
    from perf.triton import TritonServer

    services = compose["services"]
    perf, triton = services["perf"], services["triton"]
    command = perf["command"]
    server = TritonServer(_option(command, "--grpc-url"), _option(command, "--http-url"), pid=None,
                          started_here=False)
    # /dev/shm is private to a container unless it joins the server's IPC namespace, which
    # Docker allows only when the server's is shareable.
    shares_shm = perf.get("ipc") == "service:triton" and triton.get("ipc") == "shareable"
    reasons = {}
    for spec in load_sweep(_option(command, "--preset")).runs:
        if spec.runtime not in TRITON_RUNTIMES:
            continue   # in-process baselines run in the perf container itself
        reason = skip_reason(spec, server, echo=False, has_fused=False)   # GPU builds have no fused model
        if not reason and spec.shared_memory != "none" and not shares_shm:
            reason = "system shared memory needs the perf container in the server's IPC namespace"
        if not reason and spec.shared_memory == "cuda" and not _gpu_devices(perf):
            reason = "CUDA shared memory needs a GPU in the perf container"
        if reason:
            reasons[spec.key] = reason
    return reasons


def test_the_gpu_sweep_holds_no_run_that_compose_would_skip(compose):
    assert not compose_skip_reasons(compose)


def test_shared_memory_runs_reach_the_server_on_its_own_host(compose):
    from perf.sweeps import load_sweep

    perf = compose["services"]["perf"]
    assert any(spec.shared_memory != "none" for spec in load_sweep(_option(perf["command"], "--preset")).runs), \
        "the sweep measures shared memory (drop this test if that is ever dropped on purpose)"
    assert perf.get("network_mode") == "service:triton", "localhost in the perf container must be the server"
    assert _option(perf["command"], "--grpc-url").startswith("localhost:")


def test_the_skip_check_sees_a_run_compose_would_skip(compose):
    # The same compose file with the perf container on its own network, as it was: every
    # shared-memory run is skipped there, and the check above must say so.
    perf = compose["services"]["perf"]
    old = {**compose, "services": {**compose["services"], "perf": {
        **{k: v for k, v in perf.items() if k not in ("network_mode", "ipc")},
        "command": [part.replace("localhost:", "triton:") for part in perf["command"]]}}}
    reasons = compose_skip_reasons(old)
    assert reasons and all("shared memory" in reason for reason in reasons.values())


# ---------------------------------------------------------------- the served answers, verified

def test_compose_verifies_the_served_answers_once_the_server_is_healthy(compose, stages):
    services = compose["services"]
    verify = services["verify"]
    assert "profiles" not in verify, "a plain `docker compose up` must verify what it serves"
    assert verify["depends_on"]["triton"]["condition"] == "service_healthy"
    assert verify.get("restart") == "no", "a one-shot check, not a service to keep up"
    command = verify["command"]
    assert command[:3] == ["python3", "-m", "convert.verify"]
    assert _option(command, "--url").endswith("triton:8001")
    assert _option(command, "--repository") == "/models/repository"
    assert _option(command, "--model") in services["triton"]["healthcheck"]["test"], "the model the server serves"
    # The reference needs torch and the checkpoint: the converter's image has both.
    assert verify["build"]["target"] == "convert" and verify["image"] == services["convert"]["image"]
    assert "model-repository:/models:ro" in verify["volumes"]


# ---------------------------------------------------------------- Model Analyzer on the GPU host

MODEL_ANALYZER = ROOT / "perf" / "model_analyzer.yaml"
COPY_OUT = re.compile(r"docker compose cp triton:/models/repository \./(\S+)")


def test_model_analyzer_profiles_the_gpu_repository_in_the_projects_serving_image(compose):
    text = MODEL_ANALYZER.read_text()
    settings = yaml.safe_load(text)
    # The GPU repository lives in compose's volume; the config's header says how to copy it out,
    # and the config profiles that copy (not triton_models/, the CPU build's Python-backend encoder).
    copied = COPY_OUT.search(text)
    assert copied, "perf/model_analyzer.yaml must say how to copy the GPU repository out of the volume"
    assert settings["model_repository"] == copied.group(1) != "triton_models"
    # The stock NGC server lacks the tokenizer model's packages (tokenizers, numpy<2): the project's image has them.
    assert settings["triton_launch_mode"] == "docker"
    assert settings["triton_docker_image"] == compose["services"]["triton"]["image"]
    for folder in (settings["model_repository"], "perf/model_analyzer"):
        assert dockerignore_excludes(folder), f"{folder} must stay out of the build context"


def test_model_analyzer_searches_models_and_inputs_the_gpu_build_has(tmp_path):
    from convert.source import minilm_checkpoint
    from perf.inputs import load_tokenizer, write_input_files

    settings = yaml.safe_load(MODEL_ANALYZER.read_text())
    gpu_models = {"minilm-intent", "minilm-intent-encoder", "minilm-intent-encoder-cuda", "minilm-intent-encoder-trt"}
    assert set(settings["profile_models"]) <= gpu_models
    written = write_input_files(load_tokenizer(minilm_checkpoint() / "tokenizer.json"), 128, 7, tmp_path)
    for model, search in settings["profile_models"].items():
        input_data = Path(search["perf_analyzer_flags"]["input-data"])
        assert input_data.parent == Path("perf/inputs") and input_data.name in {p.name for p in written.values()}, model
        kinds = {group["kind"] for groups in search["model_config_parameters"]["instance_group"] for group in groups}
        assert kinds == {"KIND_GPU"}, f"{model}: the GPU encoders run on the GPU"


# ---------------------------------------------------------------- the GPU tests' command

def _compose_run_command(text: str) -> str:
    """The `docker compose run ... pytest ...` command in a text, continuation lines joined."""
    joined = re.sub(r"\\\s*\n\s*", " ", text)
    match = re.search(r"docker compose run [^\n]*pytest[^\n]*", joined)
    assert match, "no `docker compose run ... pytest` command found"
    return " ".join(match.group(0).split())


def test_gpu_tests_command_mounts_the_tests_the_image_lacks(stages, tmp_path):
    import tests.test_gpu as gpu_tests

    documented = _compose_run_command((ROOT / "docs" / "GPU.md").read_text())
    assert _compose_run_command(gpu_tests.__doc__) == documented, "tests/test_gpu.py and docs/GPU.md disagree"
    workdir = lay_out(stages, "convert", tmp_path)
    image_workdir = tmp_path / workdir.lstrip("/")
    assert not (image_workdir / "tests").exists(), "the convert image holds no tests/: the command must mount them"
    service = shlex.split(documented)[documented.split().index("pytest") - 3]
    assert service == "convert", f"the GPU tests run in the convert image, not {service}"
    assert f"/tests:{workdir}/tests:ro" in documented and f"/pyproject.toml:{workdir}/pyproject.toml:ro" in documented


# ---------------------------------------------------------------- the images' Python, tested

def test_the_images_python_is_supported_and_tested_in_ci():
    from packaging.specifiers import SpecifierSet

    images_python = re.search(r"with Python (3\.\d+)", DOCKERFILE.read_text()).group(1)
    pyproject = (ROOT / "pyproject.toml").read_text()
    supported = SpecifierSet(re.search(r'^requires-python = "([^"]+)"', pyproject, re.MULTILINE).group(1))
    assert supported.contains(images_python), f"the images run Python {images_python}; pyproject says {supported}"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^PYTHON312 \?= python{re.escape(images_python)}$", makefile, re.MULTILINE)
    recipe = makefile.split("\ntest-py312:", 1)[1].split("\n\n", 1)[0]
    assert "$(VENV312)/bin/python -m pytest" in recipe
    for test_file in re.findall(r"tests/test_\w+\.py", recipe):
        assert (ROOT / test_file).is_file(), f"make test-py312 names {test_file}, which does not exist"
    assert re.search(r"^make test-py312$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE), "CI must run it"
