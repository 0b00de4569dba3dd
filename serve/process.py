"""Starting the tritonserver process so that it can always be stopped, and stopping it.

The server runs in its own session (process group): Ctrl-C in a terminal reaches only
the launcher, which then stops the server in order, and the group lets us kill the
Python-backend stubs the server forked if the server itself had to be killed. The
kernel also sends the server SIGTERM if the launcher dies without stopping it
(PR_SET_PDEATHSIG, set by util-linux's `setpriv --pdeathsig`, which then execs the server
in the same process). Caveat: that signal follows the *thread* that started the server,
so start it from a thread that lives as long as the server should (the main thread).

Why setpriv and not a `preexec_fn`: Python code run between fork and exec is unsafe when
the launcher has other threads (gRPC client threads in the tests did): a child crashed
with SIGSEGV before exec once. setpriv does the same in C after exec.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

logger = logging.getLogger("serve")

def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start `command` in a new session, its stdout and stderr going to `log_path` (truncated)."""
    with open(log_path, "wb") as log:
        # Both streams: NVML, gRPC and bind errors bypass Triton's own --log-file.
        return subprocess.Popen(
            _with_parent_death_signal(command), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def _with_parent_death_signal(command: list[str]) -> list[str]:
    """`command` run through `setpriv --pdeathsig TERM`, so the kernel stops it if we die."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        logger.warning("setpriv (util-linux) not found: the server will outlive a launcher that is killed")
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def terminate(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL whatever is left of the process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("tritonserver (pid %d) still up %.0f s after SIGTERM; killing it",
                           process.pid, grace_s)
    # The group outlives its leader while members remain: stubs left by a crash or the kill.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the usual case: the server took its stubs with it
    process.wait()
    # SIGKILL is delivered, not done: an orphaned stub may still be exiting. Return only
    # once nothing of the group runs, so a caller never sees a half-stopped server.
    _wait_until_group_gone(process.pid, timeout_s=GROUP_EXIT_TIMEOUT_S)


GROUP_EXIT_TIMEOUT_S = 10.0


class ProcessesLeftBehind(RuntimeError):
    """Processes of the server's group still ran after SIGKILL and a bounded wait."""


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def _wait_until_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while members := group_members(pgid):
        if time.monotonic() > deadline:
            raise ProcessesLeftBehind(
                f"processes {members} of tritonserver's group {pgid} still run {timeout_s:.0f} s "
                f"after SIGKILL; look at them with `ps -o pid,stat,cmd -g {pgid}`")
        time.sleep(0.02)


def remove_shared_memory(prefix: str) -> None:
    """Python-backend regions in /dev/shm that a killed stub could not remove.
    The prefix is unique to one server run, so only its own regions go."""
    for region in Path("/dev/shm").glob(prefix + "*"):
        region.unlink(missing_ok=True)
