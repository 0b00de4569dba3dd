"""Model Analyzer's results, read back from its checkpoint into this project's rows.

Model Analyzer keeps every measurement in `<checkpoint_directory>/0.ckpt` (JSON): per model,
per config variant, the run config (the variant's whole model config, and for an ensemble its
composing models' configs) and one measurement per perf_analyzer load (batch size,
concurrency) with its records. Its CSV export holds only the columns asked for; the
checkpoint holds them all. Model Analyzer 1.58 records no p50 (perf_latency_avg, _p90, _p95,
_p99, perf_throughput and the server-side breakdown): the average stands in for it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from .._modelrepo import ModelNames
from ..errors import PerfError

CHECKPOINT = "0.ckpt"
# Model Analyzer record -> our field (milliseconds, infer/s).
RECORDS = {
    "perf_throughput": "throughput",
    "perf_latency_avg": "avg_ms",
    "perf_latency_p90": "p90_ms",
    "perf_latency_p95": "p95_ms",
    "perf_latency_p99": "p99_ms",
    "perf_server_queue": "server_queue_ms",
    "perf_server_compute_infer": "server_compute_infer_ms",
}
TUNED_PARAMETERS = ("intra_op_threads", "spin")   # the encoder's ORT settings the search may change


@dataclass(frozen=True)
class TuneRow:
    """One measured load of one config variant."""
    tokens: int
    role: str                        # fused | encoder | ensemble
    variant: str                     # Model Analyzer's name, e.g. minilm-intent-fused_config_1
    batch_size: int
    concurrency: int
    settings: dict[str, dict]        # model -> its tuned fields (tuned_settings)
    throughput: float
    avg_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    server_queue_ms: float
    server_compute_infer_ms: float

    @property
    def is_default(self) -> bool:
        """The repository's config as built (Model Analyzer measures it first)."""
        return self.variant.endswith("_config_default")

    def as_dict(self) -> dict:
        return asdict(self)


def tuned_settings(config: mc.ModelConfig) -> dict:
    """The fields `python -m perf tune` searches, as one model config holds them."""
    settings: dict = {"max_batch_size": config.max_batch_size,
                      "instance_count": config.instance_group[0].count if config.instance_group else 1,
                      "max_queue_delay_us": (config.dynamic_batching.max_queue_delay_microseconds
                                             if config.HasField("dynamic_batching") else None)}
    for key in TUNED_PARAMETERS:
        if key in config.parameters:
            settings[key] = config.parameters[key].string_value
    return settings


def read_run(checkpoint_dir: Path, tokens: int, names: ModelNames) -> list[TuneRow]:
    """Every measurement of one Model Analyzer run (inputs of `tokens` tokens), in its order."""
    path = Path(checkpoint_dir) / CHECKPOINT
    if not path.is_file():
        raise PerfError(f"{path} not found: that Model Analyzer run wrote no results (see its log beside it)")
    results = json.loads(path.read_text())["ResultManager.results"]["_results"]
    roles = {names.fused: "fused", names.encoder: "encoder", names.ensemble: "ensemble"}
    rows = []
    for model, variants in results.items():
        for variant, (run_config, measurements) in variants.items():
            settings = _variant_settings(run_config["_model_run_configs"][0])
            rows += [_row(tokens, roles.get(model, model), variant, settings, measurement)
                     for measurement in measurements.values()]
    return rows


def _variant_settings(model_run_config: dict) -> dict[str, dict]:
    """model -> tuned fields, for the profiled model and any ensemble's composing models."""
    variants = [model_run_config["_model_config_variant"], *model_run_config.get("_composing_config_variants", [])]
    configs = [_model_config(variant["model_config"]) for variant in variants]
    return {config.name: tuned_settings(config) for config in configs if config.platform != "ensemble"}


def _model_config(as_json: dict) -> mc.ModelConfig:
    """Model Analyzer stores configs as the protobuf's JSON form: parse it back into a ModelConfig."""
    return json_format.ParseDict(as_json, mc.ModelConfig(), ignore_unknown_fields=True)


def _row(tokens: int, role: str, variant: str, settings: dict, measurement: dict) -> TuneRow:
    (model_measurement,) = measurement["_model_config_measurements"]
    load = model_measurement["_model_specific_pa_params"]
    records = {name: value["_value"] for name, value in model_measurement["_non_gpu_data"]}
    missing = [name for name in RECORDS if name not in records]
    if missing:
        raise PerfError(f"Model Analyzer's measurement of {variant} lacks {', '.join(missing)}: "
                        "was it run with another version than the one this project installs?")
    values = {field: float(records[name]) for name, field in RECORDS.items()}
    return TuneRow(tokens=tokens, role=role, variant=variant, batch_size=int(load["batch-size"]),
                   concurrency=int(load["concurrency-range"]), settings=settings, **values)


def rows_from_json(document: dict) -> list[TuneRow]:
    """The rows tune.json holds (written by perf/tune/report.py)."""
    return [TuneRow(**row) for row in document["rows"]]
