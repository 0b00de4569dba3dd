"""Security defaults, checked on the real intent server and in the tracked files.

1. Loading and unloading a model needs the admin key, over gRPC and HTTP; without it (or
   with a wrong one) Triton refuses, while inference goes on and the model stays ready.
2. LocalTritonServer listens on 127.0.0.1 only unless told otherwise: its URLs, and the
   sockets the server process actually listens on.
3. The admin key is nowhere but on the server's command line: not in its log, not in the
   model repository, not in the manifest, not in Triton's refusals.
4. No credentials in the tracked files, the Dockerfile or docker-compose.yml: private
   keys, Hugging Face / AWS / GitHub / Slack tokens, and secrets given a literal value.
"""
from __future__ import annotations

import inspect
import ipaddress
import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpc_client
import tritonclient.http as http_client
from tritonclient.utils import InferenceServerException

from serve import LocalTritonServer
from serve.environment import ADMIN_GRPC_HEADER, ADMIN_HTTP_HEADER

ROOT = Path(__file__).resolve().parents[1]
MODEL = "minilm-intent"
KNOWN = "Hey, I'd like to rent a vehicle from Nov 1st to Nov 15th in Paris and I need a 15 passenger van"
PROTOCOLS = ("grpc", "http")


def raw_client(server, protocol: str):
    if protocol == "grpc":
        return grpc_client.InferenceServerClient(server.grpc_url), grpc_client
    return http_client.InferenceServerClient(server.http_url), http_client


def classify(client, module, text: str) -> str:
    tensor = module.InferInput("TEXT", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
    result = client.infer(MODEL, [tensor], outputs=[module.InferRequestedOutput("LABEL")])
    return result.as_numpy("LABEL")[0, 0].decode()


# ----------------------------------------------------------------- 1. the model-control API is closed

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_load_and_unload_without_the_key_are_refused_while_inference_works(intent_server, protocol):
    client, module = raw_client(intent_server, protocol)
    header = ADMIN_GRPC_HEADER if protocol == "grpc" else ADMIN_HTTP_HEADER
    with client:
        label_before = classify(client, module, KNOWN)
        for operation in (client.load_model, client.unload_model):
            for headers in (None, {header: "not-the-key"}, {header: ""}):
                with pytest.raises(InferenceServerException) as refused:
                    operation(MODEL, headers=headers)
                message = refused.value.message()
                assert "restricted" in message and header in message, message
                assert intent_server.admin_key not in message
                assert client.is_model_ready(MODEL)
        # The refusal is about the key, not a broken API: with it, the repository index opens.
        index = client.get_model_repository_index(headers={header: intent_server.admin_key})
        assert MODEL in str(index)
        assert client.is_model_ready(MODEL)
        assert classify(client, module, KNOWN) == label_before == "car_rental"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shared_memory_registration_without_the_key_is_refused(intent_server, protocol):
    """Registering names a /dev/shm object for Triton to read and write: the key is needed
    (perf's own servers open it, as perf_analyzer cannot send the key over gRPC)."""
    client, module = raw_client(intent_server, protocol)
    header = ADMIN_GRPC_HEADER if protocol == "grpc" else ADMIN_HTTP_HEADER
    with client:
        with pytest.raises(InferenceServerException) as refused:
            client.register_system_shared_memory("probe", "/not-registered-by-this-test", 64)
        assert "restricted" in refused.value.message() and header in refused.value.message()
        status = client.get_system_shared_memory_status(headers={header: intent_server.admin_key})
        assert "probe" not in str(status)
        assert classify(client, module, KNOWN) == "car_rental"


# ----------------------------------------------------------------- 2. loopback only by default

def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    process = psutil.Process(pid)
    return [(connection.laddr.ip, connection.laddr.port)
            for member in [process, *process.children(recursive=True)]
            for connection in member.net_connections(kind="inet")
            if connection.status == psutil.CONN_LISTEN]


def is_ipv4_loopback_127_0_0_1(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    ip = getattr(ip, "ipv4_mapped", None) or ip   # gRPC listens on ::ffff:127.0.0.1
    return ip == ipaddress.ip_address("127.0.0.1")


def other_local_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (where a remote client would connect)."""
    return [entry.address for entries in psutil.net_if_addrs().values() for entry in entries
            if entry.family == socket.AF_INET and not ipaddress.ip_address(entry.address).is_loopback]


def test_the_local_server_listens_on_127_0_0_1_only_by_default(intent_server):
    assert inspect.signature(LocalTritonServer).parameters["host"].default == "127.0.0.1"
    assert intent_server.host == "127.0.0.1"   # the session fixture passes no host
    for url in (intent_server.http_url, intent_server.grpc_url, intent_server.metrics_url):
        assert "127.0.0.1:" in url, url
    sockets = listening_sockets(intent_server.pid)
    ports = {int(url.rsplit(":", 1)[1].split("/")[0])
             for url in (intent_server.http_url, intent_server.grpc_url, intent_server.metrics_url)}
    assert {port for _, port in sockets} == ports, sockets
    assert all(is_ipv4_loopback_127_0_0_1(address) for address, _ in sockets), sockets
    # Seen from another interface of this machine, the ports are closed.
    for address in other_local_addresses()[:2]:
        for port in ports:
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()


# ----------------------------------------------------------------- 3. the key stays on the command line

def files_holding(text: str, folder: Path) -> list[Path]:
    needle = text.encode()
    return [path for path in folder.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_the_admin_key_is_in_no_log_repository_file_or_manifest(intent_server):
    key = intent_server.admin_key
    assert len(key) >= 32
    # The one place it is, by Triton's design (documented in serve/environment.py): the
    # command line. Finding it there shows the search below looks for the real key.
    assert any(key in argument for argument in psutil.Process(intent_server.pid).cmdline())
    log = intent_server.log_path.read_text(errors="replace")
    assert "Started GRPCInferenceService" in log   # the log of this very server
    assert key not in log
    assert files_holding(key, intent_server.model_repository) == []
    assert key not in (intent_server.model_repository / "manifest.json").read_text()


# ----------------------------------------------------------------- 4. no credentials in the tree

SECRET_WORDS = r"(?:PASSWORD|PASSWD|SECRET|API_KEY|ACCESS_KEY|AUTH_TOKEN|HF_TOKEN|ADMIN_KEY|PRIVATE_KEY)"
CREDENTIAL_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    # A secret-named environment variable given a value in ENV/ARG, a shell script or a
    # compose file (CONFIG_FILES only). A reference (${...}, $NAME, $(...)) or an empty
    # value is how it should look.
    "secret variable with a value": re.compile(
        rf"(?m)^\s*(?:ENV\s+|ARG\s+|export\s+|-\s+)?[A-Z0-9_]*{SECRET_WORDS}\s*[=:]\s*"
        rf"(?![\"']?\$)[\"']?[^\s\"'$#]{{8,}}"),
    # In code: a secret-named name given a string literal.
    "secret string literal": re.compile(rf"(?i)\b\w*{SECRET_WORDS}\b[\"']?\s*[=:]\s*[\"'](?!\$)[^\"'\s]{{8,}}[\"']"),
}
CONFIG_FILES = re.compile(r"(^|/)(Dockerfile[^/]*|Makefile|[^/]*\.(ya?ml|sh|env|ini|cfg|toml|conf))$")
NEVER_TRACKED = re.compile(r"(^|/)(\.env|id_rsa|id_ed25519|.*\.pem|.*\.p12|.*\.key|credentials(\.json)?)$")


def credential_findings(name: str, text: str) -> list[str]:
    """"file:line: kind" for each match; variable assignments count only in CONFIG_FILES."""
    patterns = {kind: pattern for kind, pattern in CREDENTIAL_PATTERNS.items()
                if kind != "secret variable with a value" or CONFIG_FILES.search(name)}
    return [f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {kind}"
            for kind, pattern in patterns.items() for match in pattern.finditer(text)]


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name]


def test_the_scan_finds_planted_credentials():
    """Fakes assembled at run time (so that this file holds none): each is found, and every
    pattern finds one; what the project's own files legitimately hold is not flagged."""
    planted = [
        "-----BEGIN " + "RSA PRIVATE KEY-----",
        "token = '" + "hf_" + "a1B2" * 9 + "'",
        "AKIA" + "ABCDEFGHIJ234567",
        "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY",
        "gh" + "p_" + "x" * 36,
        "xo" + "xb-1234567890-abcdef",
        "ENV TRITON_ADMIN" + "_KEY=s3cr3t-value-123",
        "    HF_TO" + "KEN: hf-literal-value",
        'client(admin_' + 'key="k3y-literal-in-code")',
    ]
    kinds = set()
    for line in planted:
        found = credential_findings("Dockerfile", line)
        assert found, line
        kinds |= {finding.rsplit(": ", 1)[1] for finding in found}
    assert kinds == set(CREDENTIAL_PATTERNS)
    for benign in ("TRITON_ADMIN_KEY: ${TRITON_ADMIN_KEY:-}", 'ADMIN_KEY_ENV = "TRITON_ADMIN_KEY"',
                   'TRITON_ADMIN_KEY="$$(python3 -c ...)"', "admin_key=self._requested_admin_key or None",
                   "with_token_type_ids = True", 'admin_key="k-123"', "ARG TRITON_ADMIN_KEY"):
        assert credential_findings("docker-compose.yml", benign) == [], benign
    assert credential_findings("serve/checks.py", '_ADMIN_KEY = re.compile(r"[A-Za-z0-9._~-]{8,}")') == []


def test_no_credentials_in_the_tracked_files_the_dockerfile_or_compose():
    names = tracked_files()
    assert {"Dockerfile", "docker-compose.yml"} <= set(names) and len(names) > 20
    assert [name for name in names if NEVER_TRACKED.search(name)] == []
    findings = []
    for name in names:
        path = ROOT / name
        if path.is_file():
            findings += credential_findings(name, path.read_bytes().decode("utf-8", errors="replace"))
    assert findings == [], "\n".join(findings)
