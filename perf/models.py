"""Find what a benchmark needs in a built model repository: names, files, labels.

Read through modelrepo, the repository's contract: the manifest entry names the ensemble,
tokenizer and encoder; a repository without a manifest (made by hand) follows the naming
contract `<N>`, `<N>-tokenizer`, `<N>-encoder`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ._modelrepo import (
    CONFIG_FILE,
    ManifestEntry,
    ModelNames,
    RepositoryError,
    Task,
    config_parameters,
    read_config,
    read_entry,
    write_config,
)
from .errors import PerfError


@dataclass(frozen=True)
class ModelFiles:
    name: str
    task: str  # "text-classification" or "embedding" (manifest; guessed from labels otherwise)
    names: ModelNames  # fused is None where the build has no fused model (GPU builds)
    tokenizer_json: Path
    onnx_path: Path
    labels: list[str] | None
    manifest_entry: ManifestEntry | None  # None for a repository without a manifest
    encoder_parameters: dict[str, str]  # the encoder's config.pbtxt parameters (thread settings)

    @property
    def checkpoint(self) -> Path | None:
        """The Hugging Face folder the build started from (manifest "source")."""
        entry = self.manifest_entry
        return Path(entry.source) if entry and entry.source else None

    @property
    def head(self) -> Path | None:
        """Its scikit-learn head, for classifiers built with one (manifest "head")."""
        entry = self.manifest_entry
        return Path(entry.head) if entry and entry.head else None

    @property
    def is_classifier(self) -> bool:
        return "classification" in self.task


def resolve_model(model_repository: Path, name: str) -> ModelFiles:
    """Read the manifest entry and locate tokenizer.json, model.onnx and labels.txt."""
    repository = Path(model_repository)
    if not repository.is_dir():
        raise PerfError(f"model repository {repository} does not exist; build it with "
                        f"`python -m convert {name} --out {repository}`")
    try:
        entry = read_entry(repository, name)
    except RepositoryError as error:
        raise PerfError(str(error)) from None
    names = entry.names if entry else _names_by_convention(repository, name)
    tokenizer_json, onnx_path = names.tokenizer_json(repository), names.onnx_file(repository)
    for required in (tokenizer_json, onnx_path):
        if not required.is_file():
            raise PerfError(f"{required} is missing: is {repository} a repository built for '{name}'?")
    labels = _labels(names.label_files(repository))
    task = entry.task if entry else (Task.CLASSIFICATION if labels else Task.EMBEDDING)
    encoder_dir = repository / names.encoder
    parameters = config_parameters(read_config(encoder_dir)) if (encoder_dir / CONFIG_FILE).is_file() else {}
    return ModelFiles(name, task, names, tokenizer_json, onnx_path, labels, entry, parameters)


def _names_by_convention(repository: Path, name: str) -> ModelNames:
    names = ModelNames.of(name)
    has_fused = (repository / names.fused / CONFIG_FILE).is_file()
    return names if has_fused else ModelNames(names.ensemble, names.tokenizer, names.encoder, None)


def _labels(candidates: list[Path]) -> list[str] | None:
    for candidate in candidates:
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
        if item.is_dir() and (item / CONFIG_FILE).is_file():
            _link_model_without_batching(item, target)
        else:
            target.symlink_to(item)
    return destination


def _link_model_without_batching(model_dir: Path, target: Path) -> None:
    target.mkdir()
    for item in model_dir.iterdir():
        if item.name != CONFIG_FILE:
            (target / item.name).symlink_to(item)
    config = read_config(model_dir)
    config.ClearField("dynamic_batching")
    write_config(config, target)
