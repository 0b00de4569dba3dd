"""What the server says about a model: its tensors, batch size, task and maximum length.

Read from Triton's model metadata and model configuration (never hard-coded), so the
client follows whatever the repository was built with. Both protocols return JSON
here; gRPC writes 64-bit integers as strings and wraps the config in {"config": ...},
which `from_server` smooths over.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ._modelrepo import EMBEDDING, LABEL, PROBABILITIES, SCORE, TEXT_INPUT, Task
from .errors import ClientError

__all__ = ["EMBEDDING", "LABEL", "PROBABILITIES", "SCORE", "TEXT_INPUT", "ModelInfo", "from_server"]
CLASSIFICATION, EMBEDDING_TASK = Task.CLASSIFICATION, Task.EMBEDDING


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    task: str                          # "text-classification" or "embedding"
    max_batch_size: int
    max_length: int | None             # tokens; longer texts are truncated by the server
    outputs: dict[str, list[int]]      # output name -> shape without the batch dimension
    parameters: dict[str, str] = field(default_factory=dict)   # the ensemble's config parameters

    @property
    def is_classifier(self) -> bool:
        return self.task == CLASSIFICATION

    @property
    def num_labels(self) -> int:
        return self.outputs[PROBABILITIES][0] if PROBABILITIES in self.outputs else 0

    @property
    def embedding_dim(self) -> int:
        return self.outputs[EMBEDDING][0] if EMBEDDING in self.outputs else 0

    def describe(self) -> str:
        facts = [self.task, *(self.parameters[k] for k in ("precision", "target") if k in self.parameters)]
        size = f"{self.num_labels} labels" if self.is_classifier else f"{self.embedding_dim}-d"
        return (f"{self.name} v{self.version} ({', '.join(facts)}; {size}; "
                f"max {self.max_length} tokens, batch {self.max_batch_size})")


def from_server(metadata: dict, config: dict) -> ModelInfo:
    """Build the info from `get_model_metadata` and `get_model_config` answers (as JSON)."""
    config = config.get("config", config)
    name = metadata["name"]
    _check_text_input(name, metadata.get("inputs", []))
    outputs = {o["name"]: [int(d) for d in o["shape"]][1:] for o in metadata.get("outputs", [])}
    parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
    max_batch_size = int(config.get("max_batch_size", 0))
    if max_batch_size < 1:
        raise ClientError(f"model {name} does not batch (max_batch_size {max_batch_size}); this client sends "
                          "[batch, 1] TEXT tensors: serve an ensemble built by `python -m convert`")
    return ModelInfo(
        name=name,
        version=max(metadata.get("versions", ["1"]), key=int),
        task=parameters.get("task") or _task_from_outputs(name, outputs),
        max_batch_size=max_batch_size,
        max_length=int(parameters["max_length"]) if parameters.get("max_length") else None,
        outputs=outputs,
        parameters=parameters,
    )


def _check_text_input(name: str, inputs: list[dict]) -> None:
    described = ", ".join(f"{i['name']} ({i['datatype']})" for i in inputs) or "none"
    if not any(i["name"] == TEXT_INPUT and i["datatype"] == "BYTES" for i in inputs):
        raise ClientError(f"model {name} takes {described}, not a BYTES {TEXT_INPUT} input: "
                          "point the client at the ensemble (e.g. minilm-intent), not at one of its parts")


def _task_from_outputs(name: str, outputs: dict[str, list[int]]) -> str:
    if PROBABILITIES in outputs:
        return CLASSIFICATION
    if EMBEDDING in outputs:
        return EMBEDDING_TASK
    raise ClientError(f"model {name} has neither {PROBABILITIES} nor {EMBEDDING} among its outputs "
                      f"({', '.join(outputs) or 'none'})")
