"""Faults, against the real tritonserver: a Python-backend process killed under load, the
server restarted under its clients, models unloaded and reloaded while requests flow, and
a corrupt or a missing model file.

Every test counts what its requests got (sent, answered, failed, by error type), asserts
that the failures are bounded and typed, and prints the figures: run with `-s` to see them.
Tests that change models work on a copy of the repository.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import tritonclient.http

from client import AsyncEncoderClient, ClientError, EncoderClient, ModelNotReady, ServerUnreachable
from client.errors import BackendCrashed, ModelUnavailable
from serve import LocalTritonServer
from serve.ports import free_port
from tests.conftest import PROTOCOLS, serve_cli, url, wait_for

ENSEMBLE = "minilm-intent"
ENCODER = "minilm-intent-encoder"
TOKENIZER = "minilm-intent-tokenizer"
FUSED = "minilm-intent-fused"
TEXT = ("Hey, I'd like to rent a vehicle from Nov 1st to Nov 15th in Paris and I need a 15 passenger van")
LABEL = "car_rental"
REQUEST_TIMEOUT_S = 10.0
HEALTHCHECK = Path(__file__).resolve().parents[1] / "serve" / "healthcheck.py"
HANG_S = 60.0          # a request still running after this long is a hang, whatever its timeout says


# ----- load: threads sending one request after another, recording every outcome -------------------

@dataclass(frozen=True)
class Outcome:
    client: str
    started: float                 # time.monotonic()
    seconds: float
    label: str | None = None
    error: ClientError | None = None

    @property
    def finished(self) -> float:
        return self.started + self.seconds


@dataclass
class Load:
    """One thread per named `send` callable, each calling it in a loop until stopped."""
    senders: dict[str, Callable[[], str]]
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=item, daemon=True)
                         for item in self.senders.items()]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=HANG_S)
        hung = [thread.name for thread in self._threads if thread.is_alive()]
        assert not hung, f"requests still running {HANG_S:.0f} s after the load stopped: {hung}"

    def _loop(self, name: str, send: Callable[[], str]) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            label, error = None, None
            try:
                label = send()
            except ClientError as raised:
                error = raised
            outcome = Outcome(name, started, time.monotonic() - started, label, error)
            with self._lock:
                self.outcomes.append(outcome)
            time.sleep(0.02)

    def of(self, client: str) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.client == client]

    def failed(self, clients: set[str] | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None and (clients is None or o.client in clients)]

    def summary(self) -> str:
        errors = collections.Counter(type(o.error).__name__ for o in self.outcomes if o.error is not None)
        answered = sum(o.error is None for o in self.outcomes)
        slowest = max((o.seconds for o in self.outcomes), default=0.0)
        return (f"sent {len(self.outcomes)}, answered {answered}, failed {sum(errors.values())} "
                f"{dict(errors)}, slowest request {slowest:.2f} s")


def classify_with(client: EncoderClient) -> Callable[[], str]:
    return lambda: client.classify([TEXT])[0].label


class AsyncDriver:
    """An AsyncEncoderClient living in its own event loop, driven from other threads."""

    def __init__(self, client_url: str, **settings: object) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.client = AsyncEncoderClient(client_url, **settings)
        self._run(self.client.open())

    def classify(self) -> str:
        return self._run(self.client.classify([TEXT]))[0].label

    def close(self) -> None:
        self._run(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=HANG_S)


def first_answer_after(load: Load, client: str, moment: float) -> float | None:
    """When the first request `client` sent after `moment` was answered, or None."""
    return min((o.finished for o in load.of(client) if o.error is None and o.started > moment), default=None)


def copy_repository(source: Path, destination: Path) -> Path:
    """A real copy (no hard links): tests write into it, the original must stay untouched."""
    shutil.copytree(source, destination)
    return destination


def report(title: str, *lines: str) -> None:
    print(f"\n[{title}]", *lines, sep="\n  ")


# ----- a Python-backend process killed -------------------------------------------------------------

def test_a_killed_python_backend_process_is_restored_while_requests_retry_through(intent_repository, caplog):
    caplog.set_level(logging.INFO, logger="client")   # one record per retry
    with LocalTritonServer(intent_repository) as server:
        stubs = server.python_stubs()
        encoder_stub, fused_stub = stubs[f"{ENCODER}_0_0"], stubs[f"{FUSED}_0_0"]
        clients = {protocol: EncoderClient(url(server, protocol), timeout_s=REQUEST_TIMEOUT_S)
                   for protocol in PROTOCOLS}
        clients["fused"] = EncoderClient(url(server, "grpc"), model=FUSED, timeout_s=REQUEST_TIMEOUT_S)
        try:
            with Load({name: classify_with(client) for name, client in clients.items()}) as load:
                time.sleep(1.0)
                killed_at = time.monotonic()
                os.kill(encoder_stub.pid, signal.SIGKILL)
                assert wait_for(lambda: server.restorations, timeout_s=30), "the watchdog did not reload the model"
                time.sleep(2.0)
        finally:
            for client in clients.values():
                client.close()
        restored = server.python_stubs()

    [restoration] = server.restorations
    assert (restoration.model, restoration.dead_pid, restoration.error) == (ENCODER, encoder_stub.pid, None)
    assert restored[f"{ENCODER}_0_0"].pid != encoder_stub.pid
    assert restored[f"{FUSED}_0_0"].pid == fused_stub.pid            # the other model was left alone
    ensemble = {"grpc", "http"}
    answered_at = sorted(o.finished for o in load.outcomes if o.client in ensemble and o.error is None)
    longest_silence = max(later - earlier for earlier, later in zip(answered_at, answered_at[1:]))
    retried = collections.Counter(record.getMessage().split(": ")[1] for record in caplog.records
                                  if record.name == "client" and record.getMessage().startswith("retry"))
    report("stub killed under load", load.summary(), f"attempts that failed and were retried: {dict(retried)}",
           f"watchdog: noticed {restoration.noticed_at - killed_at:.2f} s after the kill, "
           f"model reloaded in {restoration.seconds:.2f} s",
           f"longest time without an answer on the ensemble clients: {longest_silence:.2f} s")
    assert retried["BackendCrashed"] > 0, "the kill hit no request: the test did not exercise the fault"
    assert all(o.label == LABEL for o in load.outcomes if o.error is None)
    assert not load.failed({"fused"}), "the fused model, in its own process, must not notice"
    # The retries ride through the restore; allow each ensemble client one give-up on a slow machine.
    failures = load.failed(ensemble)
    assert len(failures) <= len(ensemble), [str(o.error) for o in failures]
    assert all(isinstance(o.error, (BackendCrashed, ModelUnavailable)) for o in failures)
    assert all(o.error is None for o in load.outcomes if o.started > restoration.noticed_at + restoration.seconds)


def container_healthcheck(server: LocalTritonServer, model: str) -> subprocess.CompletedProcess:
    """serve/healthcheck.py run as a plain script, as the serving image's HEALTHCHECK runs it."""
    return subprocess.run([sys.executable, str(HEALTHCHECK), "--url", f"http://{server.http_url}", "--model", model],
                          capture_output=True, text=True, timeout=30, cwd="/")


def test_without_the_watchdog_triton_leaves_the_model_down_and_the_client_says_why(intent_repository):
    """Triton 2.51 alone: the model stays READY, every request fails with the dead stub's name;
    the container healthcheck (an inference, not /v2/health/ready) is the one check that sees it."""
    with LocalTritonServer(intent_repository, restore_crashed_models=False) as server:
        healthy = container_healthcheck(server, ENSEMBLE)
        unknown = container_healthcheck(server, "no-such-model")
        os.kill(server.python_stubs()[f"{ENCODER}_0_0"].pid, signal.SIGKILL)
        # The signal is delivered, not yet acted on, when kill returns: check once the process is gone.
        assert wait_for(lambda: f"{ENCODER}_0_0" not in server.python_stubs(), timeout_s=30)
        after_kill = container_healthcheck(server, ENSEMBLE)
        with EncoderClient(url(server, "grpc"), retries=1, timeout_s=REQUEST_TIMEOUT_S) as client, \
                EncoderClient(url(server, "http"), model=FUSED, timeout_s=REQUEST_TIMEOUT_S) as fused:
            for _ in range(2):  # still down a few seconds later: nothing restarts it
                with pytest.raises(BackendCrashed) as raised:
                    client.classify([TEXT])
                time.sleep(1.0)
            assert fused.classify([TEXT])[0].label == LABEL
        # Readiness does not see the dead process: why the watchdog watches processes instead.
        triton = tritonclient.http.InferenceServerClient(server.http_url)
        assert triton.is_server_ready() and triton.is_model_ready(ENCODER) and triton.is_model_ready(ENSEMBLE)
        assert f"{ENCODER}_0_0" not in server.python_stubs()
        assert server.restorations == []
    message = str(raised.value)
    report("stub killed, no watchdog", message, "healthcheck: " + after_kill.stderr.strip())
    assert healthy.returncode == 0 and f"healthy: {ENSEMBLE} answers" in healthy.stdout
    assert unknown.returncode == 1 and "no-such-model" in unknown.stderr, unknown.stderr
    assert after_kill.returncode == 1 and f"Stub process '{ENCODER}_0_0' is not healthy" in after_kill.stderr
    assert f"Stub process '{ENCODER}_0_0' is not healthy" in message and "gave up after 2 attempts" in message


# ----- the server restarted under its clients -----------------------------------------------------

SETTLE_S = 2.0   # after the new server is ready, every request must be answered


def test_clients_reconnect_to_a_server_restarted_on_the_same_ports(intent_repository):
    ports = {f"{role}_port": free_port("127.0.0.1") for role in ("http", "grpc", "metrics")}
    with contextlib.ExitStack() as cleanup:
        first = LocalTritonServer(intent_repository, **ports).start()
        cleanup.callback(first.stop)
        senders = {}
        for protocol in PROTOCOLS:   # every client is created before the restart and kept after it
            client = EncoderClient(url(first, protocol), timeout_s=REQUEST_TIMEOUT_S)
            driver = AsyncDriver(url(first, protocol), timeout_s=REQUEST_TIMEOUT_S)
            cleanup.callback(client.close)
            cleanup.callback(driver.close)
            senders |= {protocol: classify_with(client), f"async-{protocol}": driver.classify}
        with Load(senders) as load:
            time.sleep(1.0)
            stopping = time.monotonic()
            first.stop()
            time.sleep(1.0)   # nothing listens: connections are refused
            with LocalTritonServer(intent_repository, **ports) as second:
                restarted = time.monotonic()
                assert wait_for(lambda: all(first_answer_after(load, name, restarted) for name in senders),
                                timeout_s=30), load.summary()
                time.sleep(max(0.5, restarted + SETTLE_S + 1.0 - time.monotonic()))
                load.stop()
                assert second.grpc_url == first.grpc_url and second.http_url == first.http_url

    gap = [o for o in load.outcomes if o.finished > stopping and o.started < restarted]
    report("server restarted on the same ports", load.summary(),
           f"from stop() to the new server ready: {restarted - stopping:.1f} s (Triton's exit, a 1 s pause, "
           f"the new start); {len(gap)} requests overlapped the gap, "
           f"{sum(o.error is not None for o in gap)} of them failed",
           *(f"{name}: first answer {first_answer_after(load, name, restarted) - restarted:.2f} s "
             "after the new server was ready" for name in senders))
    # During the gap a call raises ServerUnreachable, or ModelUnavailable while the stopping
    # server unloads its models; never anything else, and never before the stop.
    assert all(isinstance(o.error, (ServerUnreachable, ModelUnavailable)) for o in load.failed())
    assert all(o.finished > stopping for o in load.failed())
    assert all(o.label == LABEL for o in load.outcomes if o.error is None)
    # gRPC reconnects on its own schedule (backoff capped at 1 s by client/transport.py).
    settled = [o for o in load.outcomes if o.started > restarted + SETTLE_S]
    assert {o.client for o in settled} == set(senders), load.summary()
    assert all(o.error is None for o in settled), [str(o.error) for o in settled if o.error]


# ----- models unloaded and reloaded while requests flow ------------------------------------------

def test_unloading_and_reloading_models_under_load_ends_every_request(intent_repository, tmp_path):
    repository = copy_repository(intent_repository, tmp_path / "models")
    with LocalTritonServer(repository, model_control="explicit", load_models=["*"]) as server:
        clients = {"ensemble-grpc": EncoderClient(url(server, "grpc"), timeout_s=REQUEST_TIMEOUT_S),
                   "ensemble-http": EncoderClient(url(server, "http"), timeout_s=REQUEST_TIMEOUT_S),
                   "fused-grpc": EncoderClient(url(server, "grpc"), model=FUSED, timeout_s=REQUEST_TIMEOUT_S)}
        admin = tritonclient.http.InferenceServerClient(server.http_url)
        cycles = 2
        try:
            with Load({name: classify_with(client) for name, client in clients.items()}) as load:
                for _ in range(cycles):
                    for model in (FUSED, ENSEMBLE):
                        time.sleep(0.5)
                        admin.unload_model(model, headers=server.admin_http_headers)
                        assert wait_for(lambda: model not in server.ready_models(), timeout_s=30)
                        time.sleep(0.3)   # requests meet the model gone
                        admin.load_model(model, headers=server.admin_http_headers)
                        assert model in server.ready_models()
                time.sleep(1.0)
                reloaded = time.monotonic()
                time.sleep(1.0)
        finally:
            for client in clients.values():
                client.close()
        assert server.restorations == []   # unloading on purpose is no crash

    failures = load.failed()
    report("unload + reload under load", load.summary(), *sorted({str(o.error)[:200] for o in failures}))
    assert all(isinstance(o.error, ClientError) for o in failures)
    assert all(o.seconds < REQUEST_TIMEOUT_S for o in load.outcomes)   # retries included, none even timed out
    assert all(o.label == LABEL for o in load.outcomes if o.error is None)
    # Each unload leaves its model gone for the 0.3 s pause plus the load (about a second); the
    # retries (0.7-1.4 s of backoff) bridge most of it: at most 2 give-ups per client and window.
    assert len(failures) <= cycles * 2 * len(clients), [str(o.error) for o in failures]
    after = [o for o in load.outcomes if o.started > reloaded]
    assert {o.client for o in after} == set(clients) and all(o.error is None for o in after)


# ----- corrupt or missing model files -------------------------------------------------------------

def test_a_corrupt_onnx_file_fails_its_model_and_the_others_keep_serving(intent_repository, tmp_path):
    repository = copy_repository(intent_repository, tmp_path / "models")
    onnx = repository / ENCODER / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:4096] + b"not protobuf" * 64)   # a cut-off, garbled download
    with LocalTritonServer(repository, allow_load_failures=True) as server:
        failures = server.model_load_failures()
        ready = server.ready_models()
        with EncoderClient(url(server, "grpc"), model=FUSED, timeout_s=REQUEST_TIMEOUT_S) as fused:
            answers = [p.label for p in fused.classify([TEXT] * 3)]
        with pytest.raises(ModelNotReady, match=f"unknown model: '{ENSEMBLE}'"):
            EncoderClient(url(server, "http"), retries=0)
    report("corrupt model.onnx", f"ready: {ready}", *(f"{name}: {reason.splitlines()[0]}"
                                                      for name, reason in failures.items()))
    assert set(failures) == {ENCODER, ENSEMBLE}
    assert "INVALID_PROTOBUF" in failures[ENCODER] and str(onnx) in failures[ENCODER]
    assert f"ensemble '{ENSEMBLE}' depends on '{ENCODER}'" in failures[ENSEMBLE]
    assert sorted(ready) == [FUSED, TOKENIZER]
    assert answers == [LABEL] * 3


def test_a_missing_tokenizer_file_is_named_by_python_m_serve_and_the_fused_model_serves(intent_repository,
                                                                                         tmp_path):
    repository = copy_repository(intent_repository, tmp_path / "models")
    (repository / TOKENIZER / "1" / "tokenizer.json").unlink()
    with serve_cli("--model-repository", str(repository), "--allow-load-failures") as (cli, banner):
        text = "\n".join(banner)
        assert "Ctrl-C to stop" in text, text + cli.stderr.read()
        grpc_address = next(line.split()[1] for line in banner if line.strip().startswith("gRPC"))
        with EncoderClient(f"grpc://{grpc_address}", model=FUSED, timeout_s=REQUEST_TIMEOUT_S) as fused:
            answer = fused.classify([TEXT])[0].label
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
    report("missing tokenizer.json, python -m serve", *[line for line in banner if "FAILED" in line or "ready" in line])
    assert f"ready     {ENCODER}, {FUSED}" in text
    failed_line = next(line for line in banner if f"FAILED    {TOKENIZER}:" in line)
    assert "FileNotFoundError: tokenizer file " in failed_line, failed_line
    assert f"{TOKENIZER}/1/tokenizer.json is missing" in failed_line and f"[at {TOKENIZER}/1/model.py:" in failed_line
    assert f"FAILED    {ENSEMBLE}: Invalid argument: ensemble '{ENSEMBLE}' depends on '{TOKENIZER}'" in text
    assert answer == LABEL
