"""config.pbtxt read and written through Triton's own ModelConfig protobuf, never as text by hand."""
from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

CONFIG_FILE = "config.pbtxt"


def write_config(config: mc.ModelConfig, model_dir: Path) -> Path:
    path = Path(model_dir) / CONFIG_FILE
    path.write_text(text_format.MessageToString(config))
    return path


def read_config(model_dir: Path) -> mc.ModelConfig:
    return text_format.Parse((Path(model_dir) / CONFIG_FILE).read_text(), mc.ModelConfig())


def config_parameters(config: mc.ModelConfig) -> dict[str, str]:
    """The config's `parameters` (all strings in Triton's format), e.g. the encoder's thread settings."""
    return {key: value.string_value for key, value in config.parameters.items()}


def served_model_folders(repository: Path) -> list[str]:
    """The folders Triton serves as models: those holding a config.pbtxt, sorted."""
    return sorted(entry.name for entry in Path(repository).iterdir() if (entry / CONFIG_FILE).is_file())
