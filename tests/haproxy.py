"""HAProxy in front of Triton replicas, as an ingress would put it: HTTP and gRPC (h2c),
round-robin, each replica health-checked on its /v2/health/ready, and requests that found
a replica gone (refused, or closed without an answer) sent to another one by HAProxy.

For the tests only (Debian package `haproxy`, 2.6 here); a deployment's ingress or load
balancer carries the same settings in its own terms.
"""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 10.0

# What HAProxy retries by itself: the connection failed, or the server closed it without
# an answer (Triton 2.51 cuts requests in flight when it stops). Inference has no side
# effects, so sending it again is safe; a timeout is not retried.
RETRY_ON = "conn-failure empty-response junk-response 503"


@dataclass(frozen=True)
class Backend:
    name: str            # "r0"
    http_address: str    # "127.0.0.1:8000": the health check always goes here
    grpc_address: str


def haproxy_binary() -> str | None:
    """$HAPROXY, else haproxy on PATH, else the Debian package's /usr/sbin/haproxy (not on a
    plain user's PATH)."""
    for candidate in (os.environ.get("HAPROXY"), shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def config_text(backends: list[Backend], http_port: int, grpc_port: int, stats_port: int) -> str:
    """haproxy.cfg: one frontend per protocol on 127.0.0.1, one backend each over all replicas,
    and HAProxy's statistics page (its retry and redispatch counts)."""
    lines = [
        "global", "    maxconn 512",
        "defaults", "    mode http", "    timeout connect 2s", "    timeout client 60s", "    timeout server 60s",
        "    retries 3", "    option redispatch 1", f"    retry-on {RETRY_ON}", "    option http-buffer-request",
        "frontend http_in", f"    bind 127.0.0.1:{http_port}", "    default_backend triton_http",
        "frontend grpc_in", f"    bind 127.0.0.1:{grpc_port} proto h2", "    default_backend triton_grpc",
        "frontend stats", f"    bind 127.0.0.1:{stats_port}", "    stats enable", "    stats uri /stats",
    ]
    check = "check inter 500ms fall 1 rise 1"
    for backend_name, protocol in (("triton_http", "http"), ("triton_grpc", "grpc")):
        lines += [f"backend {backend_name}", "    balance roundrobin",
                  "    option httpchk GET /v2/health/ready", "    http-check expect status 200"]
        for backend in backends:
            if protocol == "http":
                lines.append(f"    server {backend.name} {backend.http_address} {check}")
            else:   # h2c to Triton's gRPC port; the health check over HTTP/1.1 to its HTTP port
                http_port_of_replica = backend.http_address.rsplit(":", 1)[1]
                lines.append(f"    server {backend.name} {backend.grpc_address} proto h2 {check} "
                             f"port {http_port_of_replica} check-proto h1")
    return "\n".join(lines) + "\n"


class HAProxy:
    """haproxy -db (foreground) with a config written to `folder`; stop() ends it."""

    def __init__(self, folder: Path, backends: list[Backend], http_port: int, grpc_port: int,
                 stats_port: int) -> None:
        self.config = folder / "haproxy.cfg"
        self.config.write_text(config_text(backends, http_port, grpc_port, stats_port))
        self.http_address, self.grpc_address = f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
        self.stats_url = f"http://127.0.0.1:{stats_port}/stats;csv"
        self.log = folder / "haproxy.log"
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> "HAProxy":
        check = subprocess.run([haproxy_binary(), "-c", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses {self.config}: {check.stdout}{check.stderr}")
        with open(self.log, "wb") as log:
            self._process = subprocess.Popen([haproxy_binary(), "-db", "-f", str(self.config)],
                                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while not self._answers_ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not pass /v2/health/ready through within {timeout_s:.0f} s; "
                                   f"its log: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def backend_counts(self) -> dict[str, dict[str, int]]:
        """Per backend (triton_http, triton_grpc): requests HAProxy sent again (retries: same server,
        redispatches: another one), and the responses it had to make up itself (5xx)."""
        with urllib.request.urlopen(self.stats_url, timeout=5) as answer:
            rows = csv.DictReader(io.StringIO(answer.read().decode().lstrip("# ")))
            return {row["pxname"]: {"retries": int(row["wretr"] or 0), "redispatches": int(row["wredis"] or 0),
                                    "5xx": int(row["hrsp_5xx"] or 0)}
                    for row in rows if row["svname"] == "BACKEND"}

    def _answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_address}/v2/health/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False
