"""report.md, summary tables and two plots from a `perf arch` results folder.

Every figure of a random-weights model carries "latency only, random weights"; ratios are
taken within the run (the same machine, the same minutes), which is what the findings use.
"""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from ..machine import one_line
from .configs import RANDOM_LABEL
from .runtimes import BY_KEY as RUNTIME_BY_KEY
from .runtimes import RUNTIMES

FIGURES = ("latency_vs_length.png", "speedup_vs_batch.png")
OVERHEAD_STOPS_MATTERING = 0.10   # Triton's extra time below 10% of its latency
INT8_PAYS = 1.2                   # INT8 at least 1.2x faster than FP32


MEASURES = ("min_ms", "p50_ms", "p90_ms", "p99_ms", "avg_ms", "throughput")


def load_rows(results_dir: Path) -> list[dict]:
    with (results_dir / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("seq_len", "batch", "requests"):
            row[key] = int(row[key])
        for key in MEASURES:
            row[key] = float(row[key])
    return rows


def write_arch_report(results_dir: Path) -> Path:
    results_dir = Path(results_dir)
    rows = load_rows(results_dir)
    summary = json.loads((results_dir / "summary.json").read_text())
    machine = json.loads((results_dir / "machine.json").read_text())
    titles = {m["architecture"]: _title(m) for m in summary["models"]}
    plot_latency(rows, titles, results_dir / FIGURES[0])
    plot_speedup(rows, titles, results_dir / FIGURES[1])
    sections = [header(summary, machine), model_table(summary["models"]),
                latency_tables(rows, titles), speedup_table(rows, titles), all_against_all(rows, titles),
                findings(rows, titles)]
    report = results_dir / "report.md"
    report.write_text("\n\n".join(sections) + "\n")
    return report


def _title(model: dict) -> str:
    return model["title"] + (f" ({RANDOM_LABEL})" if model["weights"] == RANDOM_LABEL else "")


def header(summary: dict, machine: dict) -> str:
    wall = f", {summary['wall_s'] / 60:.1f} min" if "wall_s" in summary else " (unfinished)"
    packages = ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items())
    return "\n".join([
        f"# Architectures study, preset `{summary['preset']}`", "",
        f"- Machine: {one_line(machine)}; {machine.get('memory_gib', '?')} GiB RAM; {machine.get('os', '')}",
        f"- Ran {summary['started']} to {summary.get('finished', '?')}{wall}",
        f"- Packages: {packages}",
        "- Latency: p50 ms per request of `batch` texts, one request at a time, tokenization included;"
        " throughput in texts/s. Triton: the build's FP32 repository on the local tritonserver, its"
        " encoder using all cores (gRPC, tritonclient).",
        f"- \"{RANDOM_LABEL}\": built from the published config with random weights; the latency is"
        " the architecture's, the outputs mean nothing, so the INT8 gate does not apply to them.",
    ])


def model_table(models: list[dict]) -> str:
    lines = ["## Models", "",
             "| architecture | weights | layers x hidden | parameters | ONNX FP32 MB | ONNX INT8 MB "
             "| nodes before -> after fusion | fused | FP32 gate | INT8 scheme | INT8 gate |",
             "|---|---|---|---:|---:|---:|---|---|---|---|---|"]
    for m in models:
        fused = ", ".join(f"{op} {n}" for op, n in m["fused"].items())
        lines.append(f"| {m['title']} | {m['weights']} | {m['layers']} x {m['hidden']} | "
                     f"{m['parameters'] / 1e6:.1f} M | {m['onnx_fp32_mb']} | {m['onnx_int8_mb']} | "
                     f"{m['nodes_before']} -> {m['nodes_after']} | {fused} | {m['fp32_gate']} | "
                     f"{m['int8_scheme']} | {m['int8_gate']} |")
    return "\n".join(lines)


def _index(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["architecture"], r["runtime"], r["threads"], r["seq_len"], r["batch"]): r for r in rows}


def _ordered(values, order):
    return [v for v in order if v in set(values)]


def latency_tables(rows: list[dict], titles: dict[str, str]) -> str:
    index = _index(rows)
    lengths = sorted({r["seq_len"] for r in rows if r["batch"] == 1})
    parts = ["## Latency against sequence length (batch 1, p50 ms)"]
    for threads in _ordered({r["threads"] for r in rows}, ["1", "all"]):
        parts += ["", f"### {'one thread' if threads == '1' else 'all threads'}", "",
                  "| architecture | runtime | " + " | ".join(f"{n} tokens" for n in lengths) + " |",
                  "|---|---|" + "---:|" * len(lengths)]
        for arch in titles:
            for runtime in RUNTIMES:
                cells = [index.get((arch, runtime.key, threads, n, 1)) for n in lengths]
                if any(cells):
                    parts.append(f"| {titles[arch]} | {runtime.title} | "
                                 + " | ".join(f"{c['p50_ms']:.2f}" if c else "-" for c in cells) + " |")
    parts += ["", f"![latency against sequence length]({FIGURES[0]})"]
    return "\n".join(parts)


def speedup_table(rows: list[dict], titles: dict[str, str]) -> str:
    """Throughput at batch B over throughput at batch 1, same runtime, length and threads."""
    index = _index(rows)
    batches = sorted({r["batch"] for r in rows if r["batch"] > 1})
    lines = ["## Speedup against batch size (all threads; throughput at batch B / at batch 1)", "",
             "| architecture | runtime | tokens | batch 1 texts/s | "
             + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---|---:|---:|" + "---:|" * len(batches)]
    for arch in titles:
        for runtime in RUNTIMES:
            for length in sorted({r["seq_len"] for r in rows if r["batch"] > 1}):
                single = index.get((arch, runtime.key, "all", length, 1))
                others = [index.get((arch, runtime.key, "all", length, b)) for b in batches]
                if single and any(others):
                    lines.append(f"| {titles[arch]} | {runtime.title} | {length} | {single['throughput']:.1f} | "
                                 + " | ".join(f"{o['throughput'] / single['throughput']:.2f}x" if o else "-"
                                              for o in others) + " |")
    lines += ["", f"![speedup against batch size]({FIGURES[1]})"]
    return "\n".join(lines)


def all_against_all(rows: list[dict], titles: dict[str, str]) -> str:
    """Every runtime at every length, batch 1, all threads; the fastest in bold."""
    index = _index(rows)
    runtimes = [r for r in RUNTIMES if any(row["runtime"] == r.key for row in rows)]
    lines = ["## All against all (batch 1, all threads, p50 ms; fastest in bold)", "",
             "| architecture | tokens | " + " | ".join(r.title for r in runtimes) + " |",
             "|---|---:|" + "---:|" * len(runtimes)]
    for arch in titles:
        for length in sorted({r["seq_len"] for r in rows if r["architecture"] == arch and r["batch"] == 1}):
            cells = [index.get((arch, r.key, "all", length, 1)) for r in runtimes]
            best = min(c["p50_ms"] for c in cells if c)
            lines.append(f"| {titles[arch]} | {length} | " + " | ".join(
                "-" if not c else (f"**{c['p50_ms']:.2f}**" if c["p50_ms"] == best else f"{c['p50_ms']:.2f}")
                for c in cells) + " |")
    return "\n".join(lines)


def ratios(rows: list[dict], numerator: str, denominator: str, threads: str = "all") -> dict[tuple, float]:
    """(architecture, seq_len) -> fastest request of `numerator` / of `denominator`, batch 1."""
    index = _index(rows)
    found = {}
    for (arch, runtime, thr, length, batch), row in index.items():
        other = index.get((arch, denominator, thr, length, batch))
        if runtime == numerator and thr == threads and batch == 1 and other:
            found[(arch, length)] = row["min_ms"] / other["min_ms"]
    return found


def findings(rows: list[dict], titles: dict[str, str]) -> str:
    lines = ["## Findings", "",
             "From each cell's fastest request (`min_ms` in results.csv), the figure least disturbed by other"
             " work on a shared machine; batch 1.", ""]
    lines += _overhead_lines(rows, titles)
    for threads in ("1", "all"):
        lines += _int8_lines(rows, titles, threads)
    lines += _torchscript_lines(rows, titles)
    return "\n".join(lines)


def _overhead_lines(rows: list[dict], titles: dict[str, str]) -> list[str]:
    lines = []
    index = _index(rows)
    for arch in titles:
        shares: dict[int, float] = {}
        texts = []
        for length in sorted({r["seq_len"] for r in rows if r["architecture"] == arch and r["batch"] == 1}):
            served = index.get((arch, "triton-fused", "all", length, 1))
            local = index.get((arch, "ort-fp32", "all", length, 1))
            if served and local:
                extra = served["min_ms"] - local["min_ms"]
                shares[length] = extra / served["min_ms"]
                texts.append(f"{length}: {extra:+.2f} ms ({shares[length]:.0%})")
        if texts:
            lines.append(f"- Triton fused over in-process ORT FP32, {titles[arch]}: " + "; ".join(texts)
                         + f"; {_from_which_length(shares)}")
    return lines


def _from_which_length(shares: dict[int, float]) -> str:
    """The shortest length from which the overhead stays under OVERHEAD_STOPS_MATTERING."""
    lengths = sorted(shares)
    for position, length in enumerate(lengths):
        if all(shares[later] < OVERHEAD_STOPS_MATTERING for later in lengths[position:]):
            return f"under {OVERHEAD_STOPS_MATTERING:.0%} from {length} tokens on"
    return f"{OVERHEAD_STOPS_MATTERING:.0%} or more at {lengths[-1]} tokens"


def _int8_lines(rows: list[dict], titles: dict[str, str], threads: str) -> list[str]:
    speedups = ratios(rows, "ort-fp32", "ort-int8", threads)
    lines = []
    for arch in titles:
        mine = {length: value for (a, length), value in speedups.items() if a == arch}
        if mine:
            pays = [str(n) for n, v in sorted(mine.items()) if v >= INT8_PAYS]
            lines.append(f"- INT8 speedup over FP32 ({'one thread' if threads == '1' else 'all threads'}), "
                         f"{titles[arch]}: " + ", ".join(f"{n}: {v:.2f}x" for n, v in sorted(mine.items()))
                         + f"; at least {INT8_PAYS}x at: {', '.join(pays) or 'none'}")
    return lines


def _torchscript_lines(rows: list[dict], titles: dict[str, str]) -> list[str]:
    lines = []
    for threads in ("1", "all"):
        values = ratios(rows, "pytorch", "torchscript", threads)
        for arch in titles:
            mine = [v for (a, _), v in values.items() if a == arch]
            if mine:
                lines.append(f"- TorchScript vs eager ({'one thread' if threads == '1' else 'all threads'}), "
                             f"{titles[arch]}: eager/traced median {statistics.median(mine):.2f} "
                             f"(range {min(mine):.2f}-{max(mine):.2f})")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")   # files only; no display on servers or in CI
    import matplotlib.pyplot as plt
    return plt


def _plain_ticks(axis, values: list[int]) -> None:
    """The measured values as ticks, written plainly (not 2 x 10^1) on the log axis."""
    from matplotlib.ticker import NullFormatter

    axis.set_xticks(values, [str(value) for value in values])
    axis.xaxis.set_minor_formatter(NullFormatter())


def plot_latency(rows: list[dict], titles: dict[str, str], path: Path) -> None:
    plt = _pyplot()
    threads = _ordered({r["threads"] for r in rows}, ["1", "all"])
    figure, axes = plt.subplots(len(threads), len(titles), figsize=(4 * len(titles), 3.6 * len(threads)),
                                squeeze=False)
    for i, thr in enumerate(threads):
        for j, arch in enumerate(titles):
            axis = axes[i][j]
            for runtime in RUNTIMES:
                points = sorted((r["seq_len"], r["p50_ms"]) for r in rows if r["architecture"] == arch
                                and r["runtime"] == runtime.key and r["threads"] == thr and r["batch"] == 1)
                if points:
                    axis.plot(*zip(*points), marker="o", label=runtime.title)
            axis.set(xscale="log", yscale="log", xlabel="tokens", ylabel="p50 ms (batch 1)")
            _plain_ticks(axis, sorted({r["seq_len"] for r in rows}))
            axis.set_title(f"{titles[arch]}\n{'1 thread' if thr == '1' else 'all threads'}", fontsize=8)
    axes[-1][0].legend(fontsize=7)   # the all-threads row has every runtime, Triton included
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_speedup(rows: list[dict], titles: dict[str, str], path: Path) -> None:
    plt = _pyplot()
    length = min(r["seq_len"] for r in rows)
    figure, axes = plt.subplots(1, len(titles), figsize=(4 * len(titles), 3.6), squeeze=False)
    for j, arch in enumerate(titles):
        axis = axes[0][j]
        for runtime in RUNTIMES:
            points = {r["batch"]: r["throughput"] for r in rows if r["architecture"] == arch
                      and r["runtime"] == runtime.key and r["threads"] == "all" and r["seq_len"] == length}
            if 1 in points and len(points) > 1:
                axis.plot(sorted(points), [points[b] / points[1] for b in sorted(points)], marker="o",
                          label=RUNTIME_BY_KEY[runtime.key].title)
        axis.set(xlabel="batch", ylabel=f"throughput / batch 1 ({length} tokens)", xscale="log")
        _plain_ticks(axis, sorted({r["batch"] for r in rows}))
        axis.set_title(f"{titles[arch]}\nall threads", fontsize=8)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
