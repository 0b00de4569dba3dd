"""What the gap run measures: callables that answer one batch of texts, in-process or served.

- `ort`: tokenizers + onnxruntime on the repository's model.onnx with ONNX Runtime's defaults
  (perf.baselines.OrtPipeline), in-process: the figure the served throughput is held to;
  `ort no-spin` the same with its threads sleeping at once when idle instead of spinning;
- `ort-served`: the served code itself (the tokenizer's and the encoder's model.py, loaded from
  the built repository) run in-process: the served session options, padding and row policy;
- the ensemble and the fused model over HTTP (JSON or binary tensors) and gRPC;
- the same served models with other config parameters (`--ab NAME:key=value,...`), as copies
  beside the originals in one repository served by one server, so that A and B share the run.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._modelrepo import CONFIG_FILE, ModelNames, config_parameters, read_config, write_config
from ..baselines import OrtPipeline
from ..errors import PerfError
from ..models import ModelFiles

Call = Callable[[list[str]], Any]


@dataclass
class Variant:
    """One way to answer a batch; `calls` holds one callable per concurrent client, `models` the
    served models whose statistics count for it."""

    name: str
    calls: list[Call]
    models: list[str] = field(default_factory=list)

    @property
    def concurrency(self) -> int:
        return len(self.calls)


@dataclass(frozen=True)
class ServerChange:
    """`--ab nospin:spin=0`: copies of the encoder, ensemble and fused model, named with the
    suffix, whose config parameters differ by these values."""

    name: str
    parameters: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> "ServerChange":
        name, _, settings = text.partition(":")
        pairs = [item.partition("=") for item in settings.split(",") if item]
        if not name or not pairs or any(not key or not sep for key, sep, _ in pairs):
            raise PerfError(f"--ab {text!r}: write NAME:key=value[,key=value], e.g. nospin:spin=0")
        return cls(name, {key: value for key, _, value in pairs})


# ---------------------------------------------------------------- in-process


def inprocess_variants(model: ModelFiles, repository: Path) -> list[Variant]:
    labels = model.labels if model.is_classifier else None
    return [Variant("ort", [OrtPipeline(model.onnx_path, model.tokenizer_json, labels)]),
            Variant("ort no-spin", [OrtPipeline(model.onnx_path, model.tokenizer_json, labels, spin=False)]),
            Variant("ort-served", [served_inprocess(model, repository)])]


def _load_served_module(path: Path, name: str) -> Any:
    """A model.py the server runs, imported from the repository (it runs without Triton too)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PerfError(f"cannot import {path}; rebuild the repository with python -m convert")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def served_inprocess(model: ModelFiles, repository: Path) -> Call:
    """The tokenizer model's and the encoder model's own functions, with the served settings."""
    names = model.names
    tokenizer_code = _load_served_module(repository / names.tokenizer / "1" / "model.py", "gap_tokenizer_model")
    encoder_code = _load_served_module(repository / names.encoder / "1" / "model.py", "gap_encoder_model")
    max_length = int(config_parameters(read_config(repository / names.tokenizer))["max_length"])
    tokenizer = tokenizer_code.load_tokenizer(model.tokenizer_json, max_length)
    parameters = model.encoder_parameters
    threads = int(parameters.get("intra_op_threads", "0")) or os.cpu_count() or 1  # as the encoder reads it
    session = encoder_code.make_session(repository / names.encoder / "1" / parameters.get("onnx_file", "model.onnx"),
                                        threads, parameters.get("spin", "0") == "1")
    with_types = "token_type_ids" in {i.name for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    row_by_row = parameters.get("row_by_row", "0") == "1"

    def call(texts: list[str]) -> Any:
        feeds = tokenizer_code.encode(tokenizer, texts, with_types)
        return encoder_code.run_batch(session, feeds, outputs, row_by_row)

    return call


# ---------------------------------------------------------------- served


def http_call(url: str, model: str, output: str, binary: bool) -> Call:
    import tritonclient.http as http

    client = http.InferenceServerClient(url, connection_timeout=300, network_timeout=300)

    def call(texts: list[str]) -> Any:
        batch = np.array([[text.encode()] for text in texts], dtype=np.object_)
        tensor = http.InferInput("TEXT", list(batch.shape), "BYTES")
        tensor.set_data_from_numpy(batch, binary_data=binary)
        result = client.infer(model, [tensor], outputs=[http.InferRequestedOutput(output, binary_data=binary)])
        return result.as_numpy(output)

    return call


def grpc_call(url: str, model: str, output: str) -> Call:
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(url)

    def call(texts: list[str]) -> Any:
        batch = np.array([[text.encode()] for text in texts], dtype=np.object_)
        tensor = grpc.InferInput("TEXT", list(batch.shape), "BYTES")
        tensor.set_data_from_numpy(batch)
        result = client.infer(model, [tensor], outputs=[grpc.InferRequestedOutput(output)], client_timeout=300)
        return result.as_numpy(output)

    return call


def served_variants(model: ModelFiles, http_url: str, grpc_url: str, suffix: str = "",
                    concurrency: tuple[int, ...] = (1,)) -> list[Variant]:
    """The ensemble over HTTP JSON, HTTP binary and gRPC, the fused model over binary and gRPC;
    gRPC also with more clients at once when `concurrency` asks for them."""
    output = "PROBABILITIES" if model.is_classifier else "EMBEDDING"
    names = model.names
    ensemble, fused = names.ensemble + suffix, (names.fused + suffix if names.fused else None)
    label = f" [{suffix.lstrip('-')}]" if suffix else ""
    chain = [ensemble, names.tokenizer, names.encoder + suffix]
    variants = [
        Variant(f"ensemble http-json{label}", [http_call(http_url, ensemble, output, False)], chain),
        Variant(f"ensemble http-binary{label}", [http_call(http_url, ensemble, output, True)], chain),
    ]
    variants += [Variant(f"ensemble grpc{_clients(n)}{label}", [grpc_call(grpc_url, ensemble, output)
                                                                for _ in range(n)], chain) for n in concurrency]
    if fused:
        variants.append(Variant(f"fused http-binary{label}", [http_call(http_url, fused, output, True)], [fused]))
        variants += [Variant(f"fused grpc{_clients(n)}{label}", [grpc_call(grpc_url, fused, output)
                                                                 for _ in range(n)], [fused]) for n in concurrency]
    return variants


def _clients(count: int) -> str:
    return "" if count == 1 else f" x{count}"


# ---------------------------------------------------------------- A/B copies of served models


def repository_with_changes(repository: Path, names: ModelNames, changes: list[ServerChange],
                            destination: Path) -> Path:
    """`repository` linked into `destination`, plus per change a copy of the encoder, the fused
    model and the ensemble (pointing at the copied encoder) with the changed parameters."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for item in Path(repository).resolve().iterdir():
        (destination / item.name).symlink_to(item)
    for change in changes:
        suffix = f"-{change.name}"
        for folder in [names.encoder] + ([names.fused] if names.fused else []):
            _changed_copy(destination / folder, destination / (folder + suffix), change.parameters)
        _changed_copy(destination / names.ensemble, destination / (names.ensemble + suffix), {},
                      {names.encoder: names.encoder + suffix})
    return destination


def _changed_copy(source: Path, target: Path, parameters: dict[str, str], steps: dict[str, str] | None = None) -> None:
    """The model folder linked file by file under a new name, its config rewritten through the protobuf."""
    source = source.resolve()
    config = read_config(source)
    unknown = set(parameters) - set(config.parameters)
    if unknown:
        raise PerfError(f"--ab: {source.name} has no parameter {', '.join(sorted(unknown))} "
                        f"(it has {', '.join(sorted(config.parameters))})")
    shutil.copytree(source, target, symlinks=True, copy_function=_link,
                    ignore=shutil.ignore_patterns(CONFIG_FILE, "__pycache__"))
    config.name = target.name
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    for step in config.ensemble_scheduling.step:
        step.model_name = (steps or {}).get(step.model_name, step.model_name)
    write_config(config, target)


def _link(source: str, target: str) -> None:
    os.symlink(os.path.abspath(source), target)

