"""LocalTritonServer: run the real tritonserver on this machine, wait until it serves, stop it cleanly.

    with LocalTritonServer(Path("triton_models")) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)

start() checks the arguments, installs the server tree if needed (serve.install),
starts the binary (serve.process), and polls its HTTP API (serve.health) until every
model is ready or has failed. Failures are reported in Triton's own words.

While it runs, a watchdog (serve.watchdog.StubWatchdog) reloads any model whose
Python-backend process dies, which Triton 2.51 does not do by itself. Reloading needs
Triton's model-repository API, so model_control="none" runs Triton in explicit mode with
every model loaded at start (the API stays restricted to the admin key); pass
restore_crashed_models=False for Triton's plain "none" mode and no watchdog.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Iterable

from .checks import check_admin_key, check_model_control, check_ports, check_repository, warn_if_numpy_2
from .environment import (
    ADMIN_KEY_ENV,
    EXIT_TIMEOUT_S,
    ServerSettings,
    admin_headers,
    server_command,
    server_environment,
)
from .errors import ServerStartError
from .health import HttpProbe, ModelState
from .install import TritonInstall, install
from .logs import (
    LogFollower,
    dependency_failures,
    error_lines,
    last_lines,
    load_failures,
    models_still_loading,
    port_conflicts,
    read_log,
    reason_summary,
)
from .ports import client_host, free_port
from .process import remove_shared_memory, spawn, terminate
from .watchdog import Restoration, Stub, StubWatchdog, python_stubs

logger = logging.getLogger("serve")

STARTUP_TIMEOUT_S = 180.0   # loading ONNX models on 2 busy cores can take a while
STOP_GRACE_S = EXIT_TIMEOUT_S + 10
POLL_S = 0.2
PROGRESS_EVERY_S = 5.0
PORT_ATTEMPTS = 3           # picked ports can be taken by someone else before Triton binds them
_RUNNING: "weakref.WeakSet[LocalTritonServer]" = weakref.WeakSet()


class LocalTritonServer:
    """The tritonserver from the nvidia-pytriton wheel, serving one model repository on the CPU."""

    def __init__(
        self,
        model_repository: Path | str,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,        # None: a free port
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        model_control: str = "none",         # "explicit": only load_models at start, then the load API
        load_models: Iterable[str] | None = None,  # explicit mode only; ["*"] loads all
        log_file: Path | str | None = None,  # None: a fresh temporary file
        log_verbose: int = 0,
        admin_key: str | None = None,        # None: $TRITON_ADMIN_KEY, else a random key per start
        allow_load_failures: bool = False,   # True: serve the models that loaded, report the others
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        stream_log: bool = False,            # copy the server's log to stderr as it is written
        restore_crashed_models: bool = True,  # reload a model whose Python-backend process died
        open_shared_memory_api: bool = False,  # True: shared-memory registration without the admin key
        extra_args: Iterable[str] = (),
    ) -> None:
        self.model_repository = Path(model_repository).expanduser().resolve()
        self.host = host
        self._ports = {"HTTP": http_port, "gRPC": grpc_port, "metrics": metrics_port}
        self.model_control = model_control
        self.load_models = tuple(load_models or ())
        self.log_verbose = log_verbose
        self.allow_load_failures = allow_load_failures
        self.startup_timeout_s = startup_timeout_s
        self.stream_log = stream_log
        self.restore_crashed_models = restore_crashed_models
        self.open_shared_memory_api = open_shared_memory_api
        self.extra_args = tuple(extra_args)
        self._requested_admin_key = admin_key or os.environ.get(ADMIN_KEY_ENV) or None
        self.log_path: Path | None = Path(log_file).expanduser().resolve() if log_file else None
        self._settings: ServerSettings | None = None
        self._process: subprocess.Popen | None = None
        self._follower: LogFollower | None = None
        self._watchdog: StubWatchdog | None = None
        self._restorations: list[Restoration] = []

    # ----- lifecycle -----------------------------------------------------------------

    def start(self) -> "LocalTritonServer":
        """Start the server and return once every model is ready (or has failed, see
        allow_load_failures). Raises ServerStartError, leaving nothing running."""
        if self.is_running():
            return self
        self._check_arguments()
        installed = install()
        warn_if_numpy_2()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._launch(self._resolve_settings(), installed)
            try:
                self._wait_until_ready()
                self._start_watchdog()
                return self
            except ServerStartError:
                conflicts = port_conflicts(read_log(self.log_path))
                self.stop()
                if not (conflicts and self._picks_ports() and attempt < PORT_ATTEMPTS):
                    raise
                logger.warning("a picked port was taken before Triton bound it (%s); retrying", conflicts[0])
            except BaseException:  # Ctrl-C while waiting included: never leave it running
                self.stop()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def stop(self) -> None:
        """Stop the server and every process it started; safe to call twice."""
        self._stop_watchdog()  # first: the stubs going down with the server are no crash
        process, self._process = self._process, None
        if process is None:
            return
        try:
            terminate(process, grace_s=STOP_GRACE_S)
        finally:
            _RUNNING.discard(self)
            if self._settings is not None:
                remove_shared_memory(self._settings.shm_prefix)
            if self._follower is not None:
                self._follower.stop()
                self._follower = None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> "LocalTritonServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- where to reach it -----------------------------------------------------------

    @property
    def http_url(self) -> str:
        """"host:port" as tritonclient.http wants it (no scheme)."""
        return f"{client_host(self.host)}:{self._started().http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{client_host(self.host)}:{self._started().grpc_port}"

    @property
    def metrics_url(self) -> str:
        """"http://host:port/metrics", the Prometheus endpoint."""
        return f"http://{client_host(self.host)}:{self._started().metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exit_code(self) -> int | None:
        """The server's exit status once it has exited on its own; None while it runs."""
        return self._process.poll() if self._process is not None else None

    @property
    def admin_key_from_caller(self) -> bool:
        """True when the key came from admin_key or $TRITON_ADMIN_KEY, False when generated."""
        return self._requested_admin_key is not None

    @property
    def admin_key(self) -> str:
        """The key that opens the restricted model-repository API of this run."""
        return self._started().admin_key

    @property
    def admin_http_headers(self) -> dict[str, str]:
        """Pass as `headers=` to tritonclient.http load_model/unload_model/get_model_repository_index."""
        return admin_headers(self.admin_key)["http"]

    @property
    def admin_grpc_headers(self) -> dict[str, str]:
        """The same for tritonclient.grpc (Triton expects a differently named header there)."""
        return admin_headers(self.admin_key)["grpc"]

    # ----- what it serves --------------------------------------------------------------

    def repository_index(self) -> list[ModelState]:
        return self._probe().repository_index()

    def ready_models(self) -> list[str]:
        return [model.name for model in self.repository_index() if model.state == "READY"]

    def model_load_failures(self) -> dict[str, str]:
        """Model name -> Triton's reason, for each model that failed to load, ensembles
        included (Triton never loads one whose parts failed, and says why only in its log).

        Asked of the running server's repository index; after the server is gone,
        read from its log instead."""
        if not self.is_running():
            return load_failures(read_log(self.log_path)) if self.log_path else {}
        index = self.repository_index()
        never_loaded = {model.name for model in index if model.state == ""}
        dependencies = dependency_failures(read_log(self.log_path))
        return ({name: reason for name, reason in dependencies.items() if name in never_loaded}
                | {model.name: model.reason for model in index if model.failed})

    def python_stubs(self) -> dict[str, Stub]:
        """The live Python-backend processes of this server, by Triton instance name
        ("minilm-intent-encoder_0_0"): pid and model."""
        return python_stubs(self.pid) if self.is_running() else {}

    @property
    def restorations(self) -> list[Restoration]:
        """The models the watchdog reloaded because their Python-backend process died, oldest first."""
        current = self._watchdog.restorations if self._watchdog is not None else []
        return self._restorations + current

    def __repr__(self) -> str:
        where = f"http={self.http_url} grpc={self.grpc_url}" if self.is_running() else "stopped"
        return f"LocalTritonServer({self.model_repository}, {where})"

    # ----- steps of start() --------------------------------------------------------------

    def _check_arguments(self) -> None:
        check_model_control(self.model_control, self.load_models)
        check_admin_key(self._requested_admin_key)
        check_repository(self.model_repository, self.load_models)
        check_ports(self.host, self._ports)

    def _resolve_settings(self) -> ServerSettings:
        """Pick free ports where none were given, and this run's admin key."""
        ports = {role: port or free_port(self.host) for role, port in self._ports.items()}
        while len(set(ports.values())) < len(ports):  # the OS can hand out a port twice
            ports = {role: self._ports[role] or free_port(self.host) for role in ports}
        model_control, load_models = self._triton_model_control()
        return ServerSettings(
            model_repository=self.model_repository,
            host=self.host,
            http_port=ports["HTTP"],
            grpc_port=ports["gRPC"],
            metrics_port=ports["metrics"],
            model_control=model_control,
            load_models=load_models,
            admin_key=self._requested_admin_key or secrets.token_urlsafe(32),
            shm_prefix=f"triton_encoders_{os.getpid()}_{secrets.token_hex(4)}_",
            restrict_shared_memory=not self.open_shared_memory_api,
            log_verbose=self.log_verbose,
            extra_args=self.extra_args,
        )

    def _triton_model_control(self) -> tuple[str, tuple[str, ...]]:
        """The mode Triton runs in. "none" with the watchdog is explicit mode loading every
        model: the same models at start, and the load API the watchdog needs to restore one."""
        if self.model_control == "none" and self.restore_crashed_models:
            return "explicit", ("*",)
        return self.model_control, self.load_models

    def _start_watchdog(self) -> None:
        if self.restore_crashed_models and self._process is not None:
            self._watchdog = StubWatchdog(self._process.pid, self._probe()).start()

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.stop()
            self._restorations += watchdog.restorations

    def _launch(self, settings: ServerSettings, installed: TritonInstall) -> None:
        self._settings = settings
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = server_command(settings, installed)
        logger.info("starting tritonserver on %s (log: %s)", self.model_repository, self.log_path)
        self._process = spawn(command, server_environment(), self.log_path)
        _RUNNING.add(self)
        if self.stream_log:
            self._follower = LogFollower(self.log_path).start()

    def _wait_until_ready(self) -> None:
        """Poll until every model is ready, or all have finished loading and some failed."""
        probe = self._probe()
        started = time.monotonic()
        next_progress = started + PROGRESS_EVERY_S
        while not self._loading_finished(probe):
            now = time.monotonic()
            if now - started > self.startup_timeout_s:
                raise ServerStartError(self._timeout_message())
            if now >= next_progress:
                loading = models_still_loading(read_log(self.log_path)) or ["(starting)"]
                logger.info("waiting for Triton (%.0f s): loading %s", now - started, ", ".join(loading))
                next_progress = now + PROGRESS_EVERY_S
            time.sleep(POLL_S)
        failures = self.model_load_failures()
        if failures and not self.allow_load_failures:
            raise ServerStartError(self._failures_message(failures))
        for name, reason in failures.items():
            logger.warning("model %s failed to load: %s", name, reason_summary(reason))
        logger.info("Triton ready after %.1f s: %s", time.monotonic() - started,
                    ", ".join(self.ready_models()) or "no models loaded")

    def _loading_finished(self, probe: HttpProbe) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise ServerStartError(self._early_exit_message())
        if probe.is_ready():
            return True
        if not probe.is_live():
            return False
        # Live but not ready: with strict readiness, some model is loading or failed.
        try:
            index = probe.repository_index()
        except OSError:  # a busy server answering slowly: ask again on the next poll
            return False
        return not any(model.state == "LOADING" for model in index) and any(model.failed for model in index)

    def _early_exit_message(self) -> str:
        code = self._process.returncode if self._process is not None else None
        log_text = read_log(self.log_path)
        conflicts = port_conflicts(log_text)
        if conflicts:
            return (f"tritonserver could not bind its ports: {conflicts[0]!r}. Free the port or "
                    f"pick others (leave them unset for free ones). Full log: {self.log_path}")
        errors = error_lines(log_text)
        if errors:
            quoted = "\n".join("    " + line for line in errors)
            return (f"tritonserver exited during startup (exit code {code}); it said:\n{quoted}\n"
                    f"Full log: {self.log_path}")
        return (f"tritonserver exited during startup (exit code {code}). "
                f"Last lines of {self.log_path}:\n{last_lines(self.log_path)}")

    def _timeout_message(self) -> str:
        loading = models_still_loading(read_log(self.log_path))
        still = f" Still loading: {', '.join(loading)}." if loading else ""
        return (f"tritonserver was not ready within {self.startup_timeout_s:.0f} s.{still} "
                f"Raise startup_timeout_s (--startup-timeout) if the models are large. "
                f"Last lines of {self.log_path}:\n{last_lines(self.log_path)}")

    def _failures_message(self, failures: dict[str, str]) -> str:
        listed = "\n".join(f"  - {name}: {_indent(reason)}" for name, reason in sorted(failures.items()))
        return (f"{len(failures)} model(s) in {self.model_repository} failed to load; Triton says:\n"
                f"{listed}\nFix or remove those model folders, or pass allow_load_failures=True "
                f"(--allow-load-failures) to serve the others. Full log: {self.log_path}")

    # ----- small helpers ---------------------------------------------------------------

    def _started(self) -> ServerSettings:
        if self._settings is None:
            raise RuntimeError("the server has not been started: call start() or use it in a `with` block")
        return self._settings

    def _probe(self) -> HttpProbe:
        return HttpProbe(self.http_url, self.admin_http_headers)

    def _picks_ports(self) -> bool:
        return any(port is None for port in self._ports.values())


def _indent(text: str) -> str:
    """Triton's multi-line reasons (Python tracebacks) indented under their list item."""
    return "\n".join(("      " + line).rstrip() for line in text.strip().splitlines()).lstrip()


@atexit.register
def _stop_servers_left_running() -> None:
    for server in list(_RUNNING):
        server.stop()
