"""LocalPrometheus: the real Prometheus binary on this machine, scraping local servers, and its HTTP API.

    targets = [ScrapeTarget("127.0.0.1:8002", {"namespace": "local", "pod": "triton-0"})]
    with LocalPrometheus(targets, rule_files=[RECORDING_RULES]) as prom:
        prom.wait_for("triton_encoders:queue_compute_ratio", lambda result: len(result) == 1)

The binary comes from the Debian package `prometheus` (2.42 here; `scripts/setup.sh` unpacks its
binaries into the venv where apt-get can download it), from PATH, or from $PROMETHEUS. It runs with its own configuration, a temporary TSDB and a
free port, so several can run beside each other and beside a system Prometheus. Each static
target carries the `namespace` and `pod` labels a Kubernetes PodMonitor would add, so the
recording rules and the adapter's query see what they see in a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import yaml

from serve.ports import free_port

BINARY_ENV = "PROMETHEUS"
INSTALL_HINT = ("run scripts/setup.sh on Debian/Ubuntu (it unpacks the package `prometheus` into the venv), "
                "or apt-get install prometheus, or set $PROMETHEUS to a prometheus 2.x binary")
HOST = "127.0.0.1"
START_ATTEMPTS = 3    # a picked port can be taken before Prometheus binds it
POLL_S = 0.25


class PrometheusError(RuntimeError):
    """Prometheus did not start, or its API refused a request; the message quotes it."""


@dataclass(frozen=True)
class ScrapeTarget:
    address: str                 # host:port of a /metrics endpoint
    labels: dict[str, str]       # e.g. {"namespace": ..., "pod": ...}


def find_binary(name: str = "prometheus") -> Path | None:
    """$PROMETHEUS (for `prometheus`; promtool beside it), else the venv's (scripts/setup.sh puts
    the Debian package's binaries there), else the one on PATH; None if none is found."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        candidate = Path(explicit) if name == "prometheus" else Path(explicit).with_name(name)
        return candidate if candidate.is_file() else None
    in_venv = Path(sys.prefix) / "bin" / name
    if in_venv.is_file() and os.access(in_venv, os.X_OK):
        return in_venv
    found = shutil.which(name)
    return Path(found) if found else None


def scrape_config(targets: Iterable[ScrapeTarget], rule_files: Iterable[Path], interval_s: float) -> dict:
    """A prometheus.yml: one job scraping every target at `interval_s`, rules evaluated as often."""
    interval = f"{int(interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "rule_files": [str(Path(path).resolve()) for path in rule_files],
        "scrape_configs": [{
            "job_name": "triton",
            "static_configs": [{"targets": [target.address], "labels": dict(target.labels)} for target in targets],
        }],
    }


class LocalPrometheus:
    """A Prometheus process with its own config and temporary storage; stopped and removed at exit."""

    def __init__(self, targets: Iterable[ScrapeTarget], rule_files: Iterable[Path] = (), *,
                 interval_s: float = 1.0, startup_timeout_s: float = 60.0) -> None:
        self.targets = list(targets)
        self.rule_files = [Path(path) for path in rule_files]
        self.interval_s = interval_s
        self.startup_timeout_s = startup_timeout_s
        self.binary = find_binary()
        self.workdir: Path | None = None
        self.port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise PrometheusError("Prometheus is not started")
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self) -> "LocalPrometheus":
        if self.binary is None:
            raise PrometheusError(f"no prometheus binary found: {INSTALL_HINT}")
        self.workdir = Path(tempfile.mkdtemp(prefix="triton-encoders-prometheus-"))
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(self.targets, self.rule_files, self.interval_s)))
        for attempt in range(1, START_ATTEMPTS + 1):
            self._launch(config)
            try:
                self._wait_ready()
                return self
            except PrometheusError:
                log = self._log_tail()
                self._terminate()
                if "address already in use" in log and attempt < START_ATTEMPTS:
                    continue
                self.stop()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def stop(self) -> None:
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> "LocalPrometheus":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- the HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/) ----------

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query's result list (each item: metric labels and [time, "value"])."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self._get("/api/v1/query", params)["result"]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s}"}
        return self._get("/api/v1/query_range", params)["result"]

    def series(self, match: str) -> list[dict]:
        return self._get("/api/v1/series", {"match[]": match})

    def rules(self) -> list[dict]:
        """Every loaded rule with its health and last error, across groups."""
        return [rule for group in self._get("/api/v1/rules", {})["groups"] for rule in group["rules"]]

    def active_targets(self) -> list[dict]:
        return self._get("/api/v1/targets", {"state": "active"})["activeTargets"]

    def wait_for(self, expr: str, condition: Callable[[list[dict]], bool], timeout_s: float, what: str) -> list[dict]:
        """Poll an instant query until `condition(result)` holds; raise naming `what` and the last result."""
        deadline = time.monotonic() + timeout_s
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if condition(result):
                return result
            time.sleep(POLL_S)
        raise PrometheusError(f"timed out after {timeout_s:.0f} s waiting for {what}; `{expr}` last gave {result}")

    # ----- internals ---------------------------------------------------------------------------

    def _launch(self, config: Path) -> None:
        self.port = free_port(HOST)
        command = [str(self.binary), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                   f"--web.listen-address={HOST}:{self.port}", "--log.level=warn"]
        with self.log_path.open("w") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited ({self._process.returncode}):\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(POLL_S)
        raise PrometheusError(f"prometheus was not ready within {self.startup_timeout_s:.0f} s:\n{self._log_tail()}")

    def _get(self, path: str, params: dict[str, str]) -> dict | list:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:   # 400/422: a bad query; the body says why
            body = json.loads(error.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"
