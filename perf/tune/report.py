"""The tuning report: the best configs found, by goal, within a p99 budget (tune.md, tune.csv, tune.json).

Goals, per token length and profiled model:
- lowest latency at concurrency 1 and batch 1 (the average: Model Analyzer records no p50),
- lowest p99 at concurrency 1 and batch 1,
- highest throughput at any load measured,
each among the measurements whose p99 is within the budget, beside the config as built
(Model Analyzer's `_config_default`) at the same load, so the gain is a ratio within one run.
"""
from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import PerfError
from ..machine import describe_machine, one_line
from .results import TuneRow, rows_from_json

GOALS: dict[str, tuple[str, Callable[[TuneRow], float], bool]] = {
    # goal -> (label, value, lower is better)
    "latency": ("lowest average latency, batch 1, concurrency 1", lambda row: row.avg_ms, True),
    "p99": ("lowest p99, batch 1, concurrency 1", lambda row: row.p99_ms, True),
    "throughput": ("highest throughput", lambda row: row.throughput, False),
}
CSV_FIELDS = ("tokens", "role", "variant", "batch_size", "concurrency", "throughput", "avg_ms", "p90_ms",
              "p95_ms", "p99_ms", "server_queue_ms", "server_compute_infer_ms", "settings")


def best(rows: list[TuneRow], goal: str, budget_p99_ms: float = float("inf")) -> TuneRow | None:
    """The best row for `goal` among those within the budget; None when none is."""
    _, value, lower_is_better = GOALS[goal]
    candidates = [row for row in rows if row.p99_ms <= budget_p99_ms]
    if goal != "throughput":
        candidates = [row for row in candidates if row.batch_size == 1 and row.concurrency == 1]
    if not candidates:
        return None
    return min(candidates, key=value) if lower_is_better else max(candidates, key=value)


def baseline(rows: list[TuneRow], row: TuneRow) -> TuneRow | None:
    """The config as built, measured at the same load as `row`."""
    return next((other for other in rows if other.is_default and other.batch_size == row.batch_size
                 and other.concurrency == row.concurrency), None)


def write_tune_report(rows: list[TuneRow], out_dir: Path, *, budget_p99_ms: float, preset: str, wall_s: float,
                      repository: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"preset": preset, "budget_p99_ms": budget_p99_ms, "repository": str(repository),
                "out_dir": str(out_dir), "wall_s": round(wall_s),
                "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": describe_machine(), "rows": [row.as_dict() for row in rows]}
    (out_dir / "tune.json").write_text(json.dumps(document, indent=1) + "\n")
    _write_csv(rows, out_dir / "tune.csv")
    report = out_dir / "tune.md"
    report.write_text(render(document, rows))
    return report


def rewrite_report(out_dir: Path) -> Path:
    """tune.md again from tune.json (after a change to this module)."""
    path = Path(out_dir) / "tune.json"
    if not path.is_file():
        raise PerfError(f"{path} not found: give the folder `python -m perf tune` wrote")
    document = json.loads(path.read_text())
    report = Path(out_dir) / "tune.md"
    report.write_text(render(document, rows_from_json(document)))
    return report


def _write_csv(rows: list[TuneRow], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**{field: getattr(row, field) for field in CSV_FIELDS[:-1]},
                             "settings": json.dumps(row.settings, sort_keys=True)})


def render(document: dict, rows: list[TuneRow]) -> str:
    budget = document["budget_p99_ms"]
    lines = [f"# perf tune: Model Analyzer's search, preset `{document['preset']}`", "",
             f"- Machine: {one_line(document['machine'])}; finished {document['finished']}, "
             f"{document['wall_s']} s in all",
             f"- Repository: {document['repository']}",
             f"- Budget: p99 <= {budget} ms. Latencies in ms per request; throughput in texts/s "
             "(perf_analyzer counts each text of a batch). `vs built` compares with the repository's config as built, "
             "measured in the same run at the same load.", "",
             "| tokens | model | goal | config | settings | batch | conc. | avg ms | p99 ms | texts/s | vs built |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (tokens, role), group in _groups(rows).items():
        for goal, (label, value, lower_is_better) in GOALS.items():
            chosen = best(group, goal, budget)
            if chosen is None:   # none within the budget: say so, and show the best one anyway
                chosen, label = best(group, goal), f"{label} (**over the budget**)"
            lines.append(_line(tokens, role, label, chosen, baseline(group, chosen) if chosen else None,
                               value, lower_is_better))
    lines += ["", "Every measurement:", "", "| tokens | model | config | settings | batch | conc. | avg ms | p99 ms "
              "| texts/s | server queue ms | server compute ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_measurement_line(row) for row in rows]
    lines += ["", "Apply one to a built repository (through its config writer):", "",
              f"    python -m perf tune apply --results {document.get('out_dir', '<this folder>')} "
              "--config <config> --repository <repository>", "",
              "The same in tune.csv; Model Analyzer's own reports: ma/<tokens>-<search>/export/."]
    return "\n".join(lines) + "\n"


def _groups(rows: list[TuneRow]) -> dict[tuple[int, str], list[TuneRow]]:
    groups: dict[tuple[int, str], list[TuneRow]] = {}
    for row in rows:
        groups.setdefault((row.tokens, row.role), []).append(row)
    return dict(sorted(groups.items()))


def _measurement_line(row: TuneRow) -> str:
    return (f"| {row.tokens} | {row.role} | `{row.variant}` | {_settings_text(row.settings)} | {row.batch_size} | "
            f"{row.concurrency} | {row.avg_ms:.2f} | {row.p99_ms:.2f} | {row.throughput:.0f} | "
            f"{row.server_queue_ms:.2f} | {row.server_compute_infer_ms:.2f} |")


def _line(tokens: int, role: str, label: str, chosen: TuneRow | None, built: TuneRow | None,
          value: Callable[[TuneRow], float], lower_is_better: bool) -> str:
    if chosen is None:
        return f"| {tokens} | {role} | {label} | none measured | | | | | | | |"
    ratio = ""
    if built is not None and value(built) and value(chosen):
        ratio = f"{value(built) / value(chosen):.2f}x" if lower_is_better else f"{value(chosen) / value(built):.2f}x"
    return (f"| {tokens} | {role} | {label} | `{chosen.variant}` | {_settings_text(chosen.settings)} | "
            f"{chosen.batch_size} | {chosen.concurrency} | {chosen.avg_ms:.2f} | {chosen.p99_ms:.2f} | "
            f"{chosen.throughput:.0f} | {ratio} |")


def _settings_text(settings: dict[str, dict]) -> str:
    """'fused: 2 instances, max batch 32, queue 0 µs, threads 0, spin 1' (one clause per model)."""
    clauses = []
    for model, fields in settings.items():
        delay = fields["max_queue_delay_us"]
        queue = "no dynamic batching" if delay is None else f"queue {delay} µs"
        parts = [f"{fields['instance_count']} inst.", f"max batch {fields['max_batch_size']}", queue]
        parts += [f"{key} {fields[key]}" for key in ("intra_op_threads", "spin") if key in fields]
        clauses.append(f"{model.rsplit('-', 1)[-1]}: " + ", ".join(parts))
    return "; ".join(clauses)
