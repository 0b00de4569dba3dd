"""The one search space of `python -m perf tune`, and the Model Analyzer configs built from it.

Both the CPU config (written by `python -m perf tune` for a local run) and the GPU config
committed as perf/model_analyzer.yaml come from `PRESETS` below, as Python dicts dumped to
YAML; tests/test_tune.py checks that the committed GPU file equals `gpu_config_text()`, and
`python -m perf tune gpu-config` rewrites it after a change here.

What is searched, and where each dimension applies:
- instance count, max batch size, dynamic batching's queue delay: every target (Model
  Analyzer's manual "brute" search, one model at a time);
- the encoder's ORT settings `intra_op_threads` and `spin`: config parameters of the CPU
  build's Python-backend encoder and fused model (convert/python_models/onnx_encoder_model.py
  reads them), so only in the CPU config; `row_by_row` is a correctness setting (INT8 batch
  invariance) and is never searched;
- the ensemble: Model Analyzer 1.58 profiles an ensemble only with its quick search, which
  tunes the composing models' instance count and max batch size together (not the queue delay
  nor config parameters), within the bounds of the same preset.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .._modelrepo import ModelNames

GPU_CONFIG = Path(__file__).resolve().parents[1] / "model_analyzer.yaml"
ROLES = ("fused", "encoder", "ensemble")   # what `--models` may name
TOKEN_LENGTHS = (16, 128)


@dataclass(frozen=True)
class SearchSpace:
    """One preset: the model-config values to try and the load to measure each with."""
    instance_counts: tuple[int, ...]
    max_batch_sizes: tuple[int, ...]
    queue_delays_us: tuple[int, ...]
    intra_op_threads: tuple[int, ...]      # 0: ONNX Runtime's default (all cores)
    spin: tuple[bool, ...]
    batch_sizes: tuple[int, ...]           # perf_analyzer -b
    concurrency: tuple[int, ...]
    measurement_interval_ms: int
    stability_percentage: int
    max_trials: int
    token_lengths: tuple[int, ...] = TOKEN_LENGTHS
    default_roles: tuple[str, ...] = ROLES

    def brute_size(self, cpu: bool) -> int:
        """How many model configs the manual search tries per model (the built config comes on top)."""
        size = len(self.instance_counts) * len(self.max_batch_sizes) * len(self.queue_delays_us)
        return size * (len(self.intra_op_threads) * len(self.spin) if cpu else 1)


# smoke and quick keep `spin` at the build's default (convert --no-spin, docs/throughput.md), so
# what they change is what they search; a test keeps the two equal.
PRESETS = {
    # About a minute: the built config and one other, 16 tokens, concurrency 1. Checks that the
    # tools run here (the test suite's live run); its figures answer nothing.
    "smoke": SearchSpace(instance_counts=(1,), max_batch_sizes=(32,), queue_delays_us=(0,), intra_op_threads=(1,),
                         spin=(False,), batch_sizes=(1,), concurrency=(1,), measurement_interval_ms=1000,
                         stability_percentage=50, max_trials=5, token_lengths=(16,), default_roles=("fused",)),
    # Minutes on 2 cores: the fused model (the CPU latency path) at both lengths.
    "quick": SearchSpace(instance_counts=(1, 2), max_batch_sizes=(32,), queue_delays_us=(0, 500),
                         intra_op_threads=(0,), spin=(False,), batch_sizes=(1,), concurrency=(1, 8),
                         measurement_interval_ms=2000, stability_percentage=50, max_trials=5,
                         default_roles=("fused",)),
    # Hours on 2 cores; the GPU config is this preset too.
    "full": SearchSpace(instance_counts=(1, 2), max_batch_sizes=(8, 32), queue_delays_us=(0, 100, 500, 2000),
                        intra_op_threads=(0, 1), spin=(False, True), batch_sizes=(1, 8, 32),
                        concurrency=(1, 2, 4, 8, 16, 32, 64), measurement_interval_ms=5000,
                        stability_percentage=25, max_trials=15),
}


def model_config_parameters(space: SearchSpace, cpu: bool) -> dict:
    """Model Analyzer's `model_config_parameters` for one brute-searched model (lists are searched)."""
    kind = "KIND_CPU" if cpu else "KIND_GPU"
    parameters: dict = {
        "max_batch_size": list(space.max_batch_sizes),
        "dynamic_batching": {"max_queue_delay_microseconds": list(space.queue_delays_us)},
        "instance_group": [[{"kind": kind, "count": count}] for count in space.instance_counts],
    }
    if cpu:
        parameters["parameters"] = {
            "intra_op_threads": {"string_value": [str(threads) for threads in space.intra_op_threads]},
            "spin": {"string_value": ["1" if spin else "0" for spin in space.spin]},
        }
    return parameters


def perf_analyzer_flags(space: SearchSpace, input_data: str) -> dict:
    """The flags every measurement runs with; settle on the shared 2-core machine (ENVIRONMENT.md)."""
    return {"input-data": input_data, "measurement-interval": space.measurement_interval_ms,
            "stability-percentage": space.stability_percentage, "max-trials": space.max_trials}


def brute_model(space: SearchSpace, input_data: str, cpu: bool) -> dict:
    """One `profile_models` entry for the manual search."""
    entry = {"parameters": {"batch_sizes": list(space.batch_sizes), "concurrency": list(space.concurrency)},
             "model_config_parameters": model_config_parameters(space, cpu),
             "perf_analyzer_flags": perf_analyzer_flags(space, input_data)}
    return {"cpu_only": True, **entry} if cpu else entry


def ensemble_search(space: SearchSpace, names: ModelNames, input_data: str) -> dict:
    """Top-level keys for Model Analyzer's quick search of the ensemble's composing models (CPU)."""
    return {
        "run_config_search_mode": "quick",
        "run_config_search_min_instance_count": min(space.instance_counts),
        "run_config_search_max_instance_count": max(space.instance_counts),
        "run_config_search_min_model_batch_size": min(space.max_batch_sizes),
        "run_config_search_max_model_batch_size": max(space.max_batch_sizes),
        # Quick search refuses lists of concurrencies or batch sizes: it sweeps concurrency itself.
        "run_config_search_min_concurrency": min(space.concurrency),
        "run_config_search_max_concurrency": max(space.concurrency),
        "cpu_only_composing_models": [names.tokenizer, names.encoder],
        "profile_models": {names.ensemble: {"cpu_only": True,
                                            "perf_analyzer_flags": perf_analyzer_flags(space, input_data)}},
    }


def objectives(budget_p99_ms: float) -> dict:
    """Rank by throughput within a p99 budget (Model Analyzer's own summary uses these)."""
    return {"objectives": ["perf_throughput"], "constraints": {"perf_latency_p99": {"max": budget_p99_ms}}}


# --- the GPU config (perf/model_analyzer.yaml) --------------------------------------------

GPU_BUDGET_P99_MS = 50   # 128 tokens at batch 32 on a T4 needs far more than batch 1's ~1.5 ms
GPU_MODEL = "minilm-intent"

GPU_HEADER = """\
# Triton Model Analyzer config for the GPU host (T4), searching the encoder's serving
# settings on the real GPU repository with the same exact-length inputs as `python -m perf`.
# GENERATED by `python -m perf tune gpu-config` from perf/tune/space.py (the "full" preset,
# the same search space as the CPU runs of `python -m perf tune`): edit that file, not this one.
#
# 1. The GPU repository that `docker compose up` built lives in the compose volume; copy it out
#    (the triton container need not run, it only has to exist):
#      docker compose cp triton:/models/repository ./triton_models_gpu
# 2. Exact-length inputs from its tokenizer:
#      .venv/bin/python -m perf inputs --tokenizer-json triton_models_gpu/minilm-intent-tokenizer/1/tokenizer.json \\
#          --seq-len 16 128 --out perf/inputs
# 3. Model Analyzer ships in the NGC SDK image; it launches the project's serving image (built by
#    `docker compose build triton`: the NGC server plus the tokenizer model's tokenizers and numpy<2,
#    which the stock tritonserver image lacks) beside itself through the Docker socket:
#      docker run -it --gpus 1 --shm-size 1G --net=host \\
#          -v /var/run/docker.sock:/var/run/docker.sock -v $PWD:$PWD -w $PWD \\
#          nvcr.io/nvidia/tritonserver:26.03-py3-sdk \\
#          model-analyzer profile -f perf/model_analyzer.yaml
# Paths below are relative to the repository root (the container's working directory). The tags
# match TRITON_RELEASE in the Dockerfile and the image of docker-compose.yml's triton service
# (tests/test_docker_images.py keeps them equal). Not run yet: no GPU host has run this file.
#
# The whole ensemble (tokenizer + encoder) can be profiled with Model Analyzer's quick
# search instead, which tunes the composing models together:
#   model-analyzer profile -f perf/model_analyzer.yaml --profile-models minilm-intent \\
#       --run-config-search-mode quick
# (give it perf_analyzer_flags.input-data: perf/inputs/ensemble-128.json for that model).
# On the GPU the encoder is ONNX Runtime's own backend: the CPU build's thread parameters
# (intra_op_threads, spin) do not apply and are left out.

"""


def gpu_config() -> dict:
    """perf/model_analyzer.yaml as a dict: the full preset on the GPU encoder, in Docker."""
    space = PRESETS["full"]
    names = ModelNames.of(GPU_MODEL)
    return {
        "model_repository": "triton_models_gpu",
        "output_model_repository_path": "perf/model_analyzer/output_repository",
        "override_output_model_repository": True,
        "export_path": "perf/model_analyzer/results",
        "checkpoint_directory": "perf/model_analyzer/checkpoints",
        "triton_launch_mode": "docker",
        "triton_docker_image": "triton-encoders-triton:26.03-py3",   # the serving image of docker-compose.yml
        "triton_docker_shm_size": "1G",
        "client_protocol": "grpc",
        "run_config_search_disable": True,   # the manual search over the lists below
        "profile_models": {names.encoder: brute_model(space, "perf/inputs/encoder-128.json", cpu=False)},
        **objectives(GPU_BUDGET_P99_MS),
        "perf_analyzer_flags": {"percentile": 99},
    }


def gpu_config_text() -> str:
    return GPU_HEADER + dump_yaml(gpu_config())


class _Dumper(yaml.SafeDumper):
    """Lists of plain values on one line ([0, 100, 500]), as a person would write them."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(item, (list, dict)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_yaml(config: dict) -> str:
    """A Model Analyzer config as YAML, keys in the order built."""
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False)


def write_gpu_config(path: Path = GPU_CONFIG) -> Path:
    path.write_text(gpu_config_text())
    return path
