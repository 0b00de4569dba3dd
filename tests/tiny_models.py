"""Tiny randomly initialised checkpoints for fast converter tests.

They share MiniLM's real tokenizer (tokenizer.json and its 30522-token vocabulary), so
tokenization is real; only the weights are random and small.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from convert.source import minilm_checkpoint

INTENTS = ["greeting", "balance", "transfer", "weather"]


def _copy_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(minilm_checkpoint() / name, folder / name)


def tiny_bert_classifier(folder: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128,
                        id2label=dict(enumerate(INTENTS)), label2id={n: i for i, n in enumerate(INTENTS)})
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    _copy_tokenizer(folder)
    return folder


def tiny_distilbert(folder: Path) -> Path:
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(1)
    config = DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=128)
    DistilBertModel(config).eval().save_pretrained(folder)
    _copy_tokenizer(folder)
    return folder
