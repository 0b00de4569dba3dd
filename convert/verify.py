"""python -m convert.verify: does a running server answer like the PyTorch model it was built from?

    python -m convert.verify --url grpc://127.0.0.1:8001                # local server, preset model
    python -m convert.verify --url triton:8001 --repository /models/repository   # compose's verify service

Sends the validation texts of the build's gate (convert/data/) to the served ensemble, one
text per request and then in batches of the server's max_batch_size, and compares the answers
with the FP32 PyTorch reference (convert/reference.py) under the thresholds of the served
precision (convert/validate.py's THRESHOLDS, the gate's own). For classifiers it compares
PROBABILITIES, for embedding models EMBEDDING. On a GPU this is the check of what is really
served there (ONNX Runtime's TensorRT accelerator in FP16), which the build cannot run.

It lives in convert, not in the client, because the reference needs torch and transformers;
the client stays tritonclient + numpy. Exit status: 0 within every threshold, 1 past one (the
report names it), 2 when it cannot compare (bad usage, server down, no reference, wrong model).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from ._client import ClientError, EncoderClient, ModelInfo
from .errors import ConvertError
from .sentences import validation_sentences
from .source import PRESETS, ModelSpec, resolve_model_spec

PASSED, FAILED, CANNOT_RUN = 0, 1, 2


@dataclass(frozen=True)
class Target:
    """What is compared: the served model, and the checkpoint its reference is built from."""
    info: ModelInfo
    spec: ModelSpec
    precision: str
    reference_source: str   # said in the report: where the reference came from


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m convert.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="grpc://host:port or http://host:port of the server (default 127.0.0.1:8001)")
    parser.add_argument("--model", default="minilm-intent", help="the served ensemble (default minilm-intent)")
    parser.add_argument("--repository", type=Path,
                        help="the served model repository: its manifest names the checkpoint and head "
                             "it was built from")
    parser.add_argument("--checkpoint", type=Path, help="the Hugging Face folder to build the reference from")
    parser.add_argument("--head", type=Path, help="with --checkpoint: the scikit-learn head of a classifier")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                        help="hold the answers to this precision's thresholds "
                             "(default: what the server says it serves)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- what to compare with

def manifest_entry(repository: Path | None, model: str) -> dict:
    if repository is None:
        return {}
    manifest = repository / "manifest.json"
    if not manifest.is_file():
        raise ConvertError(f"{repository} has no manifest.json: pass the folder `python -m convert --out` wrote")
    return json.loads(manifest.read_text()).get("models", {}).get(model, {})


def reference_spec(args: argparse.Namespace, entry: dict, name: str) -> tuple[ModelSpec, str]:
    """The checkpoint the served model was built from: --checkpoint, else the preset of that
    name, else the manifest's source (paths of the machine that built it)."""
    if args.checkpoint:
        return resolve_model_spec(str(args.checkpoint), head=args.head, name=name), str(args.checkpoint)
    if name in PRESETS:
        return resolve_model_spec(name), f"preset {name}"
    source = entry.get("source")
    if source and Path(source).is_dir():
        head = Path(entry["head"]) if entry.get("head") else None
        spec = resolve_model_spec(source, task=entry.get("task"), head=head, name=name,
                                  normalize=entry.get("normalize", True))
        return spec, f"{source} (from the manifest)"
    raise ConvertError(f"no reference for {name}: it is not a preset ({', '.join(PRESETS)}) and "
                       f"{'the manifest names no checkpoint on this machine' if entry else 'no --repository was given'}"
                       "; "
                       "pass --checkpoint (and --head for a classifier)")


def resolve_target(args: argparse.Namespace, info: ModelInfo) -> Target:
    entry = manifest_entry(args.repository, info.name)
    spec, source = reference_spec(args, entry, info.name)
    if spec.task != info.task:
        raise ConvertError(f"the server's {info.name} is a {info.task} model but the reference ({source}) is "
                           f"{spec.task}: point --model or --checkpoint at the same model")
    served = info.parameters.get("precision") or entry.get("precision")
    if entry.get("precision") and served and entry["precision"] != served:
        raise ConvertError(f"the server serves {info.name} in {served} but {args.repository}/manifest.json says "
                           f"{entry['precision']}: is that the repository the server loaded?")
    precision = args.precision or served
    if not precision:
        raise ConvertError(f"neither the server nor a manifest says which precision {info.name} serves; "
                           "pass --precision")
    return Target(info, spec, precision, source)


# ---------------------------------------------------------------- the comparison

def reference_rows(spec: ModelSpec, texts: list[str], max_length: int, output: str) -> np.ndarray:
    """The FP32 PyTorch reference, one text at a time (no padding can leak in)."""
    from .python_models.tokenizer_model import encode, load_tokenizer
    from .reference import build_reference
    from .validate import reference_outputs

    reference = build_reference(spec)
    tokenizer = load_tokenizer(spec.checkpoint / "tokenizer.json", max_length)
    with_types = "token_type_ids" in reference.input_names
    feeds = [encode(tokenizer, [text], with_types) for text in texts]
    return reference_outputs(reference.model, feeds, reference.output_names.index(output))


def served_rows(client: EncoderClient, texts: list[str], is_classifier: bool) -> tuple[np.ndarray, np.ndarray]:
    """(one text per request, the whole list at once: batches of max_batch_size) from the server."""
    ask = client.probabilities if is_classifier else client.embed
    single = np.concatenate([ask([text]) for text in texts])
    return single, ask(texts)


def metrics(candidate: np.ndarray, expected: np.ndarray, is_classifier: bool, prefix: str) -> dict[str, float]:
    """Named as the build's gate names them, so its thresholds apply (on probabilities here)."""
    found = {f"{prefix}max_abs": float(np.abs(candidate - expected).max())}
    if is_classifier:
        found[f"{prefix}top1_agreement"] = float((candidate.argmax(-1) == expected.argmax(-1)).mean())
    else:
        cosine = (candidate * expected).sum(-1) / (np.linalg.norm(candidate, axis=-1) *
                                                   np.linalg.norm(expected, axis=-1) + 1e-12)
        found[f"{prefix}cosine_mean"], found[f"{prefix}cosine_min"] = float(cosine.mean()), float(cosine.min())
    return found


def compare(target: Target, client: EncoderClient, texts: list[str]):
    from . import validate

    is_classifier = target.info.is_classifier
    expected = reference_rows(target.spec, texts, target.info.max_length or 128,
                              "probabilities" if is_classifier else "embedding")
    single, batched = served_rows(client, texts, is_classifier)
    report = validate.VariantReport(variant=f"served {target.info.name}", precision=target.precision,
                                    sentences=len(texts))
    report.metrics |= metrics(single, expected, is_classifier, "single_")
    report.metrics |= metrics(batched, expected, is_classifier, "batched_")
    report.metrics |= metrics(batched, single, is_classifier, "batch_vs_single_")
    return validate.apply_thresholds(report)


# ---------------------------------------------------------------- the report

def show(report, target: Target, endpoint: str, console: Console) -> None:
    output = "PROBABILITIES" if target.info.is_classifier else "EMBEDDING"
    table = Table(title=f"{endpoint} {target.info.describe()}\nagainst PyTorch FP32 ({target.reference_source}), "
                        f"{report.sentences} texts, {output}, {target.precision} thresholds", title_justify="left")
    for column in ("metric", "measured", "limit", "result"):
        table.add_column(column)
    for metric, value in report.metrics.items():
        limit = report.limits.get(metric, "-")
        failed = any(failure.startswith(f"{metric} =") for failure in report.failures)
        table.add_row(metric, f"{value:.6g}", limit, "[red]FAILED[/red]" if failed else "ok" if limit != "-" else "")
    console.print(table)
    if report.passed:
        console.print(f"[green]passed[/green]: {target.info.name} answers within the {target.precision} thresholds")
    else:
        console.print(f"[red]FAILED[/red]: {target.info.name}: {'; '.join(report.failures)}")


def run(args: argparse.Namespace, console: Console) -> int:
    texts = [text for text in validation_sentences() if text.strip()]   # the server refuses empty text
    with EncoderClient(args.url, model=args.model, timeout_s=args.timeout) as client:
        target = resolve_target(args, client.info)
        report = compare(target, client, texts)
        if args.json:
            where = {"endpoint": str(client.endpoint), "reference": target.reference_source}
            print(json.dumps(report.as_dict() | where))
        else:
            show(report, target, str(client.endpoint), console)
    return PASSED if report.passed else FAILED


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    try:
        return run(args, Console())
    except (ConvertError, ClientError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
