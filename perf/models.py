"""Find what a benchmark needs in a generated model repository: names, files, labels.

The repository's manifest.json names the ensemble, tokenizer and encoder of each model;
without one we fall back to the naming contract `<N>`, `<N>-tokenizer`, `<N>-encoder`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2


@dataclass(frozen=True)
class ModelFiles:
    name: str
    task: str  # e.g. "text-classification" or "embedding" (manifest; guessed from labels otherwise)
    ensemble: str
    tokenizer_model: str
    encoder: str
    fused: str | None  # tokenizer + encoder in one Python model (CPU builds), text in like the ensemble
    tokenizer_json: Path
    onnx_path: Path
    labels: list[str] | None
    manifest_entry: dict
    checkpoint: Path | None  # the Hugging Face folder the build started from (manifest "source")
    head: Path | None  # its scikit-learn head, for classifiers built with one (manifest "head")
    encoder_parameters: dict[str, str]  # the encoder's config.pbtxt parameters (thread settings)

    @property
    def is_classifier(self) -> bool:
        return "classification" in self.task


def resolve_model(model_repository: Path, name: str) -> ModelFiles:
    """Read the manifest entry and locate tokenizer.json, model.onnx and labels.txt."""
    repository = Path(model_repository)
    if not repository.is_dir():
        raise FileNotFoundError(
            f"model repository {repository} does not exist; build it with "
            f"`python -m convert {name} --out {repository}`"
        )
    entry = _manifest_entry(repository, name)
    ensemble = entry.get("ensemble", name)
    tokenizer_model = entry.get("tokenizer", f"{name}-tokenizer")
    encoder = entry.get("encoder", f"{name}-encoder")
    fused = entry.get("fused") or (f"{name}-fused" if (repository / f"{name}-fused" / "config.pbtxt").is_file() else None)
    tokenizer_json = repository / tokenizer_model / "1" / "tokenizer.json"
    onnx_path = repository / encoder / "1" / "model.onnx"
    for required in (tokenizer_json, onnx_path):
        if not required.is_file():
            raise FileNotFoundError(f"{required} is missing: is {repository} a repository built for '{name}'?")
    labels = _labels(repository, ensemble, encoder)
    task = entry.get("task") or ("text-classification" if labels else "embedding")
    checkpoint = Path(entry["source"]) if entry.get("source") else None
    head = Path(entry["head"]) if entry.get("head") else None
    return ModelFiles(name, task, ensemble, tokenizer_model, encoder, fused, tokenizer_json, onnx_path, labels, entry,
                      checkpoint, head, _parameters(repository / encoder / "config.pbtxt"))


def _parameters(config_path: Path) -> dict[str, str]:
    if not config_path.is_file():
        return {}
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    return {key: value.string_value for key, value in config.parameters.items()}


def _manifest_entry(repository: Path, name: str) -> dict:
    manifest = repository / "manifest.json"
    if not manifest.is_file():
        return {}
    models = json.loads(manifest.read_text()).get("models", {})
    if models and name not in models:
        raise KeyError(f"{manifest} has no model '{name}'; it has {sorted(models)} (use --model)")
    return models.get(name, {})


def _labels(repository: Path, ensemble: str, encoder: str) -> list[str] | None:
    for candidate in (repository / ensemble / "labels.txt", repository / encoder / "1" / "labels.txt",
                      repository / encoder / "labels.txt"):
        if candidate.is_file():
            return [line for line in candidate.read_text().splitlines() if line]
    return None


def copy_without_dynamic_batching(repository: Path, destination: Path) -> Path:
    """A copy of the repository whose models have no dynamic_batching, to measure its effect.

    Model files are symlinked (the ONNX weights are large); only config.pbtxt is rewritten,
    through the ModelConfig protobuf so the copy stays a valid Triton configuration.
    """
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for item in Path(repository).resolve().iterdir():
        target = destination / item.name
        if item.is_dir() and (item / "config.pbtxt").is_file():
            _link_model_without_batching(item, target)
        else:
            target.symlink_to(item)
    return destination


def _link_model_without_batching(model_dir: Path, target: Path) -> None:
    target.mkdir()
    for item in model_dir.iterdir():
        if item.name != "config.pbtxt":
            (target / item.name).symlink_to(item)
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.ClearField("dynamic_batching")
    (target / "config.pbtxt").write_text(text_format.MessageToString(config))
