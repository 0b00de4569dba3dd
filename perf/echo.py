"""A scratch model repository holding perf-echo, the no-work Python-backend model.

The runner passes it to tritonserver as a second `--model-repository`, so the built
repository is served untouched and the echo model sits beside it with the same batching
settings as the text models (dynamic batching on or off, no queue delay).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from ._modelrepo import TEXT_INPUT, write_config

ECHO_MODEL = "perf-echo"
MODEL_CODE = Path(__file__).resolve().parent / "echo_model.py"


def echo_config(max_batch_size: int, dynamic_batching: bool) -> mc.ModelConfig:
    config = mc.ModelConfig(name=ECHO_MODEL, backend="python", max_batch_size=max_batch_size)
    config.input.add(name=TEXT_INPUT, data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="ECHO", data_type=mc.TYPE_STRING, dims=[1])
    if dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = 0
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    return config


def write_echo_repository(destination: Path, max_batch_size: int, dynamic_batching: bool = True) -> Path:
    """destination/perf-echo/{config.pbtxt, 1/model.py}; returns destination."""
    model_dir = Path(destination) / ECHO_MODEL
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(MODEL_CODE, model_dir / "1" / "model.py")
    write_config(echo_config(max_batch_size, dynamic_batching), model_dir)
    return Path(destination)
