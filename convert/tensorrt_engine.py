"""A TensorRT engine (the `model.plan` of Triton's tensorrt_plan backend) from an ONNX file.

A plan only loads in the TensorRT version that built it, on the GPU model it was built
for. So plans are built by the `convert` service of docker-compose.yml, inside the same
NGC image version that serves them and on the serving host's GPU, and `build_engine`
refuses Python bindings whose version differs from the image's own libnvinfer.

TensorRT is imported lazily: it exists only on GPU hosts, never in requirements.txt.
Everything before the build (the ONNX graph, the profile shapes, the GPU) is checked
first, so that mistakes fail in seconds with a message that says what to do.

`python -m convert.tensorrt_engine` prints the GPUs and TensorRT versions it sees and
exits non-zero when the bindings do not match the system TensorRT (the Dockerfile runs it).
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

GPU_REQUIRED = ("TensorRT engines can only be built on a machine with an NVIDIA GPU; use --target cpu "
                "or run the convert service of docker-compose.yml on a GPU host")

Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]   # input name -> (min, opt, max)

# ONNX op domains TensorRT's parser reads; ONNX Runtime's fusions live in "com.microsoft".
STANDARD_DOMAINS = ("", "ai.onnx")
# CUdevice_attribute values from cuda.h: compute capability major and minor.
_CC_MAJOR, _CC_MINOR = 75, 76
# Distributions that ship the `tensorrt` Python module, newest naming first.
_BINDINGS_DISTRIBUTIONS = ("tensorrt-cu13", "tensorrt-cu12", "tensorrt")


class GpuUnavailableError(RuntimeError):
    """No NVIDIA GPU is usable here, so no engine can be built."""


class EngineBuildError(RuntimeError):
    """TensorRT could not build the engine; the message says why and what to do."""


@dataclass(frozen=True)
class GpuDevice:
    name: str
    compute_capability: str      # "7.5" for a T4; "" when the driver did not say


@dataclass(frozen=True)
class EngineInfo:
    """What was built, for the repository's manifest (JSON-ready through dataclasses.asdict)."""
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict[str, dict[str, list[int]]]   # input -> {"min", "opt", "max"}
    fp16: bool
    typing: str                  # "weak" (TensorRT 10: flags + per-layer FP32) or "strong" (11+: from the graph)
    fp32_layers: int             # layers pinned to FP32 by us (weak typing only)
    workspace_bytes: int
    timing_cache: str | None
    plan_bytes: int
    build_seconds: float


# ---------------------------------------------------------------- the GPU

def _cuda_driver_devices() -> list[GpuDevice] | None:
    """GPUs through the CUDA driver API; None when the driver library is not installed at all."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count, device = ctypes.c_int(0), ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []   # a driver without a usable device (a container started without the GPU)
    devices = []
    for ordinal in range(count.value):
        if cuda.cuDeviceGet(ctypes.byref(device), ordinal) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        cuda.cuDeviceGetName(name, ctypes.c_int(len(name)), device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
        devices.append(GpuDevice(name.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return devices


def _nvidia_smi_devices() -> list[GpuDevice]:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        listing = subprocess.run([executable, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.rsplit(",", 1) for line in listing.splitlines() if line.strip()]
    return [GpuDevice(row[0].strip(), row[1].strip() if len(row) > 1 else "") for row in rows]


def gpu_devices() -> list[GpuDevice]:
    """The NVIDIA GPUs this process can use, without importing torch or TensorRT."""
    devices = _cuda_driver_devices()
    return devices if devices is not None else _nvidia_smi_devices()


def gpu_available() -> bool:
    return bool(gpu_devices())


def _require_gpu() -> GpuDevice:
    devices = gpu_devices()
    if not devices:
        raise GpuUnavailableError(GPU_REQUIRED)
    return devices[0]   # TensorRT builds for the current CUDA device, ordinal 0 by default


# ---------------------------------------------------------------- TensorRT versions

def bindings_version() -> str | None:
    """Version of the installed `tensorrt` Python bindings, read without importing them."""
    for distribution in _BINDINGS_DISTRIBUTIONS:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


# Where NGC images and NVIDIA's packages put libnvinfer, besides LD_LIBRARY_PATH and ldconfig's cache.
_USUAL_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/tensorrt/lib",
                       "/opt/tensorrt/lib")


def _library_dirs() -> list[Path]:
    dirs = [Path(entry) for entry in os.environ.get("LD_LIBRARY_PATH", "").split(":") if entry]
    dirs += [Path(entry) for entry in _USUAL_LIBRARY_DIRS]
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    dirs += [Path(line.rsplit("=>", 1)[1].strip()).parent for line in listing.splitlines() if "libnvinfer.so." in line]
    # The pip wheel's own copy (site-packages/tensorrt_libs) is what the bindings load, not the system's.
    return [d for d in dict.fromkeys(dirs) if "site-packages" not in d.parts and "dist-packages" not in d.parts]


def system_tensorrt_version() -> str | None:
    """major.minor.patch of the system libnvinfer, the one Triton's TensorRT backends load."""
    for directory in _library_dirs():
        for library in sorted(directory.glob("libnvinfer.so.*")):
            match = re.search(r"libnvinfer\.so\.(\d+\.\d+\.\d+)", os.path.realpath(library))
            if match:
                return match.group(1)
    return None


def check_bindings_match_system(bindings: str | None = None) -> None:
    """A plan built by other bindings than the server's TensorRT would not load in Triton."""
    bindings = bindings or bindings_version()
    system = system_tensorrt_version()
    if bindings is None or system is None:
        return   # nothing to compare: no bindings yet, or no system TensorRT (a plain GPU box)
    if bindings.split(".")[:3] != system.split("."):
        raise EngineBuildError(
            f"the TensorRT Python bindings are {bindings} but this image's TensorRT (libnvinfer) is {system}: "
            f"a plan they build would not load in Triton. Install tensorrt-cu13=={system}.* (the image's exact "
            f"version; docker build --build-arg TENSORRT_VERSION=...) instead")


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise EngineBuildError("the TensorRT Python bindings are not installed; build plans with the convert "
                               "service of docker-compose.yml, whose image installs the ones matching the "
                               "server's TensorRT") from None
    return tensorrt


# ---------------------------------------------------------------- checks before any GPU work

def _graph_inputs(model) -> dict[str, list[int]]:
    """Runtime inputs of an ONNX graph -> dims, -1 where dynamic."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        inputs[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return inputs


def check_onnx_graph(onnx_path: Path) -> dict[str, list[int]]:
    """The file exists and holds only operators TensorRT's ONNX parser knows; returns its inputs."""
    import onnx

    if not onnx_path.is_file():
        raise EngineBuildError(f"no ONNX file at {onnx_path}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    foreign = sorted({f"{node.domain}:{node.op_type}" for node in model.graph.node
                      if node.domain not in STANDARD_DOMAINS})
    if foreign:
        raise EngineBuildError(
            f"{onnx_path.name} holds operators TensorRT cannot parse ({', '.join(foreign)}): these are ONNX "
            f"Runtime's fusions or ML ops. Build the engine from the plain exported graph (before the transformer "
            f"optimizer and before label outputs are added)")
    return _graph_inputs(model)


def check_profile(profile: Profile, graph_inputs: dict[str, list[int]]) -> None:
    """One (min, opt, max) per graph input, same rank, min <= opt <= max, fixed dims respected."""
    missing, unknown = set(graph_inputs) - set(profile), set(profile) - set(graph_inputs)
    if missing or unknown:
        raise ValueError(f"the profile must give shapes for exactly the graph's inputs {sorted(graph_inputs)}; "
                         f"missing {sorted(missing)}, not inputs {sorted(unknown)}")
    for name, shapes in profile.items():
        if len(shapes) != 3:
            raise ValueError(f"profile[{name!r}] must be (min, opt, max) shapes, got {shapes!r}")
        dims = graph_inputs[name]
        for label, shape in zip(("min", "opt", "max"), shapes):
            if len(shape) != len(dims) or any(d < 1 for d in shape):
                raise ValueError(f"profile[{name!r}] {label} shape {tuple(shape)} must have {len(dims)} "
                                 f"positive dimensions (the input is {dims})")
            fixed_mismatch = [i for i, d in enumerate(dims) if d != -1 and shape[i] != d]
            if fixed_mismatch:
                raise ValueError(f"profile[{name!r}] {label} shape {tuple(shape)} changes the fixed "
                                 f"dimension(s) {fixed_mismatch} of the input {dims}")
        low, opt, high = shapes
        if not all(a <= b <= c for a, b, c in zip(low, opt, high)):
            raise ValueError(f"profile[{name!r}] needs min <= opt <= max in every dimension, "
                             f"got {tuple(low)}, {tuple(opt)}, {tuple(high)}")


# ---------------------------------------------------------------- the build

def _make_logger(trt):
    class CollectingLogger(trt.ILogger):
        """Keeps TensorRT's errors for the exception message; warnings go to logging."""

        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            level = int(severity)   # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, VERBOSE 4
            if level <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
            elif level == int(trt.ILogger.Severity.WARNING):
                log.warning("TensorRT: %s", msg)

    return CollectingLogger()


def _major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def _parse(trt, builder, logger, onnx_path: Path):
    # TensorRT 10 and later only have explicit-batch networks; 8.x needed the flag.
    flags = 0 if _major(trt) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):   # from the file: external weights resolve beside it
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path.name}: "
                               + "; ".join(errors or logger.errors))
    return network, parser


def _is_float(trt, tensor) -> bool:
    return tensor.dtype in (trt.float32, trt.float16)


def _overflows_in_fp16(trt, layer) -> bool:
    """LayerNorm, softmax, powers, square roots and reductions: sums of squares and exponentials
    leave FP16's range (65504) on real activations, so they stay FP32."""
    kind = layer.type
    if kind in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE):
        return True
    if kind == trt.LayerType.ELEMENTWISE:
        layer.__class__ = trt.IElementWiseLayer       # TensorRT's Python idiom to reach the subclass
        return layer.op == trt.ElementWiseOperation.POW
    if kind == trt.LayerType.UNARY:
        layer.__class__ = trt.IUnaryLayer
        return layer.op == trt.UnaryOperation.SQRT
    return False


def _pin_fp32_layers(trt, network) -> int:
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        outputs = [layer.get_output(i) for i in range(layer.num_outputs)]
        # Integer and shape arithmetic (ReduceMean over shapes, say) has no float precision to pin.
        if not outputs or not all(_is_float(trt, t) and not t.is_shape_tensor for t in outputs):
            continue
        if not _overflows_in_fp16(trt, layer):
            continue
        layer.precision = trt.float32
        for i in range(layer.num_outputs):
            layer.set_output_type(i, trt.float32)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer
            layer.compute_precision = trt.float32
        pinned += 1
    return pinned


def _graph_has_fp16(trt, network) -> bool:
    return any(layer.get_output(i).dtype == trt.float16
               for layer in (network.get_layer(n) for n in range(network.num_layers))
               for i in range(layer.num_outputs))


def _set_precision(trt, network, config, fp16: bool) -> tuple[str, int]:
    """TensorRT 10: weak typing, FP16 allowed by flag, overflow-prone layers pinned to FP32.
    TensorRT 11 removed weak typing: precision comes from the graph's own types."""
    if _major(trt) >= 11:
        if fp16 and not _graph_has_fp16(trt, network):
            raise EngineBuildError(
                f"TensorRT {trt.__version__} builds strongly typed networks only: an FP16 engine needs a graph "
                f"that is already FP16 (with LayerNorm/Softmax/Pow/Reduce kept FP32 by casts). Pass such an "
                f"ONNX, or fp16=False for an FP32 engine")
        return "strong", 0
    if not fp16:
        return "weak", 0
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    return "weak", _pin_fp32_layers(trt, network)


def _add_profile(builder, config, profile: Profile) -> None:
    optimisation_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.items():
        optimisation_profile.set_shape(name, tuple(low), tuple(opt), tuple(high))
    config.add_optimization_profile(optimisation_profile)


def _attach_timing_cache(config, path: Path | None) -> None:
    """Reuse tactic timings of earlier builds; a cache from another GPU or TensorRT starts over."""
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("timing cache %s does not fit this GPU/TensorRT; starting a new one", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _write_atomically(path: Path, data) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as file:
        file.write(memoryview(data))
    os.replace(temporary, path)
    return path.stat().st_size


def build_engine(onnx_path: Path, plan_path: Path, *, profile: Profile, fp16: bool = True,
                 timing_cache: Path | None = None, workspace_bytes: int = 2 << 30) -> EngineInfo:
    """Build `plan_path` from `onnx_path` with one optimisation profile.

    `profile` maps every graph input to (min, opt, max) shapes, e.g. for token ids
    ((1, 1), (16, 64), (32, 128)): batch 1..max_batch_size, sequence 1..max_length.
    The ONNX must be the plain exported graph: ONNX Runtime's fused operators do not parse.
    """
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    check_profile(profile, check_onnx_graph(onnx_path))
    device = _require_gpu()
    trt = _import_tensorrt()
    check_bindings_match_system(trt.__version__)

    started = time.perf_counter()
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)   # the parser must outlive the network
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    _add_profile(builder, config, profile)
    typing, pinned = _set_precision(trt, network, config, fp16)
    _attach_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT could not build the engine: "
                               + "; ".join(logger.errors[-5:] or ["no reason given"]))
    plan_bytes = _write_atomically(plan_path, serialized)
    if timing_cache is not None:
        _write_atomically(timing_cache, config.get_timing_cache().serialize())

    return EngineInfo(
        tensorrt_version=trt.__version__, gpu_name=device.name, compute_capability=device.compute_capability,
        profile={name: {"min": list(low), "opt": list(opt), "max": list(high)}
                 for name, (low, opt, high) in profile.items()},
        fp16=fp16, typing=typing, fp32_layers=pinned, workspace_bytes=workspace_bytes,
        timing_cache=str(timing_cache) if timing_cache is not None else None,
        plan_bytes=plan_bytes, build_seconds=round(time.perf_counter() - started, 2))


# ---------------------------------------------------------------- python -m convert.tensorrt_engine

def main(argv: list[str] | None = None) -> int:
    """Print what this machine offers for engine builds; non-zero when the bindings cannot serve.

    --strict (the Dockerfile's check) also fails when either TensorRT is missing.
    """
    strict = "--strict" in (sys.argv[1:] if argv is None else argv)
    report = {"gpus": [asdict(d) for d in gpu_devices()], "bindings": bindings_version(),
              "system_tensorrt": system_tensorrt_version()}
    print(json.dumps(report, indent=2))
    try:
        if strict and None in (report["bindings"], report["system_tensorrt"]):
            raise EngineBuildError("need both the TensorRT Python bindings and the system libnvinfer to compare")
        check_bindings_match_system(report["bindings"])
    except EngineBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
