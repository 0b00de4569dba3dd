"""The grid a preset measures, run in one process: architecture x runtime x threads x length x batch.

Rows go to results.csv as they are measured (a stopped run keeps what it had); the model
summaries to summary.json, the machine to machine.json. Each cell is one runtime answering
distinct texts of exactly `seq_len` tokens, `batch` texts per request, one request at a time.
"""
from __future__ import annotations

import contextlib
import csv
import gc
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..baselines import batches_of
from ..errors import PerfError
from ..inputs import exact_length_texts, load_tokenizer
from ..machine import describe_machine
from .configs import ARCHITECTURES, BY_KEY
from .measure import measure_interleaved
from .models import PreparedModel, prepare
from .runtimes import RUNTIMES, TORCH_RUNTIMES, Call, in_process_call, served_calls, set_torch_threads

CSV_FIELDS = ["architecture", "weights", "runtime", "threads", "seq_len", "batch", "requests",
              "min_ms", "p50_ms", "p90_ms", "p99_ms", "avg_ms", "throughput"]
ALL_THREADS = "all"


@dataclass(frozen=True)
class Preset:
    name: str
    lengths: tuple[int, ...]                    # batch 1 at every one of them
    batch_lengths: dict[int, tuple[int, ...]]   # larger batch -> the lengths it is measured at
    seconds: float                              # measurement window per runtime and cell
    warmup: int                                 # requests per runtime before the window
    min_requests: int                           # per runtime and cell, however long they take
    # Batches over 1 whose parameters x batch x tokens exceed this are skipped (quick: BERT-base
    # and DistilBERT get batch 8 at 16 tokens only); None measures every batch.
    max_work: float | None = None
    # Models of at least `big_model` parameters get batch 1 at `big_lengths` only (None: at `lengths`).
    big_model: float | None = None
    big_lengths: tuple[int, ...] = ()
    threads: tuple[str, ...] = ("1", ALL_THREADS)
    architectures: tuple[str, ...] = tuple(arch.key for arch in ARCHITECTURES)
    runtimes: tuple[str, ...] = tuple(runtime.key for runtime in RUNTIMES)
    texts: int = 64                             # distinct texts per length

    def cells(self, parameters: int) -> list[tuple[int, int]]:
        """(seq_len, batch) pairs measured for a model of `parameters` weights."""
        big = self.big_model is not None and parameters >= self.big_model
        pairs = [(length, 1) for length in (self.big_lengths if big else self.lengths)]
        pairs += [(length, batch) for batch, lengths in self.batch_lengths.items() for length in lengths
                  if self.max_work is None or parameters * batch * length <= self.max_work]
        return pairs


PRESETS = {
    # Under 10 minutes on 2 shared cores once the builds are cached (docs/architectures-study.md).
    "quick": Preset("quick", lengths=(16, 64, 128, 256, 512), batch_lengths={8: (16, 128), 32: (16,)},
                    seconds=0.2, warmup=1, min_requests=3, max_work=25e9, big_model=50e6,
                    big_lengths=(16, 128, 512)),
    "full": Preset("full", lengths=(16, 64, 128, 256, 512), batch_lengths={8: (16, 64, 128, 256, 512),
                                                                          32: (16, 64, 128, 256, 512)},
                   seconds=2.0, warmup=3, min_requests=10),
}


@dataclass
class Progress:
    total: int
    done: int = 0
    started: float = field(default_factory=time.perf_counter)

    def show(self, what: str, row: dict) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        print(f"[{self.done}/{self.total} {elapsed / 60:4.1f} min] {what}: p50 {row['p50_ms']:.2f} ms, "
              f"{row['throughput']:.1f} texts/s", flush=True)


def run_study(preset: Preset, out_dir: Path, cache: Path) -> Path:
    """Measure the preset, write results.csv, summary.json, machine.json; return the folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    (out_dir / "machine.json").write_text(json.dumps(describe_machine(), indent=2))
    models = [prepare(BY_KEY[key], cache) for key in preset.architectures]
    summaries = [model.summary for model in models]
    _write_json(out_dir / "summary.json", {"preset": preset.name, "started": started.isoformat(timespec="seconds"),
                                           "models": summaries})
    results = out_dir / "results.csv"
    with results.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        progress = Progress(sum(_cell_count(preset, model) for model in models))
        texts = TextCache(preset.texts)
        for model in models:
            for row in measure_model(preset, model, texts, progress, out_dir):
                writer.writerow({key: round(v, 4) if isinstance(v, float) else v for key, v in row.items()})
                handle.flush()
    finished = datetime.now(timezone.utc)
    _write_json(out_dir / "summary.json", {"preset": preset.name, "started": started.isoformat(timespec="seconds"),
                                           "finished": finished.isoformat(timespec="seconds"),
                                           "wall_s": round((finished - started).total_seconds()), "models": summaries})
    return out_dir


def _cell_count(preset: Preset, model: PreparedModel) -> int:
    cells = len(preset.cells(model.summary["parameters"]))
    local = [key for key in preset.runtimes if not key.startswith("triton")]
    served = len(preset.runtimes) - len(local)
    return cells * (len(local) * len(preset.threads) + served * (ALL_THREADS in preset.threads))


class TextCache:
    """Distinct texts of each exact length, made once per tokenizer (all five share one)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.texts: dict[tuple[bytes, int], list[str]] = {}

    def get(self, tokenizer_json: Path, length: int) -> list[str]:
        key = (tokenizer_json.read_bytes(), length)
        if key not in self.texts:
            self.texts[key] = exact_length_texts(load_tokenizer(tokenizer_json), length, self.count)
        return self.texts[key]


def thread_count(threads: str) -> int:
    return len(os.sched_getaffinity(0)) if threads == ALL_THREADS else int(threads)


def measure_model(preset: Preset, model: PreparedModel, texts: TextCache, progress: Progress, out_dir: Path):
    """Rows of one architecture: every runtime loaded (and its server started) first, then each
    cell measured with the runtimes taking turns (measure.py)."""
    cells = preset.cells(model.summary["parameters"])
    with contextlib.ExitStack() as stack:
        calls = load_calls(preset, model, stack, out_dir)
        for length, batch in cells:
            batches = batches_of(texts.get(model.paths.tokenizer_json, length), batch)
            try:
                measured = measure_interleaved(calls, batches, preset.seconds, preset.warmup, preset.min_requests)
            except Exception as error:  # a failed cell must name itself, not vanish in a traceback
                raise PerfError(f"{model.arch.key} at {length} tokens, batch {batch} failed: {error}") from error
            for (runtime_key, threads), figures in measured.items():
                figures.pop("p95_ms", None)
                row = {"architecture": model.arch.key, "weights": model.arch.label, "runtime": runtime_key,
                       "threads": threads, "seq_len": length, "batch": batch, **figures}
                progress.show(f"{model.arch.key} {runtime_key} threads={threads} {length} tokens x{batch}", row)
                yield row
        del calls
    gc.collect()   # BERT-base's weights are 440 MB a copy: free them before the next model


def load_calls(preset: Preset, model: PreparedModel, stack: contextlib.ExitStack,
               out_dir: Path) -> dict[tuple[str, str], Call]:
    """(runtime, threads) -> call. ORT fixes its threads when a session is made; PyTorch's are
    set per process, so one PyTorch pipeline (and one set of traces) serves both thread counts."""
    calls: dict[tuple[str, str], Call] = {}
    for runtime in (r for r in RUNTIMES if r.key in preset.runtimes and not r.served):
        shared = None
        for threads in preset.threads:
            if shared is None or runtime.key not in TORCH_RUNTIMES:
                shared = in_process_call(runtime, model.paths, thread_count(threads))
            calls[(runtime.key, threads)] = with_torch_threads(shared, thread_count(threads)) \
                if runtime.key in TORCH_RUNTIMES else shared
    served = [r for r in RUNTIMES if r.key in preset.runtimes and r.served]
    if served and ALL_THREADS in preset.threads:
        log_file = out_dir / f"tritonserver-{model.arch.key}.log"
        served_map = stack.enter_context(served_calls(model.repository, model.arch.key, log_file))
        calls |= {(runtime.key, ALL_THREADS): served_map[runtime.key] for runtime in served}
    return calls


def with_torch_threads(call: Call, threads: int) -> Call:
    """PyTorch's thread count is per process: set it before each of this call's requests."""
    def call_with_threads(texts: list[str]):
        set_torch_threads(threads)
        return call(texts)
    return call_with_threads


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2))
