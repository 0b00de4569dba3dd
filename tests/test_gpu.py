"""The GPU path: TensorRT engine builds, CUDA/TensorRT parity with PyTorch, end-to-end latency.

Tests marked `gpu` need an NVIDIA GPU and are skipped, with the reason, everywhere else (CI
runs on CPUs). On a GPU host they run inside the convert image (it has TensorRT and the
converter but no tests/: mount them), with the server up for the end-to-end test:
    docker compose up -d
    docker compose run --rm --no-deps \
      -v "$PWD/tests:/opt/triton-encoders/tests:ro" \
      -v "$PWD/pyproject.toml:/opt/triton-encoders/pyproject.toml:ro" \
      -e TRITON_GPU_URL=triton:8001 \
      convert python3 -m pytest -p no:cacheprovider -m gpu -s tests/test_gpu.py
(docs/GPU.md, "GPU tests"; tests/test_docker_images.py keeps the two commands equal).

The first tests run everywhere: they check what the engine builder refuses before any GPU
work, and that without a GPU it says what to do instead.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from convert import tensorrt_engine
from convert.tensorrt_engine import (
    GPU_REQUIRED,
    EngineBuildError,
    GpuUnavailableError,
    build_engine,
    check_bindings_match_system,
    check_onnx_graph,
    check_profile,
)

ROOT = Path(__file__).resolve().parents[1]
HAS_GPU = tensorrt_engine.gpu_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no NVIDIA GPU: the CUDA driver and nvidia-smi report none")
FP16_MAX_ABS = 1e-2          # on probabilities / embeddings, against the FP32 PyTorch reference
MODEL = "minilm-intent"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def token_graph(path: Path, domain: str = "") -> Path:
    """A small real ONNX graph with the encoder's three int64 [batch, sequence] inputs."""
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"]) for name in TOKEN_INPUTS]
    output = helper.make_tensor_value_info("summed", TensorProto.INT64, ["batch", "sequence"])
    nodes = [helper.make_node("Add", ["input_ids", "attention_mask"], ["partial"]),
             helper.make_node("Add", ["partial", "token_type_ids"], ["summed"], domain=domain)]
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    onnx.save(helper.make_model(helper.make_graph(nodes, "tokens", inputs, [output]), opset_imports=opsets), path)
    return path


def token_profile(batch: int = 32, length: int = 128) -> dict:
    return {name: ((1, 1), (batch // 2, 64), (batch, length)) for name in TOKEN_INPUTS}


# ---------------------------------------------------------------- everywhere: refusals and messages

def test_profile_must_name_exactly_the_graph_inputs(tmp_path):
    inputs = check_onnx_graph(token_graph(tmp_path / "tokens.onnx"))
    assert inputs == {name: [-1, -1] for name in TOKEN_INPUTS}
    partial = {k: v for k, v in token_profile().items() if k != "token_type_ids"}
    with pytest.raises(ValueError, match="missing \\['token_type_ids'\\]"):
        check_profile(partial, inputs)
    with pytest.raises(ValueError, match="not inputs \\['pixels'\\]"):
        check_profile(token_profile() | {"pixels": ((1, 1), (1, 1), (1, 1))}, inputs)


def test_profile_needs_min_opt_max_in_order_and_the_inputs_rank(tmp_path):
    inputs = check_onnx_graph(token_graph(tmp_path / "tokens.onnx"))
    check_profile(token_profile(), inputs)   # batch 1..32, sequence 1..128: accepted
    inverted = token_profile() | {"input_ids": ((1, 1), (64, 64), (32, 128))}
    with pytest.raises(ValueError, match="min <= opt <= max"):
        check_profile(inverted, inputs)
    flat = token_profile() | {"attention_mask": ((1,), (16,), (32,))}
    with pytest.raises(ValueError, match="must have 2 positive dimensions"):
        check_profile(flat, inputs)


def test_engine_builder_refuses_onnx_runtime_fusions_before_any_gpu_work(tmp_path):
    fused = token_graph(tmp_path / "fused.onnx", domain="com.microsoft")
    with pytest.raises(EngineBuildError, match="com.microsoft:Add.*plain exported graph"):
        build_engine(fused, tmp_path / "model.plan", profile=token_profile())
    assert not (tmp_path / "model.plan").exists()


def test_converters_served_graph_is_not_what_tensorrt_is_given(intent_repository):
    # The served ONNX carries ONNX Runtime's fused operators and the label outputs: the plan
    # must be built from the exported graph instead, and the refusal says so.
    import json

    encoder = json.loads((intent_repository / "manifest.json").read_text())["models"][MODEL]["encoder"]
    with pytest.raises(EngineBuildError, match="plain exported graph") as refusal:
        check_onnx_graph(intent_repository / encoder / "1" / "model.onnx")
    assert "com.microsoft:" in str(refusal.value)


@pytest.mark.skipif(HAS_GPU, reason="checks the message given where there is no GPU")
def test_without_a_gpu_the_build_says_what_to_do_instead(tmp_path):
    with pytest.raises(GpuUnavailableError) as refusal:
        build_engine(token_graph(tmp_path / "tokens.onnx"), tmp_path / "model.plan", profile=token_profile())
    assert str(refusal.value) == GPU_REQUIRED
    assert "--target cpu" in GPU_REQUIRED and "docker-compose.yml" in GPU_REQUIRED


def test_bindings_must_match_the_systems_libnvinfer(tmp_path, monkeypatch):
    # The layout of an NGC image: libnvinfer.so.10 -> libnvinfer.so.10.16.0 on the loader path.
    (tmp_path / "libnvinfer.so.10.16.0").write_bytes(b"")
    (tmp_path / "libnvinfer.so.10").symlink_to("libnvinfer.so.10.16.0")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert tensorrt_engine.system_tensorrt_version() == "10.16.0"
    check_bindings_match_system("10.16.0.72")
    with pytest.raises(EngineBuildError, match="bindings are 10.15.1.29 but this image's TensorRT .* is 10.16.0"):
        check_bindings_match_system("10.15.1.29")


@pytest.mark.skipif(tensorrt_engine.bindings_version() is not None, reason="TensorRT bindings are installed here")
def test_strict_version_check_fails_without_tensorrt():
    result = subprocess.run([sys.executable, "-m", "convert.tensorrt_engine", "--strict"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "need both" in result.stderr
    assert '"bindings": null' in result.stdout


# ---------------------------------------------------------------- GPU host only

@pytest.fixture(scope="module")
def spec():
    from convert.source import resolve_model_spec

    return resolve_model_spec(MODEL)


@pytest.fixture(scope="module")
def reference(spec):
    from convert.reference import build_reference

    return build_reference(spec)


@pytest.fixture(scope="module")
def exported_onnx(reference, tmp_path_factory) -> Path:
    """The graph the converter exports, before ONNX Runtime's fusions: what TensorRT parses."""
    from convert.export import export_onnx

    return export_onnx(reference, tmp_path_factory.mktemp("export") / "exported.onnx")


@pytest.fixture(scope="module")
def tokenizer(spec):
    from convert.python_models.tokenizer_model import load_tokenizer

    return load_tokenizer(spec.checkpoint / "tokenizer.json", max_length=128)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from convert.sentences import validation_sentences

    return validation_sentences()


def compared_output(reference) -> str:
    return "probabilities" if "probabilities" in reference.output_names else "embedding"


def reference_rows(reference, tokenizer, texts: list[str]) -> np.ndarray:
    """The FP32 PyTorch reference, one text at a time (no padding can leak in)."""
    from convert.python_models.tokenizer_model import encode
    from convert.validate import reference_outputs

    with_types = "token_type_ids" in reference.input_names
    feeds = [encode(tokenizer, [text], with_types) for text in texts]
    return reference_outputs(reference.model, feeds, reference.output_names.index(compared_output(reference)))


@pytest.fixture(scope="module")
def expected(reference, tokenizer, texts) -> np.ndarray:
    return reference_rows(reference, tokenizer, texts)


@pytest.fixture(scope="module")
def gpu_repository(tmp_path_factory) -> Path:
    """`python -m convert minilm-intent --target gpu` as the convert service runs it."""
    out = tmp_path_factory.mktemp("gpu") / "repository"
    result = subprocess.run([sys.executable, "-m", "convert", MODEL, "--target", "gpu", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, f"the GPU build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


def _tensorrt():
    return pytest.importorskip("tensorrt", reason="TensorRT Python bindings are not installed (use the convert image)")


def _onnxruntime_with(provider: str):
    import onnxruntime

    if provider not in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has no {provider} (install onnxruntime-gpu for the GPU tests)")
    return onnxruntime


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_engine_builds_from_the_converters_onnx(exported_onnx, reference, tmp_path):
    trt = _tensorrt()
    profile = {name: ((1, 1), (16, 64), (32, 128)) for name in reference.input_names}
    timings = []
    for attempt in ("cold", "with timing cache"):
        info = build_engine(exported_onnx, tmp_path / "model.plan", profile=profile, fp16=True,
                            timing_cache=tmp_path / "timing.cache")
        timings.append(f"{attempt} {info.build_seconds:.1f} s")
    print(f"\nTensorRT {info.tensorrt_version} on {info.gpu_name} (sm {info.compute_capability}): "
          f"{', '.join(timings)}; {info.plan_bytes / 1e6:.1f} MB; {info.fp32_layers} layers pinned FP32")

    assert info.fp16 and (tmp_path / "timing.cache").stat().st_size > 0
    assert info.typing == "strong" or info.fp32_layers > 0, "LayerNorm/Softmax/Reduce must be kept FP32"
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine((tmp_path / "model.plan").read_bytes())
    assert engine is not None, "the plan does not deserialize in this TensorRT"
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert sorted(names) == sorted(reference.input_names + reference.output_names)
    for name, (low, opt, high) in profile.items():
        assert [tuple(s) for s in engine.get_tensor_profile_shape(name, 0)] == [low, opt, high]


@pytest.mark.gpu
@needs_gpu
def test_converter_builds_the_gpu_repository_with_a_plan(gpu_repository):
    import json

    entry = json.loads((gpu_repository / "manifest.json").read_text())["models"][MODEL]
    assert entry["target"] == "gpu"
    plans = [gpu_repository / folder / "1" / "model.plan" for folder in entry["folders"]
             if (gpu_repository / folder / "1" / "model.plan").is_file()]
    assert plans, f"no tensorrt_plan model among {entry['folders']}"
    print(f"\nmanifest TensorRT facts: {entry.get('tensorrt')}")
    assert entry.get("tensorrt"), "the manifest must record the TensorRT version and GPU of the plan"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_served_encoder_matches_pytorch_within_fp16_tolerance(provider, gpu_repository, reference, tokenizer,
                                                              texts, expected, tmp_path):
    import json

    from convert.python_models.tokenizer_model import encode

    onnxruntime = _onnxruntime_with(provider)
    encoder = json.loads((gpu_repository / "manifest.json").read_text())["models"][MODEL]["encoder"]
    options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": str(tmp_path)} if provider == "TensorrtExecutionProvider" else {}
    session = onnxruntime.InferenceSession(str(gpu_repository / encoder / "1" / "model.onnx"),
                                           providers=[(provider, options), "CUDAExecutionProvider"])
    output, with_types = compared_output(reference), "token_type_ids" in reference.input_names

    single = np.concatenate([session.run([output], encode(tokenizer, [text], with_types))[0] for text in texts])
    order = np.random.default_rng(0).permutation(len(texts))   # short texts padded beside long ones
    batched = np.empty_like(single)
    for start in range(0, len(texts), 16):
        chunk = order[start:start + 16]
        batched[chunk] = session.run([output], encode(tokenizer, [texts[i] for i in chunk], with_types))[0]

    single_error, batched_error = np.abs(single - expected).max(), np.abs(batched - expected).max()
    print(f"\n{provider}: max |Δ {output}| one by one {single_error:.2e}, in padded batches {batched_error:.2e} "
          f"over {len(texts)} texts")
    assert single_error <= FP16_MAX_ABS and batched_error <= FP16_MAX_ABS


# ---------------------------------------------------------------- against a running GPU server

def text_of_tokens(tokenizer, words: list[str], tokens: int) -> tuple[str, int]:
    """The longest prefix of `words` that tokenizes to at most `tokens` tokens (with [CLS]/[SEP])."""
    text, count = "", 2
    for word in words:
        candidate = f"{text} {word}".strip()
        length = len(tokenizer.encode(candidate).ids)
        if length > tokens:
            break
        text, count = candidate, length
    return text, count


@pytest.mark.gpu
@needs_gpu
@pytest.mark.skipif(not os.environ.get("TRITON_GPU_URL"), reason="set TRITON_GPU_URL=host:8001 of a running GPU server")
def test_end_to_end_latency_at_16_and_128_tokens(reference, tokenizer, texts):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(os.environ["TRITON_GPU_URL"])
    assert client.is_model_ready(MODEL), f"{MODEL} is not ready on {os.environ['TRITON_GPU_URL']}"
    words = max(texts, key=len).split()   # an over-length passage: well past 128 tokens
    unlimited = tokenizer.encode(" ".join(words))
    assert len(unlimited.ids) == 128, "the served tokenizer truncates at 128 tokens"
    output = compared_output(reference).upper()

    for tokens in (16, 128):
        text, count = text_of_tokens(tokenizer, words, tokens)
        request = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        request.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        for _ in range(20):   # warm-up, not timed
            client.infer(MODEL, [request])
        latencies = []
        for _ in range(200):
            started = time.perf_counter()
            result = client.infer(MODEL, [request])
            latencies.append((time.perf_counter() - started) * 1000)
        served = result.as_numpy(output)[0]
        error = np.abs(served - reference_rows(reference, tokenizer, [text])[0]).max()
        latencies.sort()
        print(f"\nend to end, gRPC, batch 1, {count} tokens: p50 {statistics.median(latencies):.2f} ms, "
              f"p90 {latencies[int(0.9 * len(latencies))]:.2f} ms, max |Δ {output}| {error:.2e}")
        assert error <= FP16_MAX_ABS
    client.close()
