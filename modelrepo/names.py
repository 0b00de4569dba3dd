"""The names of the models one build writes, and where their files lie.

One build of `<name>` serves the ensemble `<name>`, which chains `<name>-tokenizer` and
`<name>-encoder`; CPU builds add `<name>-fused` (tokenizer and encoder in one model).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VERSION = "1"                       # every model of a build has one version
TOKENIZER_JSON = "tokenizer.json"   # in <tokenizer>/1/
ONNX_FILE = "model.onnx"            # in <encoder>/1/
LABELS_FILE = "labels.txt"          # in the ensemble's and the encoder's folders (classifiers)
STUB_BINARY = "triton_python_backend_stub"

# The ensemble's (and the fused model's) tensors: raw text in; a classifier answers LABEL,
# SCORE and PROBABILITIES (over labels.txt), an embedding model EMBEDDING.
TEXT_INPUT = "TEXT"
LABEL, SCORE, PROBABILITIES, EMBEDDING = "LABEL", "SCORE", "PROBABILITIES", "EMBEDDING"
_STUB_INSTANCE_ARG = 8   # the stub's argv: binary, model.py, shm region, sizes, parent pid, ..., instance name


@dataclass(frozen=True)
class ModelNames:
    ensemble: str
    tokenizer: str
    encoder: str
    fused: str | None     # None: the build has no fused model (GPU builds)

    @classmethod
    def of(cls, name: str) -> "ModelNames":
        return cls(name, f"{name}-tokenizer", f"{name}-encoder", f"{name}-fused")

    @property
    def cuda_encoder(self) -> str:
        """GPU builds: the encoder on ONNX Runtime's CUDA provider alone (the encoder uses TensorRT)."""
        return f"{self.encoder}-cuda"

    @property
    def plan_encoder(self) -> str:
        """GPU builds: the encoder as a TensorRT plan."""
        return f"{self.encoder}-trt"

    def tokenizer_json(self, repository: Path) -> Path:
        return Path(repository) / self.tokenizer / VERSION / TOKENIZER_JSON

    def onnx_file(self, repository: Path) -> Path:
        return Path(repository) / self.encoder / VERSION / ONNX_FILE

    def label_files(self, repository: Path) -> list[Path]:
        """Where a classifier's labels may be, first found wins."""
        repository = Path(repository)
        return [repository / self.ensemble / LABELS_FILE, repository / self.encoder / VERSION / LABELS_FILE,
                repository / self.encoder / LABELS_FILE]


@dataclass(frozen=True)
class StubCommand:
    """What a Triton Python-backend stub process runs, read from its command line."""
    model: str               # the model folder: argv[1] is <repository>/<model>/<version>/model.py
    instance: str | None     # Triton's instance name, e.g. "minilm-intent-encoder_0_0"


def stub_model(argv: list[str]) -> StubCommand | None:
    """The model (and instance) a Python-backend stub process runs; None for any other process."""
    if len(argv) < 2 or not Path(argv[0]).name.startswith(STUB_BINARY) or not argv[1].endswith(".py"):
        return None
    instance = argv[_STUB_INSTANCE_ARG] if len(argv) > _STUB_INSTANCE_ARG else None
    return StubCommand(Path(argv[1]).parent.parent.name, instance)
