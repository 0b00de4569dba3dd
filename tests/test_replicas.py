"""Many replicas: three real tritonservers serving the same repository, one client spreading
its requests over them (gRPC's round-robin channel, the client's HTTP rotation), and what
happens when replicas are stopped with SIGTERM and started again under load.

Each server loads only the fused model (one Python-backend process per server) to spare
the 2-core machine. Every test waits for states (a replica serving again, counts that
stopped moving), with generous bounds, never for luck. Run with `-s` for the figures
(docs/client-replicas.md quotes them).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc
import tritonclient.grpc.aio
import tritonclient.http.aio

from client import AsyncEncoderClient, AttemptCounts, EncoderClient, InputRejected, RequestTimeout, ServerUnreachable
from client.errors import is_retryable, translate
from client.replicas import REFRESH_S, Replicas
from client.transport import grpc_targets, resolve_addresses
from serve.ports import free_port
from tests.conftest import PROTOCOLS, ROOT, wait_for
from tests.test_faults import LABEL, TEXT, Load, report

MODEL = "minilm-intent-fused"
REPLICAS = 3
REQUESTS = 2400                 # per protocol, for the fair-share test
FAIR_SHARE = 0.40               # every replica within ±40 % of the mean
REQUEST_TIMEOUT_S = 20.0
REJOIN_TIMEOUT_S = 90.0         # a restarted replica serves the clients again within this
STARTUP_TIMEOUT_S = 180.0       # python -m serve ready (loading on 2 busy cores)
STOP_TIMEOUT_S = 60.0           # Triton's 3 s exit timeout, unloading, the launcher's own exit


class Replica:
    """One server, run by `python -m serve` in a process of its own, on ports fixed for the module
    so that it can be stopped (SIGTERM, which the launcher passes on to tritonserver at once) and
    started again on the same ports.

    Why not LocalTritonServer in this process: starting a server forks, and forking the test
    process while its clients' gRPC threads run once crashed the child before it could exec
    (SIGSEGV, empty log). `python -m serve` is started without running Python in the child."""

    def __init__(self, repository, ports: list[int], log_folder) -> None:
        self.http_port, self.grpc_port, self.metrics_port = ports
        self.http_url, self.grpc_url = f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}"
        self.log = log_folder / f"serve-{self.grpc_port}.log"
        self._command = [sys.executable, "-m", "serve", "--model-repository", str(repository),
                         "--model-control", "explicit", "--load-model", MODEL, "--http-port", str(self.http_port),
                         "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port)]
        self._process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and return once /v2/health/ready answers (the time.monotonic() of that)."""
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(self._command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"python -m serve on {self.grpc_url} did not get ready: "
                                     f"{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        return time.monotonic()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def signal_stop(self) -> None:
        """SIGTERM, without waiting."""
        self._process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM, and wait until the launcher (and with it tritonserver) has exited."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"python -m serve on {self.grpc_url} still ran {STOP_TIMEOUT_S:.0f} s "
                                     f"after SIGTERM: {self.log.read_text()[-3000:]}") from None

    def restart(self) -> float:
        """Stop (SIGTERM), then start on the same ports; returns when it is ready."""
        self.stop()
        return self.start()

    def served(self) -> int:
        """Requests this server has answered since it started (Triton's own count, read once)."""
        if not self.is_running():
            return 0
        with tritonclient.grpc.InferenceServerClient(self.grpc_url) as triton:
            stats = triton.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        return int(stats["inference_stats"].get("success", {}).get("count", 0))

    def served_settled(self) -> int:
        """The same once two reads 0.2 s apart agree (Triton counts just after it answers)."""
        previous = self.served()
        for _ in range(25):
            time.sleep(0.2)
            current = self.served()
            if current == previous:
                return current
            previous = current
        raise AssertionError(f"the count on {self.grpc_url} kept moving with no load")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"Replica(grpc {self.grpc_url}, http {self.http_url}, {'running' if self.is_running() else 'stopped'})"


def distinct_free_ports(count: int) -> list[int]:
    """`count` ports free now and all different (the OS can hand out the same free port twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port("127.0.0.1")
        if port not in ports:
            ports.append(port)
    return ports


@pytest.fixture(scope="module")
def replicas(intent_repository, tmp_path_factory):
    ports, logs = distinct_free_ports(3 * REPLICAS), tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as cleanup:
        started = []
        for index in range(REPLICAS):
            replica = Replica(intent_repository, ports[3 * index:3 * index + 3], logs)
            cleanup.callback(replica.stop)
            replica.start()
            started.append(replica)
        yield started


def replicas_url(replicas: list[Replica], protocol: str) -> str:
    """grpc://a:p,b:p,c:p (or http://...): the list form of the client's URL."""
    addresses = [r.grpc_url if protocol == "grpc" else r.http_url for r in replicas]
    return f"{protocol}://{','.join(addresses)}"


def ensure_all_running(replicas: list[Replica]) -> None:
    """A test that failed half-way may leave a replica stopped: the next one starts from three."""
    for replica in replicas:
        if not replica.is_running():
            replica.start()


# ----- no server needed: the rotation's rules ------------------------------------------------------

class Scripted:
    """A stand-in transport that answers with its name or raises what it is told to."""

    def __init__(self, name: str) -> None:
        self.name, self.failure, self.calls, self.closed = name, None, 0, False

    async def infer(self) -> str:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return self.name

    async def close(self) -> None:
        self.closed = True


def scripted_replicas(names, resolve=None) -> tuple[Replicas, dict[str, Scripted]]:
    opened: dict[str, Scripted] = {}

    def open_member(name: str) -> Scripted:
        opened[name] = Scripted(name)
        return opened[name]

    return Replicas(names, open_member, tritonclient.http, AttemptCounts(), resolve), opened


def call_many(replicas: Replicas, count: int) -> list[str]:
    async def calls() -> list[str]:
        return [await replicas.run(lambda transport: transport.infer(), "classify") for _ in range(count)]
    return asyncio.run(calls())


def test_the_rotation_takes_members_in_turn_and_sends_a_call_elsewhere_only_when_safe():
    replicas, members = scripted_replicas(["a:1", "b:1", "c:1"])
    assert call_many(replicas, 6) == ["a:1", "b:1", "c:1"] * 2
    members["b:1"].failure = ConnectionRefusedError(111, "Connection refused")
    assert call_many(replicas, 4) == ["a:1", "c:1", "a:1", "c:1"]    # b failed over once, then set aside
    assert members["b:1"].calls == 3 and replicas._counts.failovers == {"ServerUnreachable": 1}
    members["a:1"].failure = TimeoutError()                          # may still run there: not sent elsewhere
    with pytest.raises(RequestTimeout):
        call_many(replicas, 2)
    members["a:1"].failure = members["c:1"].failure = ConnectionResetError(104, "reset")
    with pytest.raises(ServerUnreachable, match="replica"):          # every member failed: the caller retries
        call_many(replicas, 1)


def test_a_resolver_is_asked_again_and_members_follow_it():
    answers = [["10.0.0.1:8000", "10.0.0.2:8000"], ["10.0.0.2:8000", "10.0.0.3:8000"]]

    async def resolve(names):
        return answers[0] if resolve.calls == 0 else answers[1]
    resolve.calls = 0
    replicas, members = scripted_replicas(["svc:8000"], resolve)
    assert sorted(set(call_many(replicas, 4))) == answers[0]
    resolve.calls = 1
    replicas._resolved_at -= REFRESH_S                                # as if REFRESH_S had passed
    assert sorted(set(call_many(replicas, 4))) == answers[1]
    asyncio.run(replicas.close())
    assert all(member.closed for member in members.values())          # the one gone from DNS too


def test_grpc_targets_put_ip_addresses_in_one_round_robin_channel_and_names_in_their_own():
    assert grpc_targets(["127.0.0.1:1"]) == ["127.0.0.1:1"]
    assert grpc_targets(["10.0.0.1:1", "10.0.0.2:1", "[::1]:2", "svc:3"]) == [
        "ipv4:10.0.0.1:1,10.0.0.2:1", "[::1]:2", "svc:3"]


def test_an_http_name_is_resolved_to_its_addresses():
    resolved = asyncio.run(resolve_addresses(["localhost:8000", "10.1.2.3:9", "no-such-host.invalid:8000"]))
    assert resolved[-2:] == ["10.1.2.3:9", "no-such-host.invalid:8000"]   # unresolvable: kept, fails when called
    assert resolved[:-2] and all(address.endswith(":8000") for address in resolved[:-2])


# ----- every replica serves a fair share -----------------------------------------------------------

async def send_one_text_requests(url: str, count: int, concurrency: int = 8) -> AsyncEncoderClient:
    async with AsyncEncoderClient(url, model=MODEL, timeout_s=REQUEST_TIMEOUT_S) as client:
        in_flight = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with in_flight:
                return (await client.classify([TEXT]))[0].label

        labels = await asyncio.gather(*(one() for _ in range(count)))
    assert collections.Counter(labels) == {LABEL: count}
    return client


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_replica_serves_a_fair_share(replicas, protocol):
    ensure_all_running(replicas)
    before = [replica.served_settled() for replica in replicas]
    client = asyncio.run(send_one_text_requests(replicas_url(replicas, protocol), REQUESTS))
    served = [replica.served_settled() - earlier for replica, earlier in zip(replicas, before)]
    mean = statistics.mean(served)
    report(f"fair share, {protocol}", f"{REQUESTS} one-text requests, 8 in flight, over {REPLICAS} replicas: "
           f"served {served} (mean {mean:.0f}); {client.attempt_counts}")
    assert sum(served) == REQUESTS, served      # each request answered once, by one replica
    assert all(abs(count - mean) <= FAIR_SHARE * mean for count in served), served


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_address_where_nothing_listens_is_skipped_and_a_rejected_input_is_not_sent_elsewhere(replicas, protocol):
    ensure_all_running(replicas)
    nothing = f"127.0.0.1:{free_port('127.0.0.1')}"
    url = replicas_url(replicas[:2], protocol).replace("://", f"://{nothing},")
    with EncoderClient(url, model=MODEL, timeout_s=REQUEST_TIMEOUT_S) as client:
        labels = [client.classify([TEXT])[0].label for _ in range(12)]
        counts = client.attempt_counts
        skipped = sum(counts.failovers.values()) + sum(counts.retries.values())
        with pytest.raises(InputRejected, match="not valid UTF-8"):
            client.classify([b"\xff\xfe"])
        assert sum(counts.failovers.values()) + sum(counts.retries.values()) == skipped
    report(f"a dead address in the list, {protocol}", f"12 requests answered; {counts}")
    assert labels == [LABEL] * 12
    assert set(counts.failovers) | set(counts.retries) <= {"ServerUnreachable"}
    # HTTP: tried, set aside, tried again after a while, not on every call. gRPC: the round-robin
    # channel never sends a call to an address it could not connect to.
    assert skipped <= 4 and (skipped >= 1 if protocol == "http" else True)


def test_the_command_line_takes_a_list_of_servers(replicas):
    ensure_all_running(replicas)
    url = replicas_url(replicas, "http")
    answer = subprocess.run([sys.executable, "-m", "client", TEXT, "--url", url, "--model", MODEL, "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["label"] == LABEL


# ----- replicas stopped with SIGTERM and started again, under load -------------------------------

@contextlib.contextmanager
def clients_on(urls: dict[str, str]):
    """A sync client per named URL, and a Load sending one text at a time on each."""
    clients = {name: EncoderClient(url, model=MODEL, timeout_s=REQUEST_TIMEOUT_S) for name, url in urls.items()}
    try:
        with Load({name: (lambda c=client: c.classify([TEXT])[0].label) for name, client in clients.items()}) as load:
            yield clients, load
    finally:
        for client in clients.values():
            client.close()


def wait_until_serving(replica: Replica, load: Load) -> None:
    """The clients send to the restarted replica again: its count rises while the load runs."""
    assert wait_for(lambda: replica.served() > 0, timeout_s=REJOIN_TIMEOUT_S), (
        f"{replica} got no request within {REJOIN_TIMEOUT_S:.0f} s of its restart; {load.summary()}")


def urls_of(replicas: list[Replica]) -> dict[str, str]:
    return {protocol: replicas_url(replicas, protocol) for protocol in PROTOCOLS}


def check_no_request_failed(load: Load, clients: dict[str, EncoderClient], title: str, *lines: str) -> None:
    counts = {name: str(client.attempt_counts) for name, client in clients.items()}
    report(title, load.summary(), *lines, *(f"{name}: {text}" for name, text in counts.items()))
    assert not load.failed(), [str(o.error) for o in load.failed()][:5]
    assert {o.client for o in load.outcomes} == set(clients)
    assert all(o.label == LABEL for o in load.outcomes)


def test_one_replica_stopped_with_sigterm_and_started_again_under_load_fails_no_request(replicas):
    ensure_all_running(replicas)
    stopped, others = replicas[0], replicas[1:]
    with clients_on(urls_of(replicas)) as (clients, load):
        time.sleep(1.0)
        signalled = time.monotonic()
        stopped.stop()                            # SIGTERM; returns once the server has exited
        exited = time.monotonic()
        before = [replica.served() for replica in others]
        assert wait_for(lambda: all(r.served() > b for r, b in zip(others, before)), timeout_s=30), load.summary()
        restarted = stopped.start()               # the same ports
        wait_until_serving(stopped, load)
        rejoined = time.monotonic()
    check_no_request_failed(
        load, clients, "one replica SIGTERMed and restarted under load",
        f"SIGTERM to exit: {exited - signalled:.1f} s; down until ready again: {restarted - exited:.1f} s; "
        f"serving the clients again {rejoined - restarted:.1f} s after it was ready")


def restart_one_at_a_time(replicas, load) -> list[str]:
    """Each replica restarted in turn, the next only once the load reaches the last again."""
    timings = []
    for replica in replicas:
        started = time.monotonic()
        ready = replica.restart()
        wait_until_serving(replica, load)
        timings.append(f"{ready - started:.1f} s down, serving {time.monotonic() - ready:.1f} s after ready")
    return timings


def test_a_rolling_restart_of_every_replica_under_load_fails_no_request(replicas):
    ensure_all_running(replicas)
    with clients_on(urls_of(replicas)) as (clients, load):
        time.sleep(1.0)
        timings = restart_one_at_a_time(replicas, load)
    check_no_request_failed(load, clients, "rolling restart of all three under load", *timings)


# ----- what Triton 2.51 does with requests when told to stop ---------------------------------------

@dataclass(frozen=True)
class RawOutcome:
    protocol: str
    started: float
    finished: float
    error: Exception | None


async def raw_load_until(replica: Replica, stop: asyncio.Event, outcomes: list[RawOutcome], workers: int = 6):
    """tritonclient's own aio clients, no retries: requests of 8 texts, one after another per worker."""
    grpc = tritonclient.grpc.aio.InferenceServerClient(replica.grpc_url)
    http = tritonclient.http.aio.InferenceServerClient(replica.http_url, conn_limit=workers)
    texts = np.array([[TEXT.encode()]] * 8, dtype=object)

    async def worker(protocol: str, client, module) -> None:
        tensor = module.InferInput("TEXT", list(texts.shape), "BYTES")
        tensor.set_data_from_numpy(texts)
        while not stop.is_set():
            started, error = time.monotonic(), None
            try:
                await client.infer(MODEL, [tensor])
            except Exception as raised:   # noqa: BLE001 - every outcome is recorded
                error = raised
            outcomes.append(RawOutcome(protocol, started, time.monotonic(), error))
            if error is not None:
                await asyncio.sleep(0.05)

    async def readiness() -> None:   # what a load balancer's health check would see: /v2/health/ready
        probe = tritonclient.http.aio.InferenceServerClient(replica.http_url)
        try:
            while not stop.is_set():
                started, error = time.monotonic(), None
                try:
                    if not await probe.is_server_ready():
                        error = RuntimeError("not ready")
                except Exception as raised:   # noqa: BLE001 - every outcome is recorded
                    error = raised
                outcomes.append(RawOutcome("ready", started, time.monotonic(), error))
                await asyncio.sleep(0.1)
        finally:
            await probe.close()

    try:
        await asyncio.gather(*(worker("grpc", grpc, tritonclient.grpc) for _ in range(workers)),
                             *(worker("http", http, tritonclient.http) for _ in range(workers)), readiness())
    finally:
        await grpc.close()
        await http.close()


def describe(error: Exception) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:110]


def test_what_triton_2_51_does_with_requests_when_sigtermed(replicas):
    """Measured, not wished: Triton keeps taking and answering requests for up to its exit
    timeout while some are in flight, then cuts those still running and closes its ports
    (it does not drain). Every failure a request meets on the way is one the client sends
    to another replica (or retries)."""
    ensure_all_running(replicas)
    replica, outcomes = replicas[2], []

    async def run() -> tuple[float, float]:
        stop = asyncio.Event()
        load = asyncio.create_task(raw_load_until(replica, stop, outcomes))
        await asyncio.sleep(2.0)
        signalled = time.monotonic()
        replica.signal_stop()
        gone = await asyncio.to_thread(wait_for, lambda: not replica.is_running(), STOP_TIMEOUT_S)
        assert gone, f"the server still runs {STOP_TIMEOUT_S:.0f} s after SIGTERM"
        exited = time.monotonic()
        await asyncio.sleep(0.5)
        stop.set()
        await load
        return signalled, exited - signalled

    signalled, exited = asyncio.run(run())
    replica.stop()   # reaps the process; the next test starts it again
    probes = [o for o in outcomes if o.protocol == "ready"]
    last_ready = max(o.started for o in probes if o.error is None) - signalled
    not_ready = sorted((o for o in probes if o.error is not None), key=lambda o: o.started)
    then = f"{not_ready[0].started - signalled:+.2f} s: {describe(not_ready[0].error)}" if not_ready else "never"
    lines = [f"SIGTERM to exit: {exited:.2f} s; /v2/health/ready true until {last_ready:+.2f} s, then at {then}"]
    for protocol in PROTOCOLS:
        lines += timeline([o for o in outcomes if o.protocol == protocol], signalled, protocol)
    outcomes = [o for o in outcomes if o.protocol != "ready"]
    in_flight_at_sigterm = [o for o in outcomes if o.started < signalled < o.finished]
    report("Triton 2.51 told to stop (SIGTERM) under load, no retries",
           f"in flight at SIGTERM: {len(in_flight_at_sigterm)}, "
           f"{sum(o.error is None for o in in_flight_at_sigterm)} answered", *lines)
    # Not asserted, as it depends on the load: whether a request in flight at SIGTERM ends
    # within the exit timeout. Those that do not are cut with the rest.
    assert any(o.error is None and o.started > signalled for o in outcomes), "it stopped serving at once"
    failures = [o.error for o in outcomes if o.error is not None]
    assert failures, "no request met the stop: the test exercised nothing"
    assert all(is_retryable(translate(error, "classify")) for error in failures), \
        sorted({describe(e) for e in failures if not is_retryable(translate(e, "classify"))})


def timeline(outcomes: list[RawOutcome], signalled: float, protocol: str) -> list[str]:
    """When the last answer came, and each kind of failure: how many, first and last seen (s after SIGTERM)."""
    answered = [o for o in outcomes if o.error is None]
    sent_after = [o for o in answered if o.started > signalled]
    lines = [f"{protocol}: {len(sent_after)} requests sent after SIGTERM answered; last answer "
             f"{max(o.finished for o in answered) - signalled:+.2f} s"]
    kinds = collections.defaultdict(list)
    for outcome in outcomes:
        if outcome.error is not None:
            kinds[describe(outcome.error)].append(outcome)
    for kind, seen in sorted(kinds.items(), key=lambda item: item[1][0].finished):
        finished = sorted(o.finished - signalled for o in seen)
        lines.append(f"  {len(seen)} x {finished[0]:+.2f}..{finished[-1]:+.2f} s: {kind}")
    return lines
