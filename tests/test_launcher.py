"""serve/ against the real tritonserver from the nvidia-pytriton wheel, with tiny Python-backend models.

One server (module fixture) serves three models built here: `upper` (strings),
`add_one` (FP32) and `broken` (raises in initialize). Tests that need their own
server (failures at start, stopping, the CLI) use their own small repository, so
their processes can be found by its unique path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from serve import LocalTritonServer, ServerStartError, install
from serve.logs import load_failures, read_log
from serve.process import ProcessesLeftBehind, _wait_until_group_gone, group_members, terminate
from tests.conftest import serve_cli, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent

UPPER_PY = """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
                upper = np.array([[t.decode("utf-8").upper().encode("utf-8") for t in row] for row in texts],
                                 dtype=object)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("UPPER", upper)]))
            return responses
"""

ADD_ONE_PY = """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            return [
                pb_utils.InferenceResponse([pb_utils.Tensor(
                    "Y", pb_utils.get_input_tensor_by_name(request, "X").as_numpy() + 1.0)])
                for request in requests
            ]
"""

BROKEN_PY = """
    class TritonPythonModel:
        def initialize(self, args):
            raise RuntimeError("broken on purpose: weights.bin is missing")
"""


# ----- building model repositories -------------------------------------------------------

def write_python_model(repository: Path, name: str, source: str,
                       inputs: list[tuple[str, int, list[int]]],
                       outputs: list[tuple[str, int, list[int]]]) -> None:
    """A Python-backend model folder: config.pbtxt from the ModelConfig protobuf + 1/model.py."""
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=8)
    for tensor_name, data_type, dims in inputs:
        config.input.add(name=tensor_name, data_type=data_type, dims=dims)
    for tensor_name, data_type, dims in outputs:
        config.output.add(name=tensor_name, data_type=data_type, dims=dims)
    version = repository / name / "1"
    version.mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    (version / "model.py").write_text(textwrap.dedent(source))


def add_upper(repository: Path) -> None:
    write_python_model(repository, "upper", UPPER_PY,
                       [("TEXT", mc.TYPE_STRING, [1])], [("UPPER", mc.TYPE_STRING, [1])])


def add_add_one(repository: Path) -> None:
    write_python_model(repository, "add_one", ADD_ONE_PY,
                       [("X", mc.TYPE_FP32, [4])], [("Y", mc.TYPE_FP32, [4])])


def add_broken(repository: Path) -> None:
    write_python_model(repository, "broken", BROKEN_PY,
                       [("X", mc.TYPE_FP32, [4])], [("Y", mc.TYPE_FP32, [4])])


# ----- helpers ------------------------------------------------------------------------------

def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (a unique repository path finds one server's processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # exited while we looked
    return found


def stub_shm_regions(repository: Path) -> list[Path]:
    """The /dev/shm regions named on the command lines of the stubs serving `repository`."""
    regions = []
    for pid in processes_mentioning(str(repository)):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if argv[0].endswith(b"triton_python_backend_stub"):
            regions.append(Path("/dev/shm") / argv[2].decode())
    return regions


def client_for(server: LocalTritonServer, protocol: str):
    if protocol == "grpc":
        return grpcclient.InferenceServerClient(server.grpc_url), grpcclient
    return httpclient.InferenceServerClient(server.http_url), httpclient


def admin_headers(server: LocalTritonServer, protocol: str) -> dict[str, str]:
    return server.admin_grpc_headers if protocol == "grpc" else server.admin_http_headers


def infer_add_one(server: LocalTritonServer, protocol: str, values: np.ndarray) -> np.ndarray:
    client, module = client_for(server, protocol)
    tensor = module.InferInput("X", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    return client.infer("add_one", [tensor]).as_numpy("Y")


# ----- the shared server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("serve") / "models"
    add_upper(repository)
    add_add_one(repository)
    add_broken(repository)
    return repository


@pytest.fixture(scope="module")
def server(repository: Path):
    # explicit mode, so that load/unload (restricted) can be exercised with the key.
    with LocalTritonServer(repository, model_control="explicit", load_models=["*"],
                           allow_load_failures=True, log_file=repository.parent / "server.log") as running:
        yield running


@pytest.mark.live
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_serves_strings(server: LocalTritonServer, protocol: str) -> None:
    client, module = client_for(server, protocol)
    texts = np.array([["hello"], ["größe über"]], dtype=object)
    tensor = module.InferInput("TEXT", list(texts.shape), "BYTES")
    tensor.set_data_from_numpy(texts)
    upper = client.infer("upper", [tensor]).as_numpy("UPPER")
    assert [row[0].decode("utf-8") for row in upper] == ["HELLO", "GRÖSSE ÜBER"]


@pytest.mark.live
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_serves_fp32(server: LocalTritonServer, protocol: str) -> None:
    values = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(infer_add_one(server, protocol, values), values + 1.0)


@pytest.mark.live
def test_urls_metrics_and_ready_models(server: LocalTritonServer) -> None:
    assert server.http_url.startswith("127.0.0.1:") and server.grpc_url.startswith("127.0.0.1:")
    assert len({server.http_url, server.grpc_url, server.metrics_url}) == 3
    assert sorted(server.ready_models()) == ["add_one", "upper"]
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert b'nv_inference_request_success{model="upper"' in response.read()


@pytest.mark.live
def test_failed_model_is_reported_in_tritons_words(server: LocalTritonServer) -> None:
    failures = server.model_load_failures()
    assert list(failures) == ["broken"]
    assert "RuntimeError: broken on purpose: weights.bin is missing" in failures["broken"]
    # The same reason is in the log, which is what is left to read once the server is gone.
    assert "broken on purpose" in load_failures(read_log(server.log_path))["broken"]
    assert grpcclient.InferenceServerClient(server.grpc_url).is_model_ready("upper")


@pytest.mark.live
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_repository_api_refused_without_key(server: LocalTritonServer, protocol: str) -> None:
    client, _ = client_for(server, protocol)
    wrong_key = {name: "guessed-key" for name in admin_headers(server, protocol)}
    for call in (lambda: client.unload_model("add_one"), lambda: client.load_model("broken"),
                 lambda: client.get_model_repository_index(), lambda: client.get_log_settings(),
                 lambda: client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
                 lambda: client.unload_model("add_one", headers=wrong_key)):
        with pytest.raises(InferenceServerException, match="restricted"):
            call()
    assert client.is_model_ready("add_one")
    values = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_allclose(infer_add_one(server, protocol, values), values + 1.0)


@pytest.mark.live
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_repository_api_works_with_key(server: LocalTritonServer, protocol: str) -> None:
    client, _ = client_for(server, protocol)
    headers = admin_headers(server, protocol)
    client.unload_model("add_one", headers=headers)
    assert wait_for(lambda: not client.is_model_ready("add_one"))
    client.load_model("add_one", headers=headers)
    assert client.is_model_ready("add_one")
    values = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_allclose(infer_add_one(server, protocol, values), values + 1.0)
    assert "add_one" in str(client.get_model_repository_index(headers=headers))
    assert "log_verbose_level" in str(client.get_log_settings(headers=headers))


# ----- errors at start ------------------------------------------------------------------------

@pytest.mark.live
def test_taken_port_is_named(repository: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = LocalTritonServer(repository, grpc_port=port)
        with pytest.raises(ServerStartError, match=rf"gRPC port {port} on 127\.0\.0\.1 is already in use"):
            server.start()
    assert server.pid is None


def test_missing_repository_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repository"
    with pytest.raises(ServerStartError, match=rf"model repository {missing} does not exist"):
        LocalTritonServer(missing).start()


def test_empty_repository_is_named(tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ServerStartError, match="holds no model"):
        LocalTritonServer(tmp_path).start()


@pytest.mark.live
def test_failing_model_stops_the_start_by_default(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    add_broken(repository)
    with pytest.raises(ServerStartError) as raised:
        LocalTritonServer(repository, log_file=tmp_path / "server.log").start()
    message = str(raised.value)
    assert "broken: Internal: RuntimeError: broken on purpose: weights.bin is missing" in message
    assert "allow_load_failures=True" in message
    assert processes_mentioning(str(repository)) == []


@pytest.mark.live
def test_early_exit_quotes_the_log(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    add_add_one(repository)
    with pytest.raises(ServerStartError, match="(?s)exited during startup.*unrecognized option '--no-such-flag'"):
        LocalTritonServer(repository, extra_args=["--no-such-flag"]).start()


# ----- stopping -----------------------------------------------------------------------------

@pytest.mark.live
@pytest.mark.parametrize("how", ["stop", "crash then stop"])
def test_stop_leaves_no_process_or_shared_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 how: str) -> None:
    repository = tmp_path / "models"
    add_add_one(repository)
    monkeypatch.setenv("TRITON_ADMIN_KEY", "key-from-the-environment")
    server = LocalTritonServer(repository, log_file=tmp_path / "server.log").start()
    try:
        assert server.admin_key == "key-from-the-environment"
        index = httpclient.InferenceServerClient(server.http_url).get_model_repository_index(
            headers={"triton-admin-key": "key-from-the-environment"})
        assert [model["name"] for model in index] == ["add_one"]
        regions = stub_shm_regions(repository)
        assert len(processes_mentioning(str(repository))) == 2 and len(regions) == 1  # server + stub
        assert all(region.exists() for region in regions)
        if how == "crash then stop":
            os.kill(server.pid, signal.SIGKILL)  # the stub is left behind, its region too
    finally:
        server.stop()
    assert processes_mentioning(str(repository)) == []
    assert not any(region.exists() for region in regions)
    server.stop()  # twice is harmless


@pytest.mark.live
def test_server_follows_a_launcher_that_dies(tmp_path: Path) -> None:
    """A launcher killed with SIGKILL cannot stop its server; the kernel's death signal does."""
    repository = tmp_path / "models"
    add_add_one(repository)
    launcher_code = textwrap.dedent("""
        import os, time
        from serve import LocalTritonServer
        server = LocalTritonServer(os.environ["TEST_REPOSITORY"]).start()
        print("ready", flush=True)
        time.sleep(600)
    """)
    # The path goes in the environment, so that only the server and its stub name it.
    launcher = subprocess.Popen([sys.executable, "-c", launcher_code], cwd=REPO_ROOT,
                                env={**os.environ, "TEST_REPOSITORY": str(repository)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert launcher.stdout.readline().strip() == "ready", launcher.stderr.read()
        assert len(processes_mentioning(str(repository))) == 2  # server + stub
    finally:
        launcher.kill()
        launcher.wait()
    assert wait_for(lambda: processes_mentioning(str(repository)) == [])


# ----- install and the command line ----------------------------------------------------------

def test_install_copies_the_tree_once(tmp_path: Path) -> None:
    installed = install(tmp_path / "tritonserver")
    assert os.access(installed.binary, os.X_OK) and os.access(installed.stub, os.X_OK)
    assert (installed.backend_directory / "python" / "libtriton_python.so").is_file()
    assert (installed.cache_directory / "local" / "libtritoncache_local.so").is_file()
    assert not (installed.root / "python_backend_stubs").exists()
    stamp = installed.root / ".installed"
    written = stamp.stat().st_mtime_ns
    assert install(tmp_path / "tritonserver") == installed
    assert stamp.stat().st_mtime_ns == written  # the second call copied nothing


@pytest.mark.live
def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    add_add_one(repository)
    with serve_cli("--model-repository", str(repository)) as (cli, banner):
        banner_text = "\n".join(banner)
        assert "ready     add_one" in banner_text, banner_text + cli.stderr.read()
        http_url = next(line.split()[1] for line in banner if line.strip().startswith("HTTP"))
        assert httpclient.InferenceServerClient(http_url).is_model_ready("add_one")
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    assert processes_mentioning(str(repository)) == []


def test_terminate_returns_only_when_the_whole_group_is_gone() -> None:
    """An orphan left by a killed leader is still exiting when SIGKILL returns: terminate waits."""
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    assert wait_for(lambda: len(group_members(leader.pid)) == 3, timeout_s=10)  # leader, two sleeps
    os.kill(leader.pid, signal.SIGKILL)  # as a crashed tritonserver leaves its stubs behind
    terminate(leader, grace_s=1)
    assert group_members(leader.pid) == []


def test_a_group_that_does_not_go_is_named() -> None:
    survivor = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        with pytest.raises(ProcessesLeftBehind, match=rf"processes \[{survivor.pid}\]"):
            _wait_until_group_gone(survivor.pid, timeout_s=0.2)
    finally:
        survivor.kill()
        survivor.wait()
