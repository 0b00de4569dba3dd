"""StubWatchdog: reload a model whose Python-backend process died.

Why a watchdog: every Python-backend model instance runs in its own process, the
`triton_python_backend_stub`. When one dies (killed, out of memory, a crash in native
code), Triton 2.51 does not restart it: the model stays READY in the repository index and
in /v2/models/<model>/ready, and every request for it fails after a second with
"Stub process '<model>_0_0' is not healthy." until the model is unloaded and loaded again
(a plain load of a loaded model is a no-op). The watchdog notices the missing process and
does that unload + load with the admin key, within about a second.

It does not wait for the unload to finish: when the stub died in the middle of a request,
that unload never finishes (the model stays UNLOADING; seen with 2.51). Triton's load does
not wait for it either and starts a fresh stub; the stuck old instance is left behind
until the server stops (whose stop then takes its full exit timeout).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import psutil

from ._modelrepo import stub_model
from .health import HttpProbe

logger = logging.getLogger("serve")

STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class Stub:
    """One live Python-backend process of a server."""
    pid: int
    instance: str   # Triton's instance name, e.g. "minilm-intent-encoder_0_0"
    model: str      # the model folder it runs (<repository>/<model>/<version>/model.py)


def python_stubs(server_pid: int) -> dict[str, Stub]:
    """The live stubs the server `server_pid` forked, by instance name; a dead (zombie) one is left out."""
    try:
        children = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:
        return {}
    stubs = {}
    for child in children:
        try:
            argv = child.cmdline()  # raises for a zombie
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        command = stub_model(argv)
        if command is not None and command.instance is not None:
            stubs[command.instance] = Stub(child.pid, command.instance, command.model)
    return stubs


@dataclass(frozen=True)
class Restoration:
    """One model the watchdog reloaded because its stub died."""
    model: str
    instance: str
    dead_pid: int
    noticed_at: float         # time.monotonic() when the watchdog saw the stub gone
    seconds: float            # from then until the model (and what depends on it) was loaded again
    error: str | None = None  # Triton's reason when the reload failed


class StubWatchdog:
    """Reloads a model whose Python-backend stub died, through the model-repository API.

    Needs explicit model control (Triton refuses load/unload otherwise) and the admin
    key (in `probe`). A stub that is gone because its model was unloaded or replaced is
    no crash: only a model still READY with no live stub for an instance is reloaded.
    A model whose stub keeps dying is given up after MAX_RESTORES within RESTORE_WINDOW_S,
    so that a crash loop does not become a reload loop.
    """

    POLL_S = 0.5
    MAX_RESTORES = 3
    RESTORE_WINDOW_S = 60.0

    def __init__(self, server_pid: int, probe: HttpProbe) -> None:
        self._server_pid = server_pid
        self._probe = probe
        self._restorations: list[Restoration] = []
        self._given_up: set[str] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"stub watchdog {server_pid}", daemon=True)

    def start(self) -> "StubWatchdog":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching. A reload in progress is not waited for long: the server is
        usually being stopped too, and its requests then fail fast."""
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_WAIT_S)

    @property
    def restorations(self) -> list[Restoration]:
        return list(self._restorations)

    def _watch(self) -> None:
        seen = python_stubs(self._server_pid)
        while not self._stopped.wait(self.POLL_S):
            if not psutil.pid_exists(self._server_pid):
                return  # the server is gone: the launcher reports that, not us
            live = python_stubs(self._server_pid)
            gone = [stub for instance, stub in seen.items() if instance not in live]
            if gone:
                try:
                    self._restore_crashed(gone)
                except OSError as error:  # the server stopping under us, most likely
                    logger.warning("stub watchdog: could not check or reload models: %s", error)
                live = python_stubs(self._server_pid)
            seen = live

    def _restore_crashed(self, gone: list[Stub]) -> None:
        index = self._probe.repository_index()
        ready = {model.name for model in index if model.state == "READY"}
        one_per_model = {stub.model: stub for stub in gone}.values()   # one reload restarts every instance
        for stub in one_per_model:
            if stub.model in ready and not self._stopped.is_set() and self._may_restore(stub):
                self._restore(stub, ready)

    def _may_restore(self, stub: Stub) -> bool:
        recent = [r for r in self._restorations
                  if r.model == stub.model and time.monotonic() - r.noticed_at < self.RESTORE_WINDOW_S]
        if len(recent) < self.MAX_RESTORES:
            return True
        if stub.model not in self._given_up:
            self._given_up.add(stub.model)
            logger.error("model %s: its Python-backend process died %d times within %.0f s; not reloading it "
                         "again. Requests for it fail with \"Stub process ... is not healthy\"; fix the model "
                         "and reload it, or restart the server.", stub.model, len(recent) + 1,
                         self.RESTORE_WINDOW_S)
        return False

    def _restore(self, stub: Stub, ready_before: set[str]) -> None:
        noticed = time.monotonic()
        logger.warning("model %s: its Python-backend process %s (pid %d) died and Triton does not restart "
                       "it; reloading the model", stub.model, stub.instance, stub.pid)
        error = None
        try:
            self._probe.unload_model(stub.model)
            self._probe.load_model(stub.model)   # at once: the unload may never finish (module docstring)
            # Unloading a model takes the ensembles built on it down too: bring them back.
            still_ready = {model.name for model in self._probe.repository_index() if model.state == "READY"}
            for dependent in sorted(ready_before - still_ready):
                self._probe.load_model(dependent)
        except OSError as failure:
            error = str(failure)
        restoration = Restoration(stub.model, stub.instance, stub.pid, noticed, time.monotonic() - noticed, error)
        self._restorations.append(restoration)
        if error:
            logger.error("model %s could not be reloaded after its process died: %s", stub.model, error)
        else:
            logger.warning("model %s serves again (reloaded in %.1f s)", stub.model, restoration.seconds)
