"""Load for the monitoring checks: perf_analyzer on every pod at once, for a fixed length of time.

One perf_analyzer per pod, all started together, each keeping `concurrency` requests in flight
on the pod's ensemble over gRPC, with varied 16-token texts (perf.inputs). As in `python -m perf
load`, a run lasts its duration because perf_analyzer measures exactly three time windows with
its stability check made impossible to miss, and one asynchronous thread walks the inputs in
order, so the requests in flight carry different texts and dynamic batches mix them.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from perf import analyzer, inputs
from perf.install import perf_analyzer_command
from perf.load import NO_STABILITY_CHECK, ONE_ASYNC_THREAD, WINDOW_STRETCH, WINDOWS
from perf.models import resolve_model
from perf.sweeps import MeasurementSettings

from deploy.monitoring.local import Pod

TOKENS = 16
TEXT_COUNT = 127    # prime: perf_analyzer then sends every step (see perf.inputs)


def ensemble_input(repository: Path, model: str, out_dir: Path) -> tuple[str, Path]:
    """(the ensemble's name, a perf_analyzer --input-data file of varied 16-token texts)."""
    files = resolve_model(repository, model)
    tokenizer = inputs.load_tokenizer(files.tokenizer_json)
    return files.ensemble, inputs.write_input_files(tokenizer, TOKENS, TEXT_COUNT, out_dir)["ensemble"]


def load_pods(pods: list[Pod], ensemble: str, input_data: Path, concurrency: int, duration_s: float,
              out_dir: Path) -> list[analyzer.AnalyzerRun]:
    """Run perf_analyzer against every pod at once for about `duration_s`; one result per pod."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = MeasurementSettings(interval_ms=max(1000, math.ceil(duration_s * 1000 / WINDOWS / WINDOW_STRETCH)),
                                   stability_percentage=NO_STABILITY_CHECK, max_trials=WINDOWS)
    jobs = []
    for pod in pods:
        raw = out_dir / f"{pod.name}-c{concurrency}"
        command = analyzer.build_command(
            perf_analyzer_command()[0], model=ensemble, url=pod.server.grpc_url, protocol="grpc",
            input_data=input_data, batch_size=1, concurrency=concurrency, settings=settings,
            csv_path=raw.with_suffix(".csv"),
        ) + ["--measurement-mode", "time_windows", *ONE_ASYNC_THREAD]
        jobs.append((command, raw))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(analyzer.run_perf_analyzer, command, raw.with_suffix(".csv"),
                               raw.with_suffix(".log"), analyzer.timeout_for(settings)) for command, raw in jobs]
        return [future.result() for future in futures]
