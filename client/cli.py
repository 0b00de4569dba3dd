"""python -m client: classify (or embed) texts with a served encoder from a terminal.

    python -m client "book a flight to Rome" "what's my balance" --top-k 3
    cat questions.txt | python -m client --json
    python -m client --file questions.txt --url http://127.0.0.1:8000 --model minilm-embed

Texts come from the arguments, else from --file (one per line, '-' for stdin), else
from stdin when it is not a terminal; blank lines are skipped. Classifier or embedding
is read from the model's task on the server. Exit status: 0 answered, 1 the client or
server failed (one line on stderr says why), 2 bad usage.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console

from . import render
from .async_client import DEFAULT_MODEL, DEFAULT_RETRIES, DEFAULT_TIMEOUT_S
from .endpoint import PROTOCOLS
from .errors import ClientError
from .sync_client import EncoderClient


class UsageError(Exception):
    """Bad arguments or no input: exit status 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="texts to send (default: --file or stdin)")
    parser.add_argument("--file", help="read texts from this file, one per line ('-' for stdin)")
    parser.add_argument("--url", help="grpc://host:port or http://host:port (default: 127.0.0.1, gRPC 8001); "
                                      "several servers: grpc://host1:8001,host2:8001")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="when --url has no scheme (default grpc)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"ensemble name (default {DEFAULT_MODEL})")
    parser.add_argument("--top-k", type=int, default=1, help="classifiers: also show the k best labels")
    parser.add_argument("--embed", action="store_true", help="require an embedding model (default: by its task)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per request")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES,
                        help="attempts after the first when the server is unreachable, a model is being "
                             "reloaded or its crashed process restored")
    return parser.parse_args(argv)


def read_texts(args: argparse.Namespace) -> list[str]:
    if args.texts:
        return list(args.texts)
    if args.file and args.file != "-":
        try:
            return _lines(Path(args.file).read_bytes(), args.file)
        except OSError as error:
            raise UsageError(f"cannot read --file {args.file}: {error.strerror}") from None
    if args.file == "-" or not sys.stdin.isatty():
        return _lines(sys.stdin.buffer.read(), "stdin")
    raise UsageError("no texts: pass them as arguments, with --file, or on stdin")


def _lines(raw: bytes, source: str) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UsageError(f"{source} is not valid UTF-8 (line {line}); convert it to UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"{source} holds no text (only blank lines)")
    return lines


def run(args: argparse.Namespace, texts: list[str], console: Console) -> None:
    with EncoderClient(args.url, protocol=args.protocol, model=args.model, timeout_s=args.timeout,
                       retries=args.retries) as client:
        info = client.info
        if args.embed and info.is_classifier:
            raise UsageError(f"--embed: {info.name} is a {info.task} model; pass an embedding model with --model")
        if not info.is_classifier and args.top_k != 1:
            raise UsageError(f"--top-k: {info.name} is an embedding model and has no labels")
        started = time.perf_counter()
        answers = client.classify(texts, top_k=args.top_k) if info.is_classifier else client.embed(texts)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        caption = f"{len(texts)} text(s) over {client.endpoint} in {elapsed_ms:.1f} ms"
        _show(args, texts, answers, info, caption, console)


def _show(args, texts, answers, info, caption: str, console: Console) -> None:
    if args.json:
        lines = (render.prediction_lines(texts, answers) if info.is_classifier
                 else render.embedding_lines(texts, answers))
        sys.stdout.write("\n".join(lines) + "\n")
    elif info.is_classifier:
        console.print(render.predictions_table(texts, answers, info, caption))
    else:
        console.print(render.embeddings_table(texts, answers, info, caption))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args, read_texts(args), Console())
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)  # one line, always
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
