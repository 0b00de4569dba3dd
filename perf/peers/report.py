"""OUT/results.json -> OUT/peers.md and OUT/peers.csv: correctness first, then speed, with ratios.

A peer whose embeddings missed the reference is listed as wrong and gets no speed figures or
rank; one that failed to run is listed with its error. Ratios are to plain ONNX Runtime
in-process on the repository's graph (`ort`) of the same run: the floor a server is held to.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..errors import PerfError
from ..machine import one_line

FLOOR = "ort"
CSV_FIELDS = ("peer", "title", "where", "verdict", "cosine_min", "cosine_mean", "seq_len", "scenario",
              "throughput", "p50_ms", "p99_ms", "vs_ort", "throughput_min", "throughput_max")


def load_results(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "results.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise PerfError(f"{path} does not exist: run `python -m perf peers --out {out_dir}` first") from None
    except json.JSONDecodeError as error:
        raise PerfError(f"{path} is not valid JSON ({error}); run the peers again") from None
    if not isinstance(document.get("peers"), list) or "machine" not in document:
        raise PerfError(f"{path} is not a `python -m perf peers` results file (no 'peers' list or 'machine')")
    return document


def verdict(peer: dict[str, Any]) -> str:
    """'reference', 'ok', 'wrong output' or 'failed': only the first two are ranked."""
    if peer.get("error"):
        return "failed"
    checked = peer.get("check") or {}
    if checked.get("reference"):
        return "reference"
    return "ok" if checked.get("ok") else "wrong output"


def table_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per peer, length and scenario measured (one row, without figures, for a peer not measured)."""
    floors = _floor_figures(document)
    rows = []
    for peer in document["peers"]:
        checked = peer.get("check") or {}
        base = {"peer": peer["name"], "title": peer.get("title", ""), "where": peer.get("where", ""),
                "verdict": verdict(peer), "cosine_min": checked.get("cosine_min"),
                "cosine_mean": checked.get("cosine_mean")}
        measured = [row for row in peer.get("rows", []) if row.get("status") == "ok"]
        if base["verdict"] not in ("ok", "reference") or not measured:
            rows.append(base)
            continue
        for row in measured:
            key = (row["seq_len"], row["scenario"])
            rows.append({**base, "seq_len": row["seq_len"], "scenario": row["scenario"],
                         "throughput": row["throughput"], "p50_ms": row["p50_ms"], "p99_ms": row["p99_ms"],
                         "vs_ort": _ratio(row, floors.get(key)), **_spread(peer, key)})
    return rows


def _spread(peer: dict[str, Any], key: tuple[int, str]) -> dict[str, float]:
    """Lowest and highest throughput over the rounds (when there were several): how far to trust the median."""
    values = [row["throughput"] for result in peer.get("round_results", []) for row in result.get("rows", [])
              if row.get("status") == "ok" and (row["seq_len"], row["scenario"]) == key]
    return {"throughput_min": min(values), "throughput_max": max(values)} if len(values) > 1 else {}


def _floor_figures(document: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    floor = next((peer for peer in document["peers"] if peer["name"] == FLOOR and verdict(peer) == "ok"), None)
    rows = (floor or {}).get("rows", [])
    return {(row["seq_len"], row["scenario"]): row for row in rows if row.get("status") == "ok"}


def _ratio(row: dict[str, Any], floor: dict[str, Any] | None) -> float | None:
    """Throughput / the floor's (higher is better); at batch 1, 1 client: the floor's p50 / this p50."""
    if floor is None:
        return None
    if row["scenario"] == "b1":
        return floor["p50_ms"] / row["p50_ms"]
    return row["throughput"] / floor["throughput"]


def write_report(out_dir: Path) -> Path:
    document = load_results(out_dir)
    rows = table_rows(document)
    with open(Path(out_dir) / "peers.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = _markdown(document, rows)
    if _plot(rows, document.get("settings", {}).get("seq_lens", []), Path(out_dir) / "peers.png"):
        lines += ["", "![throughput by peer](peers.png)"]
    report = Path(out_dir) / "peers.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _markdown(document: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    settings = document.get("settings", {})
    lines = [f"# Embedding peers: {document.get('model', '?')}", "",
             f"- machine: {one_line(document['machine'])}",
             f"- started: {document.get('started', '?')}; load average at start "
             f"{_load(document.get('load_average_at_start'))}, at end {_load(document.get('load_average_at_end'))}",
             f"- {settings.get('seconds')} s per figure after {settings.get('warmup_requests')} warm-up texts"
             f"{_rounds(settings.get('rounds', 1))}; "
             f"distinct texts of exactly N tokens; check: cosine with sentence-transformers (torch) "
             f">= {settings.get('cosine_min')} on every check text", "",
             "## Correctness", "", "| peer | runs | min cosine | mean cosine | verdict |", "|---|---|---|---|---|"]
    for peer in document["peers"]:
        checked = peer.get("check") or {}
        note = peer.get("error") or checked.get("error") or ""
        lines.append(f"| {peer['name']} | {peer.get('where', '')} | {_number(checked.get('cosine_min'), 6)} | "
                     f"{_number(checked.get('cosine_mean'), 6)} | {verdict(peer)}{': ' + note[:160] if note else ''} |")
    lines += _notes(document)
    for seq_len in settings.get("seq_lens", []):
        lines += ["", *_speed_table(rows, seq_len)]
    return lines


def _notes(document: dict[str, Any]) -> list[str]:
    """What a reader must know to trust the figures: how each peer was run, and its defaults."""
    notes = ["", "How they ran: in-process peers share one model among the 8 clients (8 threads); "
             "the HTTP servers (infinity-emb, Triton HTTP) are driven by one client (http.client, "
             "a keep-alive connection per client, JSON requests; Triton returns the embedding as a binary tensor); "
             "Triton gRPC by tritonclient."]
    for peer in document["peers"]:
        if peer.get("command"):
            notes.append(f"- {peer['name']}: `infinity_emb {peer['command']}`")
        if peer.get("optimized_graph") is False:
            notes.append(f"- {peer['name']}: infinity logged \"Optimization failed\" (its optimum-1 option is "
                         "rejected by optimum 2) and served the exported graph without ONNX Runtime's "
                         "transformer fusions")
        if peer.get("graph"):
            notes.append(f"- {peer['name']}: `{peer['graph']}`, ONNX Runtime's default threads, spinning")
    return notes


def _speed_table(rows: list[dict[str, Any]], seq_len: int) -> list[str]:
    """Ranked by batch-32 throughput; ratios to ONNX Runtime in-process in brackets."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.get("seq_len") == seq_len:
            figures.setdefault(row["peer"], {})[row["scenario"]] = row
    ranked = sorted(figures, key=lambda name: -figures[name].get("b32", {}).get("throughput", 0.0))
    lines = [f"## {seq_len} tokens", "",
             "| rank | peer | batch 1 p50 ms | batch 1 p99 ms | 8 clients texts/s | batch 32 texts/s |",
             "|---|---|---|---|---|---|"]
    for rank, name in enumerate(ranked, start=1):
        one, eight, batch = (figures[name].get(key, {}) for key in ("b1", "c8", "b32"))
        lines.append(f"| {rank} | {name} | {_number(one.get('p50_ms'), 2)}{_times(one)} | "
                     f"{_number(one.get('p99_ms'), 2)} | {_number(eight.get('throughput'), 1)}{_times(eight)} | "
                     f"{_number(batch.get('throughput'), 1)}{_times(batch)}{_range(batch)} |")
    lines += ["", f"(×N: against `{FLOOR}`, ONNX Runtime in-process on the same graph, in this run; "
              "above 1 is better: its p50 over this p50 at batch 1, this throughput over its throughput otherwise. "
              "[low–high]: the batch-32 throughput's range over the rounds.)"]
    return lines


def _rounds(rounds: int) -> str:
    return f", each the median of {rounds} rounds (every peer in turn, then again)" if rounds > 1 else ""


def _range(row: dict[str, Any]) -> str:
    return f" [{row['throughput_min']:.0f}–{row['throughput_max']:.0f}]" if "throughput_min" in row else ""


def _times(row: dict[str, Any]) -> str:
    return f" (×{row['vs_ort']:.2f})" if row.get("vs_ort") is not None else ""


def _number(value: Any, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _load(values: Any) -> str:
    return "?" if not values else " / ".join(f"{value:.2f}" for value in values)


def _plot(rows: list[dict[str, Any]], seq_lens: list[int], path: Path) -> bool:
    """Horizontal bars: 8-client and batch-32 throughput of every correct peer, one panel per length."""
    measured = [row for row in rows if row.get("scenario") in ("c8", "b32")]
    if not measured or not seq_lens:
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(seq_lens), figsize=(5.5 * len(seq_lens), 4.5), squeeze=False)
    for axes, seq_len in zip(panels[0], seq_lens):
        at_length = [row for row in measured if row["seq_len"] == seq_len]
        names = sorted({row["peer"] for row in at_length},
                       key=lambda name: max(r["throughput"] for r in at_length if r["peer"] == name))
        for offset, (scenario, label) in enumerate((("c8", "batch 1, 8 clients"), ("b32", "batch 32, 1 client"))):
            values = [next((r["throughput"] for r in at_length if r["peer"] == name and r["scenario"] == scenario),
                           0.0) for name in names]
            axes.barh([index + offset * 0.4 for index in range(len(names))], values, 0.4, label=label)
        axes.set_yticks([index + 0.2 for index in range(len(names))], names)
        axes.set_xlabel("texts per second")
        axes.set_title(f"{seq_len} tokens")
        axes.legend(fontsize=8, frameon=False, loc="lower right")
        axes.grid(axis="x", alpha=0.25)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
