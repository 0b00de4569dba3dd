"""The PyTorch model that is exported, and the reference every variant is validated against.

One module computes everything that is served: the encoder, mean pooling over the
attention mask, optional L2 normalisation and the classification head (Hugging Face's
own or a folded scikit-learn head), then softmax. Exporting this very module keeps the
ONNX graph and the reference from drifting apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .head import LinearHead, load_sklearn_head
from .source import ModelSpec, clinc_label_names


class ServingModel(nn.Module):
    """Token ids in; `logits` + `probabilities`, or `embedding`, out."""

    def __init__(self, encoder: nn.Module, task: str, normalize: bool, head: nn.Linear | None,
                 uses_token_type_ids: bool):
        super().__init__()
        self.encoder = encoder
        self.task = task
        self.normalize = normalize
        self.head = head
        self.uses_token_type_ids = uses_token_type_ids

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            kwargs["token_type_ids"] = token_type_ids
        output = self.encoder(**kwargs)
        if self.task == "text-classification" and self.head is None:
            logits = output.logits  # the checkpoint's own sequence-classification head
            return logits, torch.softmax(logits, dim=-1)
        embedding = self._mean_pool(output.last_hidden_state, attention_mask)
        if self.normalize:
            embedding = nn.functional.normalize(embedding, p=2.0, dim=-1)
        if self.head is None:
            return (embedding,)
        logits = self.head(embedding)
        return logits, torch.softmax(logits, dim=-1)

    @staticmethod
    def _mean_pool(hidden, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)


@dataclass
class Reference:
    model: ServingModel
    input_names: list[str]     # ONNX/Triton input names, in forward() order
    output_names: list[str]    # ONNX/Triton output names, in forward() order
    labels: list[str]          # class display names in output order ([] for embeddings)
    hidden_size: int
    num_heads: int
    max_positions: int         # the longest input, in tokens, the position embeddings allow
    pad_id: int = 0            # config.json's pad_token_id: what the serving tokenizer must pad with
    vocab_size: int = 30522


def _load_encoder(spec: ModelSpec, with_classifier: bool) -> nn.Module:
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own step line shows this step

    auto = AutoModelForSequenceClassification if with_classifier else AutoModel
    # Eager attention: SDPA exports to a graph ONNX Runtime's optimizer cannot fuse.
    model = auto.from_pretrained(spec.checkpoint, attn_implementation="eager", local_files_only=True)
    return model.eval()


def _labels_from_config(config: dict) -> list[str]:
    id2label = config["id2label"]
    return [str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in range(len(id2label))]


def _head_labels(spec: ModelSpec, head: LinearHead) -> list[str]:
    if not spec.clinc_labels:
        return head.class_names
    names = clinc_label_names(head.class_names)
    return [names[c] for c in head.class_names]


def build_reference(spec: ModelSpec) -> Reference:
    """Load the checkpoint (and head) into the module that is exported and validated against."""
    config = spec.config
    hidden_size = config.get("hidden_size") or config.get("dim")
    num_heads = config.get("num_attention_heads") or config.get("n_heads")
    uses_token_type_ids = config.get("type_vocab_size", 0) > 1
    own_classifier = spec.task == "text-classification" and spec.head_path is None
    encoder = _load_encoder(spec, with_classifier=own_classifier)

    head_layer, labels = None, []
    if spec.head_path is not None:
        head = load_sklearn_head(spec.head_path, hidden_size)
        head_layer = nn.Linear(hidden_size, len(head.class_names))
        with torch.no_grad():
            head_layer.weight.copy_(torch.from_numpy(head.weight))
            head_layer.bias.copy_(torch.from_numpy(head.bias))
        labels = _head_labels(spec, head)
    elif own_classifier:
        labels = _labels_from_config(config)

    model = ServingModel(encoder, spec.task, spec.normalize, head_layer, uses_token_type_ids).eval()
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if uses_token_type_ids else [])
    output_names = ["logits", "probabilities"] if spec.task == "text-classification" else ["embedding"]
    return Reference(model=model, input_names=input_names, output_names=output_names, labels=labels,
                     hidden_size=hidden_size, num_heads=num_heads, max_positions=max_input_tokens(config),
                     pad_id=config.get("pad_token_id") or 0, vocab_size=config["vocab_size"])


# Architectures that number positions from pad_token_id + 1 (fairseq's convention), so the
# first pad_token_id + 1 rows of the position table are never used by a token: RoBERTa's
# 514 rows hold 512 tokens.
POSITIONS_AFTER_PAD = {"roberta", "xlm-roberta"}


def max_input_tokens(config: dict) -> int:
    positions = config.get("max_position_embeddings", 512)
    if config.get("model_type") in POSITIONS_AFTER_PAD:
        return positions - (config.get("pad_token_id") or 0) - 1
    return positions
