"""config.pbtxt for every model, built as Triton's own `ModelConfig` protobuf.

Nothing here formats text by hand: each function returns a `ModelConfig`, and
`modelrepo.write_config` serialises it with `text_format`, so a config always parses back.
"""
from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from ._modelrepo import TEXT_INPUT

STRING, INT64, FP32 = mc.TYPE_STRING, mc.TYPE_INT64, mc.TYPE_FP32


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: int
    dims: tuple[int, ...]            # without the batch dimension
    label_filename: str = ""


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...] = ()


def _parameters(config: mc.ModelConfig, values: dict[str, str]) -> None:
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def _io(config: mc.ModelConfig, inputs: list[Tensor], outputs: list[Tensor], ragged: bool = False) -> None:
    for tensor in inputs:
        config.input.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims, allow_ragged_batch=ragged)
    for tensor in outputs:
        config.output.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims,
                          label_filename=tensor.label_filename)


def _batching(config: mc.ModelConfig, batching: Batching) -> None:
    config.max_batch_size = batching.max_batch_size
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)


def _warmup(config: mc.ModelConfig, inputs: list[Tensor], files: dict[str, str],
            dims: dict[str, tuple[int, ...]]) -> None:
    """Warm up on real data written to the model's warmup/ folder (never random ids, which
    may fall outside the vocabulary, nor empty text, which the tokenizer refuses)."""
    warmup = config.model_warmup.add(name="real_sentence", batch_size=1, count=2)
    for tensor in inputs:
        warmup.inputs[tensor.name].data_type = tensor.data_type
        warmup.inputs[tensor.name].dims.extend(dims[tensor.name])
        warmup.inputs[tensor.name].input_data_file = files[tensor.name]


def text_model_config(name: str, outputs: list[Tensor], batching: Batching, parameters: dict[str, object], *,
                      instances: int = 1, warmup_file: str = "text") -> mc.ModelConfig:
    """A Python-backend model taking raw `TEXT`: the tokenizer, or the fused text-to-outputs model."""
    config = mc.ModelConfig(name=name, backend="python")
    text = Tensor(TEXT_INPUT, STRING, (1,))
    _io(config, [text], outputs)
    _batching(config, batching)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=instances)
    _parameters(config, parameters)
    _warmup(config, [text], {TEXT_INPUT: warmup_file}, {TEXT_INPUT: (1,)})
    return config


def tokenizer_config(name: str, outputs: list[Tensor], batching: Batching, *, max_length: int,
                     instances: int = 1) -> mc.ModelConfig:
    return text_model_config(name, outputs, batching, {"max_length": max_length, "pad_to_multiple_of": 0},
                             instances=instances)


def cpu_encoder_config(name: str, inputs: list[Tensor], outputs: list[Tensor], batching: Batching, *,
                       onnx_file: str, intra_op_threads: int, spin: bool, warmup_files: dict[str, str],
                       warmup_length: int, pad_id: int = 0, row_by_row: bool = False,
                       instances: int = 1) -> mc.ModelConfig:
    """ONNX Runtime inside a Python-backend model: the CPU Triton build has no ORT backend.
    Inputs allow ragged batches: the model pads requests of different lengths itself."""
    config = mc.ModelConfig(name=name, backend="python")
    _io(config, inputs, outputs, ragged=True)
    _batching(config, batching)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=instances)
    _parameters(config, {"onnx_file": onnx_file, "intra_op_threads": intra_op_threads, "spin": int(spin),
                         "pad_id": pad_id, "row_by_row": int(row_by_row)})
    _warmup(config, inputs, warmup_files, {t.name: (warmup_length,) for t in inputs})
    return config


def tensorrt_cache_path(model: str) -> str:
    """One folder per model directly under /tmp: ONNX Runtime's TensorRT provider creates only
    the last level of the path (std::filesystem::create_directory), so a nested path whose
    parent nobody made fails the model's load. /tmp exists and is writable in every image; the
    engines stay with the container, so they are rebuilt after an upgrade, never reused across
    TensorRT versions."""
    return f"/tmp/triton-trt-cache-{model}"


def _trt_profile(inputs: list[Tensor], batch: int, length: int) -> str:
    return ",".join(f"{t.name}:{batch}x{length}" for t in inputs)


def gpu_encoder_config(name: str, inputs: list[Tensor], outputs: list[Tensor], batching: Batching, *,
                       max_length: int, opt_length: int, use_tensorrt: bool, warmup_files: dict[str, str],
                       warmup_length: int) -> mc.ModelConfig:
    """The onnxruntime backend on the GPU, with the TensorRT execution accelerator at FP16
    (engine and timing caches beside the model, explicit profile shapes) or CUDA only."""
    config = mc.ModelConfig(name=name, backend="onnxruntime", default_model_filename="model.onnx")
    _io(config, inputs, outputs)
    _batching(config, batching)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
    if use_tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        parameters = {
            "precision_mode": "FP16",
            "max_workspace_size_bytes": str(2 << 30),
            "trt_engine_cache_enable": "true",
            "trt_engine_cache_path": tensorrt_cache_path(name),
            "trt_timing_cache_enable": "true",
            "trt_timing_cache_path": tensorrt_cache_path(name),
            "trt_profile_min_shapes": _trt_profile(inputs, 1, 1),
            "trt_profile_opt_shapes": _trt_profile(inputs, batching.max_batch_size // 2 or 1, opt_length),
            "trt_profile_max_shapes": _trt_profile(inputs, batching.max_batch_size, max_length),
        }
        accelerator.parameters.update(parameters)
    _warmup(config, inputs, warmup_files, {t.name: (warmup_length,) for t in inputs})
    return config


def tensorrt_plan_config(name: str, inputs: list[Tensor], outputs: list[Tensor], batching: Batching, *,
                         warmup_files: dict[str, str], warmup_length: int) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, platform="tensorrt_plan", default_model_filename="model.plan")
    _io(config, inputs, outputs)
    _batching(config, batching)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)
    _warmup(config, inputs, warmup_files, {t.name: (warmup_length,) for t in inputs})
    return config


def ensemble_config(name: str, *, tokenizer: str, encoder: str, token_tensors: list[str],
                    outputs: dict[str, Tensor], max_batch_size: int, parameters: dict[str, str]) -> mc.ModelConfig:
    """TEXT -> tokenizer -> encoder. `outputs` maps an encoder output to the ensemble's tensor."""
    config = mc.ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    _io(config, [Tensor(TEXT_INPUT, STRING, (1,))], list(outputs.values()))
    steps = config.ensemble_scheduling.step
    tokenize = steps.add(model_name=tokenizer, model_version=-1)
    tokenize.input_map[TEXT_INPUT] = TEXT_INPUT
    run = steps.add(model_name=encoder, model_version=-1)
    for tensor in token_tensors:
        tokenize.output_map[tensor] = f"_{tensor}"
        run.input_map[tensor] = f"_{tensor}"
    for encoder_output, ensemble_output in outputs.items():
        run.output_map[encoder_output] = ensemble_output.name
    _parameters(config, parameters)
    return config

