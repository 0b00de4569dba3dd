"""gap.md and its CSV files: texts/s, ratios to in-process ONNX Runtime, where the time went."""
from __future__ import annotations

import csv
import statistics
from datetime import datetime, timezone
from pathlib import Path

from ..machine import one_line
from .measure import STAT_FIELDS, GapRun

FLOOR = "ort"


def summarize(run: GapRun) -> list[dict]:
    """Per variant and length: texts/s over the whole run, its ratio to `ort`, the median and
    quartiles of the ratio turn by turn (paired: both measured within seconds of each other),
    milliseconds of wall time per batch and CPU milliseconds per batch here and in the server."""
    rows = []
    for length in run.lengths:
        samples = [s for s in run.samples if s["tokens"] == length]
        floor = {s["turn"]: _throughput([s], run.batch) for s in samples if s["variant"] == FLOOR}
        for variant in dict.fromkeys(s["variant"] for s in samples):
            mine = [s for s in samples if s["variant"] == variant]
            paired = sorted(_throughput([s], run.batch) / floor[s["turn"]] for s in mine if floor.get(s["turn"]))
            requests, texts_per_s = sum(s["requests"] for s in mine), _throughput(mine, run.batch)
            floor_texts_per_s = _throughput([s for s in samples if s["variant"] == FLOOR], run.batch)
            rows.append({
                "variant": variant, "tokens": length, "requests": requests, "texts_per_s": texts_per_s,
                "ratio_to_ort": texts_per_s / floor_texts_per_s,
                "paired_ratio_median": statistics.median(paired) if paired else 0.0,
                "paired_ratio_q1": _quantile(paired, 0.25), "paired_ratio_q3": _quantile(paired, 0.75),
                "ms_per_batch_median": statistics.median(s["wall_s"] / s["requests"] for s in mine) * 1000,
                "client_cpu_ms": sum(s["client_cpu_s"] for s in mine) / requests * 1000,
                "server_cpu_ms": sum(s["server_cpu_s"] for s in mine) / requests * 1000,
            })
    return rows


def _throughput(samples: list[dict], batch: int) -> float:
    wall = sum(s["wall_s"] for s in samples)
    return batch * sum(s["requests"] for s in samples) / wall if wall else 0.0


def _quantile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def breakdown_rows(run: GapRun) -> list[dict]:
    """Server-side milliseconds per request for each model of each served variant."""
    totals: dict[tuple[str, int, str], dict[str, int]] = {}
    for sample in run.samples:
        for model, counts in sample.get("stats", {}).items():
            into = totals.setdefault((sample["variant"], sample["tokens"], model), {})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + value
    rows = []
    for (variant, length, model), counts in totals.items():
        requests = max(counts["requests"], 1)
        row = {"variant": variant, "tokens": length, "model": model, "requests": counts["requests"],
               "texts_per_execution": counts["requests"] * run.batch / max(counts["executions"], 1),
               "request_ms": counts["request_ns"] / requests / 1e6}
        row.update({f"{name}_ms": counts[f"{name}_ns"] / requests / 1e6 for name in STAT_FIELDS})
        rows.append(row)
    return rows


def write_report(run: GapRun, out_dir: Path, machine: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "samples.csv", [{k: v for k, v in s.items() if k != "stats"} for s in run.samples])
    summary, breakdown = summarize(run), breakdown_rows(run)
    _write_csv(out_dir / "gap.csv", summary)
    _write_csv(out_dir / "breakdown.csv", breakdown)
    lines = [f"# Batch-{run.batch} throughput gap: {run.model_name}", "",
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {one_line(machine)}. Requests of {run.batch} texts; "
             f"the variants take turns of {run.block} requests back to back per client, the first not timed, "
             f"until each has been timed for {run.seconds:g} s per length. texts/s = {run.batch} x timed requests / "
             f"their wall time; paired ratio = a turn's texts/s / `{FLOOR}`'s in the same turn (median, "
             "quartiles). CPU ms are per batch, in this process (here) and in the server with its stubs.", ""]
    lines += _summary_table(summary)
    lines += ["", "Server side, ms per request (Triton's statistics; input, infer and output are compute):", ""]
    lines += _breakdown_table(breakdown)
    report = out_dir / "gap.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _summary_table(rows: list[dict]) -> list[str]:
    lines = [f"| variant | tokens | requests | texts/s | / {FLOOR} | paired / {FLOOR} (q1-q3) | ms per batch | "
             "CPU ms here | CPU ms server |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['tokens']} | {row['requests']} | {row['texts_per_s']:.1f} | "
            f"{row['ratio_to_ort']:.2f} | {row['paired_ratio_median']:.2f} ({row['paired_ratio_q1']:.2f}-"
            f"{row['paired_ratio_q3']:.2f}) | {row['ms_per_batch_median']:.1f} | {row['client_cpu_ms']:.1f} | "
            f"{row['server_cpu_ms']:.1f} |")
    return lines


def _breakdown_table(rows: list[dict]) -> list[str]:
    lines = ["| variant | tokens | model | request | queue | input | infer | output | texts/exec |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['tokens']} | {row['model']} | {row['request_ms']:.2f} | "
                     f"{row['queue_ms']:.2f} | {row['compute_input_ms']:.2f} | {row['compute_infer_ms']:.2f} | "
                     f"{row['compute_output_ms']:.2f} | {row['texts_per_execution']:.0f} |")
    return lines


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
