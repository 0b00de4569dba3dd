"""A load ramp seen through Prometheus: the autoscaling ratio, texts per second and p50 queue time.

    python -m deploy.monitoring.ramp --model-repository triton_models [--concurrency 1 4 16]
                                     [--phase-seconds 60] [--pods 2] [--out docs/results/monitoring]

Starts `--pods` local tritonservers (latency summaries on) scraped every second by a local
Prometheus with the chart's recording rules, lets them idle, then loads every pod with
perf_analyzer at each concurrency in turn. Afterwards it reads the whole run back from
Prometheus's query_range API and writes:

    ramp.png   the ratio per pod (the HPA's metric), texts per second, the encoder's average batch
               size and p50 queue times, over time
    ramp.csv   the same series, one row per second
    ramp.md    a table per concurrency, with the machine, the date and this command
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from deploy.monitoring.contract import RATIO_RECORD
from deploy.monitoring.load import ensemble_input, load_pods
from deploy.monitoring.local import monitored_pods
from deploy.monitoring.prometheus import LocalPrometheus
from perf.machine import describe_machine, one_line
from perf.models import resolve_model

DEFAULT_OUT = Path("docs/results/monitoring")
STEP_S = 1.0
TEXTS_RATE_WINDOW = "10s"    # short, so the texts/s curve steps with the load (the ratio's window is the rule's 1 m)
STATE_TIMEOUT_S = 90.0


@dataclass
class Phase:
    concurrency: int
    start: float                 # Unix seconds
    end: float
    client_texts_per_s: float    # perf_analyzer's throughput, summed over the pods


@dataclass
class Ramp:
    started: float
    ended: float
    pods: list[str]
    models: dict[str, str] = field(default_factory=dict)    # role (ensemble, tokenizer, encoder) -> name
    phases: list[Phase] = field(default_factory=list)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)   # name -> (time, value)


def queries(ramp: Ramp) -> dict[str, str]:
    """Series name -> PromQL, read back over the whole run."""
    models, window = ramp.models, TEXTS_RATE_WINDOW
    named = {f"ratio {pod}": f'{RATIO_RECORD}{{pod="{pod}"}}' for pod in ramp.pods}
    named["texts/s (all pods)"] = f'sum(rate(nv_inference_count{{model="{models["ensemble"]}"}}[{window}]))'
    # Why the ratio levels off: Triton adds a batch's whole compute time to each request in it.
    named[f"batch size {models['encoder']}"] = (f'sum(rate(nv_inference_count{{model="{models["encoder"]}"}}[{window}])) '
                                                f'/ sum(rate(nv_inference_exec_count{{model="{models["encoder"]}"}}[{window}]))')
    for role in ("tokenizer", "encoder"):
        named[f"p50 queue {models[role]} (ms)"] = \
            f'max(nv_inference_queue_summary_us{{model="{models[role]}", quantile="0.5"}}) / 1000'
    return named


def run(repository: Path, model: str, concurrencies: list[int], phase_s: float, pod_count: int,
        idle_s: float, work: Path) -> tuple[Ramp, dict[str, str]]:
    files = resolve_model(repository, model)
    ensemble, input_data = ensemble_input(repository, model, work / "inputs")
    with monitored_pods(repository, pod_count) as (pods, prometheus):
        names = [pod.name for pod in pods]
        prometheus.wait_for(RATIO_RECORD, lambda result: len(result) == pod_count, STATE_TIMEOUT_S, "every pod's ratio")
        ramp = Ramp(time.time(), 0.0, names, {"ensemble": ensemble, "tokenizer": files.tokenizer_model,
                                               "encoder": files.encoder})
        time.sleep(idle_s)   # the idle stretch at the start of the figure
        for concurrency in concurrencies:
            print(f"concurrency {concurrency} on each of {pod_count} pods for {phase_s:.0f} s", flush=True)
            start = time.time()
            runs = load_pods(pods, ensemble, input_data, concurrency, phase_s, work / "perf")
            failed = [result.output_tail for result in runs if not result.ok]
            if failed:
                raise RuntimeError(f"perf_analyzer failed at concurrency {concurrency}:\n" + "\n".join(failed))
            ramp.phases.append(Phase(concurrency, start, time.time(), sum(r.rows[0]["throughput"] for r in runs)))
        ramp.ended = _after_next_evaluation(prometheus, time.time(), pod_count)
        named = queries(ramp)
        ramp.series = {name: _range(prometheus, expr, ramp) for name, expr in named.items()}
    return ramp, named


def _after_next_evaluation(prometheus: LocalPrometheus, moment: float, pod_count: int) -> float:
    """Wait until every pod's ratio was evaluated after `moment`; return that evaluation's time."""
    newer = f"timestamp({RATIO_RECORD}) > {moment + 1:.3f}"
    result = prometheus.wait_for(newer, lambda result: len(result) == pod_count, STATE_TIMEOUT_S,
                                 "a rule evaluation after the load")
    return min(float(item["value"][1]) for item in result)


def _range(prometheus: LocalPrometheus, expr: str, ramp: Ramp) -> list[tuple[float, float]]:
    result = prometheus.query_range(expr, ramp.started, ramp.ended, STEP_S)
    if len(result) != 1:
        raise RuntimeError(f"expected one series from {expr}, got {len(result)}")
    return [(float(t), float(v)) for t, v in result[0]["values"]]


# ----------------------------------------------------------------- what is written

def value_at(points: list[tuple[float, float]], moment: float) -> float:
    """The last value at or before `moment` (NaN if none)."""
    earlier = [value for t, value in points if t <= moment]
    return earlier[-1] if earlier else float("nan")


def mean_between(points: list[tuple[float, float]], start: float, end: float) -> float:
    values = [value for t, value in points if start <= t <= end]
    return sum(values) / len(values) if values else float("nan")


def table(ramp: Ramp) -> tuple[list[str], list[list[str]]]:
    """Header and one row per phase: means over the phase's second half, the rest at its end."""
    models = ramp.models
    header = ["concurrency per pod", "texts/s (perf_analyzer, all pods)", "texts/s (Prometheus)",
              f"batch size {models['encoder']}", "queue/compute ratio per pod, at the end",
              f"p50 queue {models['tokenizer']} (ms), at the end", f"p50 queue {models['encoder']} (ms), at the end"]
    texts, batch = ramp.series["texts/s (all pods)"], ramp.series["batch size " + models["encoder"]]
    queues = [ramp.series[f"p50 queue {models[role]} (ms)"] for role in ("tokenizer", "encoder")]
    rows = []
    for phase in ramp.phases:
        second_half = ((phase.start + phase.end) / 2, phase.end)
        ratios = [value_at(ramp.series[f"ratio {pod}"], phase.end) for pod in ramp.pods]
        rows.append([str(phase.concurrency), f"{phase.client_texts_per_s:.1f}",
                     f"{mean_between(texts, *second_half):.1f}", f"{mean_between(batch, *second_half):.1f}",
                     " / ".join(f"{ratio:.2f}" for ratio in ratios),
                     *(f"{value_at(queue, phase.end):.2f}" for queue in queues)])
    return header, rows


def markdown(ramp: Ramp, named: dict[str, str], command: str, machine: str) -> str:
    header, rows = table(ramp)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    queries_listed = "\n".join(f"- {name}: `{expr}`" for name, expr in named.items())
    when = datetime.fromtimestamp(ramp.started, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# Load ramp seen through Prometheus\n\nMade by `{command}` on {when}, on {machine}.\n\n"
            + "\n".join(lines) + f"\n\nSeries read back with query_range (step {STEP_S:g} s):\n{queries_listed}\n")


def write_csv(ramp: Ramp, path: Path) -> None:
    names = list(ramp.series)
    times = [t for t, _ in ramp.series[names[0]]]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seconds", *names])
        for t in times:
            writer.writerow([f"{max(0.0, t - ramp.started):.0f}", *(f"{value_at(ramp.series[n], t):.4g}" for n in names)])


def draw(ramp: Ramp, path: Path, machine: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [("queue / compute ratio\n(HPA metric, 1 m)", "ratio "), (f"texts/s\n({TEXTS_RATE_WINDOW} rate)", "texts/s"),
              (f"encoder batch size\n({TEXTS_RATE_WINDOW} rate)", "batch size"),
              ("p50 queue time (ms)\n(Triton summary)", "p50 queue")]
    figure, axes = plt.subplots(len(groups), 1, sharex=True, figsize=(9, 10))
    for axis, (label, prefix) in zip(axes, groups):
        for name, points in ramp.series.items():
            if name.startswith(prefix):
                axis.plot([t - ramp.started for t, _ in points], [v for _, v in points], label=name)
        axis.set_ylabel(label)
        axis.legend(loc="upper left", fontsize=8)
        axis.grid(alpha=0.3)
        for phase in ramp.phases:
            axis.axvspan(phase.start - ramp.started, phase.end - ramp.started, alpha=0.07, color="tab:blue")
    for phase in ramp.phases:
        axes[0].annotate(f"c={phase.concurrency}", ((phase.start + phase.end) / 2 - ramp.started, 1.02),
                         xycoords=("data", "axes fraction"), ha="center", fontsize=9)
    axes[-1].set_xlabel("seconds")
    figure.suptitle(f"Load ramp on {len(ramp.pods)} local Triton pods, read from Prometheus\n{machine}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.monitoring.ramp", description=__doc__.split("\n")[0])
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--model", default="minilm-intent")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--phase-seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--pods", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="triton-encoders-ramp-") as work:   # inputs and perf_analyzer logs
        ramp, named = run(args.model_repository, args.model, args.concurrency, args.phase_seconds, args.pods,
                          args.idle_seconds, Path(work))
    machine = one_line(describe_machine())
    command = "python -m deploy.monitoring.ramp " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    (args.out / "ramp.md").write_text(markdown(ramp, named, command, machine))
    write_csv(ramp, args.out / "ramp.csv")
    draw(ramp, args.out / "ramp.png", machine)
    print((args.out / "ramp.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
