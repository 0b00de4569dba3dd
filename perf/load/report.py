"""Judging and reporting `python -m perf load`: each phase's problems, load.json, summary.md,
memory.csv and the table on the console."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import memory
from .phases import PhaseResult

# A file or a pipe gets 80 columns from rich, too narrow for the results table.
console = Console(width=None if sys.stdout.isatty() else 160)

TABLE_HEADER = ["phase", "tokens", "batch", "requests", "Triton ok", "failed", "p50 ms", "p99 ms", "infer/s",
                "mem warm-up MiB", "mem final MiB", "mem growth"]


def judge_phase(result: PhaseResult, sampler: memory.MemorySampler | None, limit: float) -> None:
    """Adds the memory report over the phase's span and the phase's problems to `result`."""
    if sampler is not None:
        result.memory = memory_report(sampler, *result.memory_clock_s)
    problems = []
    if result.failures or result.failed_models:
        where = ", ".join(f"{name}: {count}" for name, count in result.failed_models.items())
        problems.append(f"{result.failures} failed requests" + (f" (Triton fail counts {where})" if where else ""))
    if result.status != "ok" and not result.failures:
        problems.append(f"perf_analyzer exit {result.perf_analyzer_exit}: {result.error or ''}")
    if result.unanswered:
        problems.append(f"{result.unanswered} requests got no response")
    result.problems = problems + memory_problems(result.memory, limit)


def memory_report(sampler: memory.MemorySampler, start_s: float, end_s: float) -> dict[str, Any]:
    try:
        report = memory.analyze(sampler.samples(), start_s, end_s)
    except ValueError as error:
        return {"error": str(error)}
    return {label: growth.as_dict() for label, growth in report.items()}


def memory_problems(report: dict | None, limit: float) -> list[str]:
    if report is None:
        return []
    if "error" in report:
        return [f"memory not judged: {report['error']}"]
    return memory.exceeded({label: memory.Growth(**values) for label, values in report.items()}, limit)


def log_phase(result: PhaseResult) -> None:
    if result.status != "ok":
        console.log(f"[red]{result.phase.name}: perf_analyzer failed[/] {(result.error or '')[:300]}")
        return
    total = (result.memory or {}).get(memory.TOTAL)
    memory_text = f"  memory {total['growth']:+.1%}" if total else ""
    console.log(f"{result.phase.name:<10} {result.requests:>7} requests  {result.failures} failed  "
                f"p50 {result.latency['p50_ms']:.1f} ms  p99 {result.latency['p99_ms']:.1f} ms  "
                f"{result.latency['throughput']:.1f} infer/s{memory_text}")


def as_json(document: dict[str, Any], phases: list[PhaseResult]) -> dict[str, Any]:
    """The run as load.json holds it: its description and every phase so far."""
    return {**document, "phases": [phase.as_dict() for phase in phases]}


def write(out_dir: Path, document: dict[str, Any], phases: list[PhaseResult],
          sampler: memory.MemorySampler | None) -> None:
    (out_dir / "load.json").write_text(json.dumps(as_json(document, phases), indent=2, default=str))
    (out_dir / "summary.md").write_text(summary_markdown(document, phases))
    if sampler is not None:
        header, rows = memory.samples_table(sampler.samples())
        with (out_dir / "memory.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


def _table_rows(document: dict[str, Any], phases: list[PhaseResult]) -> list[list[str]]:
    rows = []
    for result in phases:
        total = (result.memory or {}).get(memory.TOTAL)
        rows.append([
            result.phase.name, result.phase.tokens, str(result.phase.batch_size), str(result.requests),
            str(result.server_success), str(result.failures),
            _number(result.latency.get("p50_ms")), _number(result.latency.get("p99_ms")),
            _number(result.latency.get("throughput")),
            _number(total and total["warmup_mib"], 0), _number(total and total["final_mib"], 0),
            f"{total['growth']:+.1%}" if total else "-",
        ])
    whole = document.get("memory_whole_run", {}).get(memory.TOTAL)
    if whole:
        rows.append(["whole run", "", "", str(sum(p.requests for p in phases)),
                     str(sum(p.server_success for p in phases)), str(sum(p.failures for p in phases)),
                     "-", "-", "-", f"{whole['warmup_mib']:.0f}", f"{whole['final_mib']:.0f}",
                     f"{whole['growth']:+.1%}"])
    return rows


def print_table(document: dict[str, Any], phases: list[PhaseResult]) -> None:
    table = Table(title=f"{document['ensemble']} under load, concurrency {document['concurrency']}")
    for column in TABLE_HEADER:
        table.add_column(column, justify="left" if column in ("phase", "tokens") else "right")
    for row in _table_rows(document, phases):
        table.add_row(*row)
    console.print(table)


def summary_markdown(document: dict[str, Any], phases: list[PhaseResult]) -> str:
    lines = [
        f"# Load: {document['ensemble']}, concurrency {document['concurrency']}",
        "",
        f"Started {document['started']}, finished {document.get('finished', '(running)')}; "
        f"max_batch_size {document['max_batch_size']}, max_length {document['max_length']}; "
        f"{document['machine']['cpu_model']}, {document['machine']['cpus_usable']} cores; "
        f"{document['machine']['perf_analyzer']}.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
        *("| " + " | ".join(row) + " |" for row in _table_rows(document, phases)),
        "",
        "Memory is the resident memory of tritonserver and its Python-backend stubs together; "
        f"growth is from the warm-up value to the final value of each phase (limit "
        f"{document['max_memory_growth']:.0%}). Per process:",
        "",
        "| phase | process | warm-up MiB | final MiB | peak MiB | growth |",
        "|---|---|---|---|---|---|",
        *_memory_lines(document, phases),
    ]
    if "problems" in document:
        lines += ["", "**Passed.**" if document["passed"] else "**Failed:**"]
        lines += [f"- {problem}" for problem in document["problems"]]
    return "\n".join(lines) + "\n"


def _memory_lines(document: dict[str, Any], phases: list[PhaseResult]) -> list[str]:
    stretches = [(result.phase.name, result.memory or {}) for result in phases]
    stretches.append(("whole run", document.get("memory_whole_run", {})))
    return [f"| {name} | {label} | {growth['warmup_mib']:.0f} | {growth['final_mib']:.0f} "
            f"| {growth['peak_mib']:.0f} | {growth['growth']:+.1%} |"
            for name, report in stretches for label, growth in report.items() if label != "error"]


def print_verdict(document: dict[str, Any], out_dir: Path) -> None:
    console.print(f"[bold]results:[/] {out_dir / 'load.json'}  {out_dir / 'summary.md'}")
    if document["passed"]:
        console.print("[bold green]passed:[/] no failed requests, memory within "
                      f"{document['max_memory_growth']:.0%} after warm-up in every phase")
    for problem in document["problems"]:
        console.print(f"[bold red]FAILED[/] {problem}")


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
