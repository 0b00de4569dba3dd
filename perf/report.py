"""Turn a results folder into report.md and two PNG plots.

The table gives p50/p95/p99 latency and throughput for every configuration, with two
ratios taken within the same run (so machine noise largely cancels):
  x floor      p50 / p50 of ONNX Runtime in-process at the same tokens and batch size
  vs PyTorch   p50 of the PyTorch pipeline / p50 (how many times faster than PyTorch)
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .machine import one_line
from .results import load_results

RUNTIME_ORDER = ["onnxruntime", "pytorch", "fastapi", "triton-ensemble", "triton-fused", "triton-encoder",
                 "triton-echo"]
RUNTIME_LABELS = {
    "onnxruntime": "ONNX Runtime in-process (floor)",
    "pytorch": "PyTorch (transformers)",
    "fastapi": "FastAPI + ORT",
    "triton-ensemble": "Triton ensemble",
    "triton-fused": "Triton fused model",
    "triton-encoder": "Triton encoder only",
    "triton-echo": "Triton Python model that does no work (echo)",
}


def write_report(results_dir: Path) -> Path:
    """Write report.md, latency_by_seq_len.png and throughput_vs_concurrency.png; return report.md."""
    results_dir = Path(results_dir)
    document = load_results(results_dir)
    runs = [run for run in document["runs"] if run.get("status") == "ok"]
    plots = [name for name, drawn in (("latency_by_seq_len.png", plot_latency_by_seq_len(runs, results_dir)),
                                      ("throughput_vs_concurrency.png",
                                       plot_throughput_vs_concurrency(runs, results_dir))) if drawn]
    report = results_dir / "report.md"
    report.write_text(render_markdown(document, plots))
    return report


def render_markdown(document: dict[str, Any], plots: list[str]) -> str:
    machine = document.get("machine", {})
    servers = ", ".join(f"{s.get('name', 'triton')} {s.get('version', '?')} (dynamic batching {s['dynamic_batching']})"
                        for s in document.get("servers", []) if "dynamic_batching" in s)
    lines = [
        f"# perf: {document.get('model', '?')}, preset `{document.get('preset', '?')}`",
        "",
        f"- Machine: {one_line(machine)}; {machine.get('memory_gib', '?')} GiB RAM; {machine.get('os', '')}",
        f"- Started {document.get('started', '?')}, finished {document.get('finished', 'unfinished')}",
        f"- Server: {servers or 'none measured'}; {machine.get('perf_analyzer', 'perf_analyzer ?')}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items()),
        f"- Precision: {document.get('manifest_entry', {}).get('precision', '?')}, "
        f"target: {document.get('manifest_entry', {}).get('target', '?')}",
        "",
        "Latencies in ms per request (a request carries `batch` texts); throughput in texts/s.",
        "`x floor` = p50 / p50 of ONNX Runtime in-process at the same tokens and batch;",
        "`vs PyTorch` = PyTorch p50 / p50 (times faster than the PyTorch pipeline). Triton rows are",
        "measured by perf_analyzer; baselines by a Python loop with the same nearest-rank percentiles.",
        "Load generators run on the same cores as the servers (perf_analyzer in C++, the FastAPI load",
        "loop in Python threads), as a client on the same host would.",
    ]
    rounds = document.get("rounds", 1)
    if rounds > 1:
        lines += [f"The whole sweep ran {rounds} times, each round in the same order; every figure is the",
                  "median over the rounds, and `p50 by round` shows how far one round strays from another."]
    lines += ["", markdown_table(document["runs"])]
    targets = targets_table(document["runs"])
    if targets:
        lines += ["", "## The issue's targets (gRPC, batch 1, dynamic batching on)", "", targets]
    breakdown = time_breakdown_table(document["runs"])
    if breakdown:
        lines += ["", "## Where the time goes (p50 ms, gRPC, batch 1, concurrency 1)", "",
                  "`echo` is a Python-backend model that does no work: what one request to a Python model",
                  "costs end to end. The fused model is one Python model around the floor's work (tokenization",
                  "+ ONNX Runtime); the ensemble adds a second Python model (the tokenizer) and its scheduler.",
                  "Over several rounds, each difference is the median of the differences within a round.",
                  "", breakdown]
    failures = [run for run in document["runs"] if run.get("status") != "ok"]
    if failures:
        lines += ["", "## Runs without a result", ""]
        lines += [f"- `{_config_name(run)}`: {run.get('status')}: {run.get('error', '')[:300]}" for run in failures]
    lines += [""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def markdown_table(runs: list[dict[str, Any]]) -> str:
    ok_runs = sorted((run for run in runs if run.get("status") == "ok"), key=_sort_key)
    by_round = any(len(run.get("rounds_p50_ms", [])) > 1 for run in ok_runs)
    header = ("| runtime | protocol | tokens | batch | conc. | options | p50 | p95 | p99 | infer/s "
              "| x floor | vs PyTorch |" + (" p50 by round |" if by_round else ""))
    lines = [header, "|" + "---|" * (13 if by_round else 12)]
    for run in ok_runs:
        # The echo does none of the work, so ratios to runtimes that do would mean nothing.
        compared = run["runtime"] != "triton-echo"
        floor = _reference(ok_runs, "onnxruntime", run) if compared else None
        torch = _reference(ok_runs, "pytorch", run) if compared else None
        lines.append(
            f"| {RUNTIME_LABELS.get(run['runtime'], run['runtime'])} | {run['protocol']} | {run['seq_len']} "
            f"| {run['batch_size']} | {run['concurrency']} | {_options(run)} "
            f"| {run['p50_ms']:.2f} | {run['p95_ms']:.2f} | {run['p99_ms']:.2f} | {run['throughput']:.1f} "
            f"| {_ratio(run['p50_ms'], floor)} | {_ratio(torch, run['p50_ms'])} |"
            + (f" {_by_round(run)} |" if by_round else "")
        )
    return "\n".join(lines)


def _find(runs: list[dict[str, Any]], runtime: str, seq_len: int, concurrency: int = 1,
          protocol: str | None = None) -> dict[str, Any] | None:
    """The batch-1, no-shared-memory, dynamic-batching-on run of that kind, if measured."""
    for run in runs:
        if (run.get("status") == "ok" and run["runtime"] == runtime and run["seq_len"] == seq_len
                and run["batch_size"] == 1 and run["concurrency"] == concurrency
                and run.get("shared_memory", "none") == "none" and run.get("dynamic_batching") != "off"
                and (protocol is None or run["protocol"] == protocol)):
            return run
    return None


def targets_table(runs: list[dict[str, Any]]) -> str:
    """Each performance target of issue 4 beside this run's figure, for the ensemble and the fused model."""
    rows = []
    for runtime in ("triton-ensemble", "triton-fused"):
        rows += _target_rows(runs, runtime, RUNTIME_LABELS[runtime])
    if not rows:
        return ""
    lines = ["| model | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {label} | {target} | {measured} | {'yes' if met else '**no**'} |"
              for label, target, measured, met in rows]
    return "\n".join(lines)


def _target_rows(runs: list[dict[str, Any]], runtime: str, label: str) -> list[tuple[str, str, str, bool]]:
    def served(seq_len: int, concurrency: int = 1) -> dict[str, Any] | None:
        return _find(runs, runtime, seq_len, concurrency, "grpc")

    rows = []
    if (run := served(16)) is not None:
        rows.append((label, "p50 at 16 tokens <= 1.5 ms", f"{run['p50_ms']:.2f} ms", run["p50_ms"] <= 1.5))
    if (run := served(128)) is not None and (floor := _find(runs, "onnxruntime", 128)) is not None:
        ratio = run["p50_ms"] / floor["p50_ms"]
        rows.append((label, "p50 at 128 tokens <= 1.3x the in-process floor", f"{ratio:.2f}x", ratio <= 1.3))
    for seq_len, wanted in ((16, 5.0), (128, 3.0)):
        if (run := served(seq_len)) is not None and (torch := _find(runs, "pytorch", seq_len)) is not None:
            speedup = torch["p50_ms"] / run["p50_ms"]
            rows.append((label, f">= {wanted:g}x faster than PyTorch at {seq_len} tokens", f"{speedup:.2f}x",
                         speedup >= wanted))
    for seq_len in sorted({run["seq_len"] for run in runs if run.get("status") == "ok"}):
        one, eight = served(seq_len, 1), served(seq_len, 8)
        if one is not None and eight is not None:
            gain = eight["throughput"] / one["throughput"]
            rows.append((label, f"throughput at concurrency 8 >= 1.5x concurrency 1 ({seq_len} tokens)",
                         f"{gain:.2f}x", gain >= 1.5))
            break
    return rows


def time_breakdown_table(runs: list[dict[str, Any]]) -> str:
    """Per sequence length: the floor, one empty hop, and what the fused model and the ensemble
    add. A row needs the floor, the fused model and the ensemble; the echo may be missing (it
    is served only by the runner's own server)."""
    lines = []
    for seq_len in sorted({run["seq_len"] for run in runs if run.get("status") == "ok"}):
        found = {runtime: _find(runs, runtime, seq_len, 1, None if runtime == "onnxruntime" else "grpc")
                 for runtime in ("onnxruntime", "triton-fused", "triton-ensemble")}
        if any(run is None for run in found.values()):
            continue
        floor, fused, ensemble = (found[r] for r in found)
        echo = _find(runs, "triton-echo", seq_len, 1, "grpc")
        echo_cell = f"{echo['p50_ms']:.2f}" if echo else "-"
        lines.append(f"| {seq_len} | {floor['p50_ms']:.2f} | {echo_cell} | {fused['p50_ms']:.2f} "
                     f"| {_difference(fused, floor):+.2f} | {ensemble['p50_ms']:.2f} "
                     f"| {_difference(ensemble, fused):+.2f} |")
    if not lines:
        return ""
    header = ["| tokens | in-process floor | echo (no work) | fused model | fused - floor | ensemble "
              "| ensemble - fused |", "|" + "---|" * 7]
    return "\n".join(header + lines)


def _difference(run: dict[str, Any], other: dict[str, Any]) -> float:
    """p50 of run minus p50 of other; over several rounds, the median of the differences taken
    within each round (the machine's slow and quick spells cancel in a round, not across)."""
    pairs = [(a, b) for a, b in zip(run.get("rounds_p50_ms", []), other.get("rounds_p50_ms", []))
             if a is not None and b is not None]
    if not pairs:
        return run["p50_ms"] - other["p50_ms"]
    return statistics.median(a - b for a, b in pairs)


def _reference(runs: list[dict[str, Any]], runtime: str, run: dict[str, Any]) -> float | None:
    for candidate in runs:
        if (candidate["runtime"] == runtime and candidate["seq_len"] == run["seq_len"]
                and candidate["batch_size"] == run["batch_size"]):
            return candidate["p50_ms"]
    return None


def _by_round(run: dict[str, Any]) -> str:
    return " / ".join("-" if p50 is None else f"{p50:.2f}" for p50 in run.get("rounds_p50_ms", []))


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def _options(run: dict[str, Any]) -> str:
    options = []
    if run.get("runtime", "").startswith("triton"):
        options.append("dyn. batching" if run.get("dynamic_batching") == "on" else "no dyn. batching")
    if run.get("shared_memory", "none") != "none":
        options.append(f"{run['shared_memory']} shm")
    return ", ".join(options) or "-"


def _sort_key(run: dict[str, Any]) -> tuple:
    order = RUNTIME_ORDER.index(run["runtime"]) if run["runtime"] in RUNTIME_ORDER else len(RUNTIME_ORDER)
    return (run["seq_len"], run["batch_size"], order, run["protocol"], run.get("dynamic_batching") == "off",
            run.get("shared_memory", "none"), run["concurrency"])


def _config_name(run: dict[str, Any]) -> str:
    return (f"{run.get('runtime')} {run.get('protocol')} {run.get('seq_len')} tokens batch {run.get('batch_size')} "
            f"concurrency {run.get('concurrency')} {_options(run)}")


def _series_label(run: dict[str, Any]) -> str:
    label = RUNTIME_LABELS.get(run["runtime"], run["runtime"])
    if run["runtime"].startswith("triton"):
        label += f" ({run['protocol']})"
    return label


# --- plots ----------------------------------------------------------------------------------

# One colour per runtime in every plot, so a reader can match bars to curves.
COLOURS = {"onnxruntime": "#4c72b0", "pytorch": "#dd8452", "fastapi": "#55a868",
           "triton-ensemble": "#c44e52", "triton-fused": "#937860", "triton-encoder": "#8172b3",
           "triton-echo": "#8c8c8c"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers or in CI
    import matplotlib.pyplot as plt

    return plt


def _colour(run: dict[str, Any]) -> str:
    return COLOURS.get(run["runtime"], "#777777")


def plot_latency_by_seq_len(runs: list[dict[str, Any]], out_dir: Path) -> bool:
    """Grouped bars: p50 per runtime at each sequence length (batch 1, concurrency 1), p99 whiskers."""
    single = [run for run in runs if run["batch_size"] == 1 and run["concurrency"] == 1
              and run.get("shared_memory", "none") == "none" and run.get("dynamic_batching") != "off"]
    if not single:
        return False
    seq_lens = sorted({run["seq_len"] for run in single})
    by_label = {_series_label(run): run for run in sorted(single, key=_sort_key, reverse=True)}
    labels = sorted(by_label, key=lambda label: _sort_key(by_label[label])[2:4])
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(min(11.0, max(7.5, 0.8 * len(seq_lens) * len(labels))), 4.8))
    width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        matches = [(position, run) for position, seq_len in enumerate(seq_lens) for run in single
                   if _series_label(run) == label and run["seq_len"] == seq_len]
        positions = [position + (index - (len(labels) - 1) / 2) * width for position, _ in matches]
        p50s = [run["p50_ms"] for _, run in matches]
        whiskers = [run["p99_ms"] - run["p50_ms"] for _, run in matches]
        hatch = "//" if "(http)" in label else None
        bars = axes.bar(positions, p50s, width, label=label, color=_colour(by_label[label]), hatch=hatch,
                        edgecolor="white", yerr=[[0] * len(whiskers), whiskers], capsize=3,
                        error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        axes.bar_label(bars, labels=[f"{v:.1f}" for v in p50s], fontsize=7, padding=1, label_type="center",
                       color="white", fontweight="bold")
    axes.set_yscale("log")  # PyTorch sits an order of magnitude above the rest
    axes.set_xticks(range(len(seq_lens)), [f"{n} tokens" for n in seq_lens])
    axes.set_ylabel("ms per request (bar: p50, whisker: p99; log scale)")
    axes.set_title("Latency by sequence length: batch 1, one request at a time")
    axes.legend(fontsize=8, frameon=False, loc="upper left")
    axes.grid(axis="y", which="both", alpha=0.25)
    figure.tight_layout()
    figure.savefig(out_dir / "latency_by_seq_len.png", dpi=130)
    plt.close(figure)
    return True


def plot_throughput_vs_concurrency(runs: list[dict[str, Any]], out_dir: Path) -> bool:
    """Throughput against concurrency per runtime; dashed where dynamic batching is off."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        if run["runtime"] in ("onnxruntime", "pytorch"):
            continue  # in-process: concurrency 1 only, drawn as reference lines below
        key = (_sort_key(run)[2], _series_label(run), run["seq_len"], run["batch_size"],
               run.get("shared_memory", "none"), run.get("dynamic_batching", "on"))
        groups.setdefault(key, []).append(run)
    curves = {key: sorted(group, key=lambda r: r["concurrency"]) for key, group in groups.items() if len(group) > 1}
    if not curves:
        return False
    plt = _pyplot()
    from matplotlib.transforms import blended_transform_factory

    figure, axes = plt.subplots(figsize=(8.5, 5))
    markers = ["o", "s", "^", "D", "v", "P"]
    for index, ((_, label, seq_len, batch, shm, batching), curve) in enumerate(sorted(curves.items())):
        name = f"{label}, {seq_len} tok, batch {batch}" + (f", {shm} shm" if shm != "none" else "")
        if label.startswith("Triton"):
            name += ", dynamic batching" if batching == "on" else ", no dynamic batching"
        axes.plot([r["concurrency"] for r in curve], [r["throughput"] for r in curve], color=_colour(curve[0]),
                  marker=markers[index % len(markers)], linestyle="--" if batching == "off" else "-", label=name)
    left_edge = blended_transform_factory(axes.transAxes, axes.transData)
    for run in runs:
        if run["runtime"] == "onnxruntime" and run["batch_size"] == 1 and any(k[2] == run["seq_len"] for k in curves):
            axes.axhline(run["throughput"], color=COLOURS["onnxruntime"], linestyle=":", linewidth=1)
            axes.text(0.01, run["throughput"], f" ORT in-process, {run['seq_len']} tok, one call at a time",
                      transform=left_edge, fontsize=7, color=COLOURS["onnxruntime"], va="bottom")
    axes.set_xlabel("concurrent requests")
    axes.set_ylabel("throughput, texts/s")
    axes.set_title("Throughput against concurrency")
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_ylim(0, axes.get_ylim()[1] * 1.08)  # room above the highest line for its label
    axes.legend(fontsize=8, frameon=False, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "throughput_vs_concurrency.png", dpi=130)
    plt.close(figure)
    return True
