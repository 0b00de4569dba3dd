"""Resident memory of a server and its child processes, sampled in the background.

A leak under load shows as resident memory (RSS) that keeps rising once the allocators
have warmed up: ONNX Runtime's arena, gRPC buffers and Python's heaps all grow during
the first requests of a new shape and then stay flat. So growth is measured from a
warm-up value (after the first ~10% of a stretch, at least 5 s) to the final value,
each the median of a few samples so one spike does not decide it:

    with MemorySampler(server_pid) as sampler:
        ...load...
    report = analyze(sampler.samples())        # {"total": Growth, "tritonserver": Growth, ...}

For Triton the tree is tritonserver plus one triton_python_backend_stub per Python-backend
model instance; stubs are labelled with their model's name (`stub:<model>`).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import asdict, dataclass

import psutil

from ._modelrepo import stub_model

TOTAL = "total"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """One reading of the whole tree."""

    at_s: float  # seconds since the sampler started
    rss: dict[str, int]  # process label -> resident bytes
    pids: dict[str, int]  # process label -> pid (a changed pid means the process was restarted)


@dataclass(frozen=True)
class Growth:
    """Memory of one process (or of the tree's total) over one stretch of samples."""

    warmup_mib: float
    final_mib: float
    peak_mib: float
    growth: float  # (final - warm-up) / warm-up
    samples: int
    restarted: bool  # the label was held by more than one pid: the process died and came back

    def as_dict(self) -> dict:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


class MemorySampler:
    """Samples RSS of `root_pid` and all its descendants every `interval_s` in a daemon thread."""

    def __init__(self, root_pid: int, interval_s: float = 1.0) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self._root = psutil.Process(root_pid)  # raises NoSuchProcess now, not silently later
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()

    def start(self) -> "MemorySampler":
        self._started = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "MemorySampler":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def now_s(self) -> float:
        """The samples' clock: mark where a stretch (a load phase) begins and ends."""
        return time.monotonic() - self._started

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sample = self.sample_once()
            if sample is not None:
                with self._lock:
                    self._samples.append(sample)
            self._stop.wait(self.interval_s)

    def sample_once(self) -> Sample | None:
        """One reading; None once the root process is gone."""
        at_s = self.now_s()
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        rss: dict[str, int] = {}
        pids: dict[str, int] = {}
        for process in processes:
            try:
                label, resident = process_label(process), process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue  # exited between the listing and the reading
            if label in rss:  # two instances of one model: keep them apart
                label = f"{label}#{process.pid}"
            rss[label], pids[label] = resident, process.pid
        return Sample(at_s, rss, pids)


def process_label(process: psutil.Process) -> str:
    """`stub:<model>` for a Python-backend stub (its model.py path names the model), else the name."""
    command = stub_model(process.cmdline())
    return f"stub:{command.model}" if command is not None else process.name()


def analyze(
    samples: list[Sample],
    start_s: float | None = None,
    end_s: float | None = None,
    warmup_fraction: float = 0.10,
    min_warmup_s: float = 5.0,
    window: int = 3,
) -> dict[str, Growth]:
    """Growth after warm-up for each process and for the total, over samples in [start_s, end_s].

    Raises ValueError when the stretch is too short to hold a warm-up and a final window."""
    stretch = [s for s in samples if (start_s is None or s.at_s >= start_s) and (end_s is None or s.at_s <= end_s)]
    if not stretch:
        raise ValueError("no memory samples in this stretch: was the server running?")
    begin = stretch[0].at_s if start_s is None else start_s
    finish = stretch[-1].at_s if end_s is None else end_s
    warmup_at = begin + max(warmup_fraction * (finish - begin), min_warmup_s)
    settled = [s for s in stretch if s.at_s >= warmup_at]
    if len(settled) < 2 * window:
        raise ValueError(f"only {len(settled)} memory samples after the {warmup_at - begin:.0f} s warm-up; "
                         f"need {2 * window}: run longer")
    labels = sorted({label for s in stretch for label in s.rss})
    report = {TOTAL: _growth([sum(s.rss.values()) for s in settled], [], window)}
    for label in labels:
        values = [s.rss[label] for s in settled if label in s.rss]
        pids = {s.pids[label] for s in stretch if label in s.pids}
        if len(values) >= 2 * window:
            report[label] = _growth(values, pids, window)
    return report


def exceeded(report: dict[str, Growth], limit: float) -> list[str]:
    """'label +12.3%' for each process (or the total) that grew beyond `limit` or was restarted."""
    problems = []
    for label, growth in report.items():
        if growth.growth > limit:
            problems.append(f"{label} grew {growth.growth:+.1%} after warm-up "
                            f"({growth.warmup_mib:.0f} -> {growth.final_mib:.0f} MiB, limit {limit:.0%})")
        if growth.restarted:
            problems.append(f"{label} was restarted during the run (its pid changed)")
    return problems


def _growth(values: list[int], pids: set[int] | list, window: int) -> Growth:
    warmup = statistics.median(values[:window])
    final = statistics.median(values[-window:])
    return Growth(
        warmup_mib=warmup / MIB,
        final_mib=final / MIB,
        peak_mib=max(values) / MIB,
        growth=(final - warmup) / warmup if warmup else 0.0,
        samples=len(values),
        restarted=len(pids) > 1,
    )


def samples_table(samples: list[Sample]) -> tuple[list[str], list[list]]:
    """Header and rows (seconds, then MiB per process and total) for a CSV of the whole run."""
    labels = sorted({label for s in samples for label in s.rss})
    header = ["at_s", *labels, TOTAL]
    rows = [[round(s.at_s, 2), *(round(s.rss[label] / MIB, 2) if label in s.rss else "" for label in labels),
             round(sum(s.rss.values()) / MIB, 2)] for s in samples]
    return header, rows
