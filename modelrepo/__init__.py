"""The model repository's contract: the one place that knows how a built repository looks.

`python -m convert` writes a Triton model repository through this package; serve/, client/
and perf/ read it through this package. Nothing else rebuilds these names or formats:

    <repository>/
      manifest.json                 one ManifestEntry per model (what was built, how, how well)
      <model>/config.pbtxt          the ensemble: TEXT in, labels/scores or an embedding out
      <model>-tokenizer/            Python backend: tokenizer.json under 1/
      <model>-encoder/              the encoder: model.onnx under 1/ (or a TensorRT plan)
      <model>-fused/                CPU builds: tokenizer and encoder in one Python model

    from modelrepo import ModelNames, read_entry, read_config
    names = ModelNames.of("minilm-intent")           # ensemble, tokenizer, encoder, fused
    entry = read_entry(Path("triton_models"), "minilm-intent")   # a ManifestEntry
    config = read_config(Path("triton_models") / names.encoder) # a ModelConfig protobuf
"""
from .config import CONFIG_FILE, config_parameters, read_config, served_model_folders, write_config
from .errors import RepositoryError
from .manifest import MANIFEST, ManifestEntry, Precision, Target, Task, read_entry, read_manifest, record_entry
from .names import EMBEDDING, LABEL, PROBABILITIES, SCORE, TEXT_INPUT, ModelNames, StubCommand, stub_model

__all__ = [
    "CONFIG_FILE", "EMBEDDING", "LABEL", "MANIFEST", "PROBABILITIES", "SCORE", "TEXT_INPUT",
    "ManifestEntry", "ModelNames", "Precision", "RepositoryError", "StubCommand", "Target", "Task",
    "config_parameters", "read_config", "read_entry", "read_manifest", "record_entry", "served_model_folders",
    "stub_model", "write_config",
]
