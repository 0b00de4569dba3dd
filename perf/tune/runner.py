"""`python -m perf tune`: Model Analyzer's search on the local CPU server, one run per length and search.

For each token length, up to two Model Analyzer runs, each in its own folder under
<out>/ma/<tokens>-<search>/ (config.yaml, model-analyzer.log, tritonserver.log, its checkpoint
and exported reports):
- "brute": the manual search over the preset's lists for the fused model and/or the encoder,
  one model at a time;
- "ensemble": the quick search of the ensemble's composing models (Model Analyzer profiles an
  ensemble only that way).
Then every checkpoint is read back into one table and report (perf/tune/report.py).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .._modelrepo import ModelNames
from ..errors import PerfError
from ..inputs import load_tokenizer, prime_at_least, write_input_files
from ..stages import stage
from .environment import AnalyzerTools, analyzer_tools
from .report import write_tune_report
from .results import read_run
from .space import PRESETS, ROLES, SearchSpace, brute_model, dump_yaml, ensemble_search, objectives

INPUT_TEXTS = prime_at_least(64)   # a prime number of steps: perf_analyzer's threads cover them all
# Seconds a run may take per profiled config before it is stopped: a server start, the
# measurements (perf_analyzer retries up to max_trials windows) and the model reload.
TIMEOUT_PER_CONFIG_S = 240


@dataclass(frozen=True)
class TuneOptions:
    model_repository: Path
    model: str
    out_dir: Path
    preset: str = "quick"
    roles: tuple[str, ...] | None = None          # None: the preset's default roles
    budget_p99_ms: float = 50.0
    token_lengths: tuple[int, ...] | None = None  # None: the preset's lengths
    resume: bool = False   # keep the checkpoints of an earlier run into the same folder

    @property
    def space(self) -> SearchSpace:
        if self.preset not in PRESETS:
            raise PerfError(f"unknown tune preset {self.preset!r}: choose one of {', '.join(PRESETS)}")
        return PRESETS[self.preset]


@dataclass(frozen=True)
class AnalyzerRun:
    """One Model Analyzer invocation: which models, at which length, in which folder."""
    tokens: int
    search: str                 # "brute" or "ensemble"
    roles: tuple[str, ...]
    folder: Path


def tune(options: TuneOptions) -> Path:
    """Run the searches, write <out>/tune.md, tune.csv and tune.json; return the report's path."""
    names = ModelNames.of(options.model)
    roles = _check_roles(options, names)
    space = options.space
    lengths = options.token_lengths or space.token_lengths
    inputs = _write_inputs(names, options.model_repository, lengths, options.out_dir / "inputs")
    tools = analyzer_tools()
    runs = _plan(roles, lengths, options.out_dir / "ma")
    loads = len(space.batch_sizes) * len(space.concurrency)
    print(f"[tune] preset {options.preset}: {len(runs)} Model Analyzer run(s); each brute-searched model "
          f"tries {space.brute_size(cpu=True)} configs + the built one, at {loads} load(s) each", flush=True)
    started = time.monotonic()
    for number, run in enumerate(runs, 1):
        print(f"[tune] run {number}/{len(runs)}: {run.search} search of {', '.join(run.roles)} "
              f"at {run.tokens} tokens -> {run.folder}", flush=True)
        if not options.resume:   # Model Analyzer would skip every config its checkpoint already holds
            shutil.rmtree(run.folder / "checkpoints", ignore_errors=True)
        config = analyzer_config(options, space, names, run, inputs[run.tokens], tools)
        run_model_analyzer(tools, config, run.folder, timeout_s=_timeout(space, run))
        # Model Analyzer's copy of the models (one per run: the variants link to it); the report
        # and `tune apply` need only the checkpoint, and the copy is rebuilt by the next run.
        shutil.rmtree(run.folder / "output_repository", ignore_errors=True)
    rows = [row for run in runs for row in read_run(run.folder / "checkpoints", run.tokens, names)]
    return write_tune_report(rows, options.out_dir, budget_p99_ms=options.budget_p99_ms, preset=options.preset,
                             wall_s=time.monotonic() - started, repository=options.model_repository)


def _check_roles(options: TuneOptions, names: ModelNames) -> tuple[str, ...]:
    roles = options.roles or options.space.default_roles
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise PerfError(f"--models {','.join(unknown)}: choose among {', '.join(ROLES)}")
    folders = {"fused": names.fused, "encoder": names.encoder, "ensemble": names.ensemble}
    for role in roles:
        if not (options.model_repository / folders[role] / "config.pbtxt").is_file():
            raise PerfError(f"{options.model_repository / folders[role]} has no config.pbtxt: build the CPU "
                            f"repository with `python -m convert {options.model}` or pick other --models")
    return tuple(roles)


def _write_inputs(names: ModelNames, repository: Path, lengths: tuple[int, ...], folder: Path) -> dict:
    """Exact-length inputs (python -m perf inputs), per length: {"ensemble": path, "encoder": path}."""
    tokenizer = load_tokenizer(names.tokenizer_json(repository))
    return {tokens: write_input_files(tokenizer, tokens, INPUT_TEXTS, folder) for tokens in lengths}


def _plan(roles: tuple[str, ...], lengths: tuple[int, ...], folder: Path) -> list[AnalyzerRun]:
    brute = tuple(role for role in roles if role != "ensemble")
    runs = []
    for tokens in lengths:
        if brute:
            runs.append(AnalyzerRun(tokens, "brute", brute, folder / f"{tokens}-brute"))
        if "ensemble" in roles:
            runs.append(AnalyzerRun(tokens, "ensemble", ("ensemble",), folder / f"{tokens}-ensemble"))
    return runs


def analyzer_config(options: TuneOptions, space: SearchSpace, names: ModelNames, run: AnalyzerRun,
                    inputs: dict[str, Path], tools: AnalyzerTools) -> dict:
    """Model Analyzer's config for one run on this machine's local server (a dict, dumped to YAML)."""
    config = {**_local_server(tools, run.folder), **objectives(options.budget_p99_ms),
              "model_repository": str(options.model_repository.resolve()), "client_protocol": "grpc"}
    if run.search == "ensemble":
        return {**config, **ensemble_search(space, names, str(inputs["ensemble"].resolve()))}
    models = {"fused": (names.fused, inputs["ensemble"]), "encoder": (names.encoder, inputs["encoder"])}
    profile = {models[role][0]: brute_model(space, str(models[role][1].resolve()), cpu=True) for role in run.roles}
    return {**config, "run_config_search_disable": True, "profile_models": profile}


def _local_server(tools: AnalyzerTools, folder: Path) -> dict:
    """The keys that start the local tritonserver on free ports of 127.0.0.1 and keep its files in `folder`."""
    free_port = stage("serve.ports").free_port
    http, grpc, metrics = (free_port("127.0.0.1") for _ in range(3))
    folder = folder.resolve()
    return {
        "triton_launch_mode": "local",
        "triton_server_path": str(tools.tritonserver),
        "perf_analyzer_path": str(tools.perf_analyzer),
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "triton_server_flags": {
            "backend-directory": str(tools.backend_directory), "cache-directory": str(tools.cache_directory),
            "http-address": "127.0.0.1", "grpc-address": "127.0.0.1", "metrics-address": "127.0.0.1",
            # Its own shared-memory prefix: other servers on this machine use /dev/shm too.
            "backend-config": f"python,shm-region-prefix-name=tune{grpc}_", "exit-timeout-secs": 3},
        "triton_output_path": str(folder / "tritonserver.log"),
        "output_model_repository_path": str(folder / "output_repository"),
        "override_output_model_repository": True,
        "export_path": str(folder / "export"),
        "checkpoint_directory": str(folder / "checkpoints"),
    }


def run_model_analyzer(tools: AnalyzerTools, config: dict, folder: Path, timeout_s: float) -> None:
    """`model-analyzer profile -f <folder>/config.yaml`, its output shown and kept in model-analyzer.log."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.yaml"
    config_path.write_text(dump_yaml(config))
    command = [str(tools.model_analyzer), "profile", "-f", str(config_path)]
    log_path = folder / "model-analyzer.log"
    with open(log_path, "w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, env=tools.environment, cwd=folder,
                                                      start_new_session=True) as process:
        timed_out = threading.Event()
        watchdog = threading.Timer(timeout_s, _stop, args=(process, timed_out))
        watchdog.start()
        try:
            for line in process.stdout:
                log.write(line)
                if _worth_showing(line):
                    print("  " + line.rstrip(), flush=True)
        finally:
            watchdog.cancel()
    if timed_out.is_set():
        raise PerfError(f"Model Analyzer ran over {timeout_s:.0f} s and was stopped; see {log_path}")
    if process.returncode != 0:
        raise PerfError(f"Model Analyzer failed (exit {process.returncode}): {_last_error(log_path)}; "
                        f"its log: {log_path}, the server's: {folder / 'tritonserver.log'}")


def _stop(process: subprocess.Popen, timed_out: threading.Event) -> None:
    """Stop a run that went over its time, even one hanging silently: SIGINT to its process group
    first (Model Analyzer then stops the server it started and saves its checkpoint), SIGKILL to the
    group if it has not ended a minute later (its own session: nothing else is in that group)."""
    timed_out.set()
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _worth_showing(line: str) -> bool:
    """Progress lines; not the GPU-metric warnings every CPU run prints."""
    return "has no data" not in line and "CPU metric(s) are not being collected" not in line


def _last_error(log_path: Path) -> str:
    lines = [line.strip() for line in log_path.read_text().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][-300:]


def _timeout(space: SearchSpace, run: AnalyzerRun) -> float:
    if run.search == "ensemble":   # quick search: a few dozen configs at most with these bounds
        return TIMEOUT_PER_CONFIG_S * 40
    return TIMEOUT_PER_CONFIG_S * (1 + space.brute_size(cpu=True)) * len(run.roles)

