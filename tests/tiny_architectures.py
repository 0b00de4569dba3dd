"""One tiny checkpoint per supported architecture, with that architecture's own tokenizer type.

Random weights, two layers of width 32, but the real Hugging Face config and model classes
(`...ForSequenceClassification` with id2label for classification, `...Model` for embedding)
and the tokenizer each family ships, built here with the `tokenizers` library (no hub):

- bert, distilbert, electra: WordPiece (MiniLM's real tokenizer.json, 30522 tokens);
- roberta: byte-level BPE trained on the project's own texts, RoBERTa's special tokens
  (<s>=0 <pad>=1 </s>=2 <unk>=3 <mask>=4) and its post-processor (<s> ... </s>);
- xlm-roberta: SentencePiece-style Unigram (Metaspace pre-tokenizer) trained on the same
  texts, XLM-R's ids (<s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last).

Each folder holds config.json, model.safetensors, tokenizer.json and tokenizer_config.json,
which transformers' AutoTokenizer and the serving tokenizer both load.
"""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import torch

from convert.sentences import validation_sentences
from convert.source import SUPPORTED_MODEL_TYPES, minilm_checkpoint

ARCHITECTURES = ("bert", "distilbert", "electra", "roberta", "xlm-roberta")
TASKS = ("text-classification", "embedding")
LABELS = ["greeting", "balance", "transfer", "weather"]
WIDTH = dict(hidden=32, layers=2, heads=4, intermediate=64)
BPE_VOCAB = 1000        # tokens: tiny, but every text still splits into real subwords
UNIGRAM_VOCAB = 1000


def _corpus() -> list[str]:
    return validation_sentences()


def _wordpiece(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(minilm_checkpoint() / name, folder / name)


@functools.lru_cache
def _byte_level_bpe_json() -> str:
    from tokenizers import ByteLevelBPETokenizer, processors

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(_corpus(), vocab_size=BPE_VOCAB, min_frequency=1, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tokenizer.to_str()


@functools.lru_cache
def _unigram_json() -> str:
    from tokenizers import SentencePieceUnigramTokenizer, processors

    tokenizer = SentencePieceUnigramTokenizer()
    tokenizer.train_from_iterator(_corpus(), vocab_size=UNIGRAM_VOCAB, show_progress=False,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tokenizer.add_special_tokens(["<mask>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tokenizer.to_str()


SPECIAL_TOKENS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                      pad_token="<pad>", mask_token="<mask>")


def _trained(folder: Path, tokenizer_json: str, tokenizer_class: str) -> None:
    (folder / "tokenizer.json").write_text(tokenizer_json)
    config = {"tokenizer_class": tokenizer_class, "model_max_length": 512, **SPECIAL_TOKENS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def tokenizer_vocab_size(model_type: str) -> int:
    from tokenizers import Tokenizer

    if model_type == "roberta":
        return Tokenizer.from_str(_byte_level_bpe_json()).get_vocab_size()
    if model_type == "xlm-roberta":
        return Tokenizer.from_str(_unigram_json()).get_vocab_size()
    return 30522


def _config(model_type: str, task: str):
    from transformers import AutoConfig

    vocab = tokenizer_vocab_size(model_type)
    labels = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}) \
        if task == "text-classification" else {}
    h = WIDTH
    if model_type == "distilbert":
        return AutoConfig.for_model("distilbert", vocab_size=vocab, dim=h["hidden"], n_layers=h["layers"],
                                    n_heads=h["heads"], hidden_dim=h["intermediate"], **labels)
    common = dict(vocab_size=vocab, hidden_size=h["hidden"], num_hidden_layers=h["layers"],
                  num_attention_heads=h["heads"], intermediate_size=h["intermediate"], **labels)
    if model_type in ("roberta", "xlm-roberta"):
        # The real ones: 514 positions (512 + the pad id's offset), one token type, pad id 1.
        return AutoConfig.for_model(model_type, max_position_embeddings=514, type_vocab_size=1,
                                    pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)
    if model_type == "electra":
        # ELECTRA-small's shape: embeddings narrower than the hidden width, projected up.
        return AutoConfig.for_model("electra", embedding_size=h["hidden"] // 2, **common)
    return AutoConfig.for_model("bert", **common)


def tiny_checkpoint(folder: Path, model_type: str, task: str, seed: int = 0) -> Path:
    """A tiny random checkpoint of `model_type` for `task`, with its family's tokenizer."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{model_type} is not in convert.source.SUPPORTED_MODEL_TYPES")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    auto = AutoModelForSequenceClassification if task == "text-classification" else AutoModel
    auto.from_config(_config(model_type, task)).eval().save_pretrained(folder)
    if model_type == "roberta":
        _trained(folder, _byte_level_bpe_json(), "RobertaTokenizer")
    elif model_type == "xlm-roberta":
        _trained(folder, _unigram_json(), "XLMRobertaTokenizer")
    else:
        _wordpiece(folder)
    return folder


def model_name(model_type: str, task: str) -> str:
    return f"tiny-{model_type}-{'classify' if task == 'text-classification' else 'embed'}"


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.tiny_architectures FOLDER`: the ten checkpoints, to build by hand."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args(argv).folder
    for model_type in ARCHITECTURES:
        for task in TASKS:
            print(tiny_checkpoint(folder / model_name(model_type, task), model_type, task))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
