"""`python -m perf tune apply`: put a config Model Analyzer measured into a built repository.

The chosen config's tuned fields (instance count, max batch size, queue delay, the encoder's
ORT parameters: perf/tune/results.tuned_settings) are set on each model's ModelConfig read from
the repository and written back through the repository's own writer (modelrepo); nothing else
in a config changes, except that an ensemble's max_batch_size is lowered when a composing model's
falls below it (Triton refuses an ensemble that batches more than its steps).
"""
from __future__ import annotations

import json
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from .._modelrepo import ModelNames, read_config, write_config
from ..errors import PerfError
from .results import TUNED_PARAMETERS, TuneRow, rows_from_json


def chosen_settings(results_dir: Path, variant: str, tokens: int | None = None) -> dict[str, dict]:
    """model -> tuned fields of `variant` in <results_dir>/tune.json."""
    path = Path(results_dir) / "tune.json"
    if not path.is_file():
        raise PerfError(f"{path} not found: give --results the folder `python -m perf tune` wrote")
    rows = rows_from_json(json.loads(path.read_text()))
    matching = [row for row in rows if row.variant == variant and tokens in (None, row.tokens)]
    if not matching:
        raise PerfError(f"no config {variant!r}{_at(tokens)} in {path}; its configs: {_names(rows)}")
    distinct = {json.dumps(row.settings, sort_keys=True) for row in matching}
    if len(distinct) > 1:
        raise PerfError(f"{variant} holds different settings at {sorted({row.tokens for row in matching})} "
                        "tokens (separate Model Analyzer runs): add --tokens to pick one")
    return matching[0].settings


def apply_settings(repository: Path, settings: dict[str, dict], model: str) -> dict[str, list[str]]:
    """Write `settings` into the repository's configs; return model -> the fields that changed."""
    changed = {}
    for name, fields in settings.items():
        if not (Path(repository) / name / "config.pbtxt").is_file():
            raise PerfError(f"{Path(repository) / name} has no config.pbtxt: is {repository} a build of {model}?")
        config = read_config(Path(repository) / name)
        changed[name] = set_tuned_fields(config, fields)
        write_config(config, Path(repository) / name)
    ensemble = _fit_ensemble_batch(Path(repository), ModelNames.of(model))
    if ensemble:
        changed[ModelNames.of(model).ensemble] = ensemble
    return changed


def set_tuned_fields(config: mc.ModelConfig, fields: dict) -> list[str]:
    """Set the tuned fields on `config`; return the names of those whose value changed."""
    before = mc.ModelConfig()
    before.CopyFrom(config)
    config.max_batch_size = fields["max_batch_size"]
    if not config.instance_group:
        raise PerfError(f"{config.name} has no instance_group to set a count on: rebuild it with python -m convert")
    config.instance_group[0].count = fields["instance_count"]
    if fields["max_queue_delay_us"] is None:
        config.ClearField("dynamic_batching")
    else:
        config.dynamic_batching.max_queue_delay_microseconds = fields["max_queue_delay_us"]
    for key in TUNED_PARAMETERS:
        if key in fields:
            config.parameters[key].string_value = fields[key]
    return _changed_fields(before, config)


def _changed_fields(before: mc.ModelConfig, after: mc.ModelConfig) -> list[str]:
    changed = [name for name in ("max_batch_size", "instance_group", "dynamic_batching")
               if getattr(before, name) != getattr(after, name)]
    return changed + [f"parameters.{key}" for key in TUNED_PARAMETERS
                      if before.parameters.get(key) != after.parameters.get(key)]


def _fit_ensemble_batch(repository: Path, names: ModelNames) -> list[str]:
    """Lower the ensemble's max_batch_size to its steps' smallest, where a step now batches less."""
    if not (repository / names.ensemble / "config.pbtxt").is_file():
        return []
    ensemble = read_config(repository / names.ensemble)
    smallest = min(read_config(repository / step.model_name).max_batch_size
                   for step in ensemble.ensemble_scheduling.step)
    if ensemble.max_batch_size <= smallest:
        return []
    ensemble.max_batch_size = smallest
    write_config(ensemble, repository / names.ensemble)
    return ["max_batch_size"]


def _at(tokens: int | None) -> str:
    return "" if tokens is None else f" at {tokens} tokens"


def _names(rows: list[TuneRow]) -> str:
    return ", ".join(sorted({row.variant for row in rows})) or "none"
