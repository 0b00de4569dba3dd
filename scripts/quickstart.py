"""The README's main command: build the default model if needed, serve it, classify, stop.

1. `python -m convert minilm-intent --if-stale` (skipped when triton_models/ is current);
2. the real tritonserver from the nvidia-pytriton wheel serves triton_models/ on the CPU;
3. example sentences go to the `minilm-intent` ensemble over gRPC and over HTTP;
4. labels, scores and a short latency line are printed; the server is stopped.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from client import EncoderClient  # noqa: E402
from serve import LocalTritonServer, ServerStartError  # noqa: E402

MODEL = "minilm-intent"
REPOSITORY = ROOT / "triton_models"
EXAMPLES = [
    "Hey, I'd like to rent a vehicle from Nov 1st to Nov 15th in Paris and I need a 15 passenger van",
    "how do you say thank you in japanese",
    "my card was declined at the store, can you check why",
    "wake me up at 6:30 tomorrow",
    "what's the weather going to be like in Seattle this weekend",
    "I want to talk to a real person",
]
console = Console(highlight=False)


def build_if_stale() -> None:
    command = [sys.executable, "-m", "convert", MODEL, "--out", str(REPOSITORY), "--if-stale"]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit("error: building the model repository failed (see above)")


def classify_table(server: LocalTritonServer) -> Table:
    table = Table(title=f"{MODEL} on a local Triton server", title_justify="left")
    for column in ("text", "gRPC label", "score", "HTTP label", "score"):
        table.add_column(column, overflow="fold")
    with EncoderClient(f"grpc://{server.grpc_url}", model=MODEL) as grpc_client, \
            EncoderClient(f"http://{server.http_url}", model=MODEL) as http_client:
        by_grpc = grpc_client.classify(EXAMPLES, top_k=1)
        by_http = http_client.classify(EXAMPLES, top_k=1)
    for text, g, h in zip(EXAMPLES, by_grpc, by_http):
        table.add_row(text, g.label, f"{g.score:.3f}", h.label, f"{h.score:.3f}")
    return table


def latency_line(server: LocalTritonServer, requests: int = 100) -> str:
    """Median and p90 of single-sentence requests through the client library, per protocol."""
    parts = []
    for scheme, url in (("gRPC", f"grpc://{server.grpc_url}"), ("HTTP", f"http://{server.http_url}")):
        with EncoderClient(url, model=MODEL) as client:
            samples = []
            for i in range(requests):
                started = time.perf_counter()
                client.classify([EXAMPLES[i % len(EXAMPLES)]])
                samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        parts.append(f"{scheme} p50 {statistics.median(samples):.2f} ms, p90 {samples[int(len(samples) * 0.9)]:.2f} ms")
    return (f"latency over {requests} single-sentence requests per protocol (client library, end to end): "
            + "; ".join(parts))


def main() -> int:
    build_if_stale()
    console.print(f"starting tritonserver on {REPOSITORY} ...")
    try:
        with LocalTritonServer(REPOSITORY) as server:
            console.print(f"serving: gRPC {server.grpc_url}, HTTP {server.http_url}")
            console.print(classify_table(server))
            console.print(latency_line(server))
    except ServerStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    console.print("server stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
