"""Realistic validation texts for the converter's gate: what users of an intent model type.

Two sources, disjoint:
- the original set (`validation_sentences`): short queries (1 to 20 words), long
  single-intent messages (30 to 125 tokens), paragraphs joined in pairs to run past the
  maximum length (truncation) and an empty string (the 2-token [CLS] [SEP] case);
- `labelled_intents.tsv`: texts written for every class of the minilm-intent head (the
  CLINC150 intents, out-of-scope `oos` and six routing intents), short and long, with
  typos, odd casing, numbers and dates, non-English names, each with the intent a person
  would give it, so accuracy can be reported and not only agreement.

Every text belongs to one of two parts, decided by a stable hash of the text alone: the
build chooses its INT8 variant on the selection part and the gate grades on the held-out
part, which the choice never saw. Never validate on constant inputs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).with_name("data")
SHORT_FILE = DATA / "validation_sentences.txt"
LONG_FILE = DATA / "validation_long_messages.txt"
LABELLED_FILE = DATA / "labelled_intents.tsv"
PARAGRAPH_WORDS = 60   # messages longer than this many words are paragraphs

SELECTION, HELD_OUT = "selection", "held-out"


@dataclass(frozen=True)
class ValidationText:
    text: str
    intent: str | None     # the intent a person would give it; None for the unlabelled texts

    @property
    def part(self) -> str:
        return part_of(self.text)


def part_of(text: str) -> str:
    """Selection or held-out, from the first byte of the text's SHA-256: the same text lands
    in the same part on every machine and in every run, whatever else is in the set."""
    return SELECTION if hashlib.sha256(text.encode("utf-8")).digest()[0] % 2 == 0 else HELD_OUT


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def over_length_passages(messages: list[str]) -> list[str]:
    """Each paragraph followed by the next: 200+ tokens, cut to the maximum when tokenized."""
    paragraphs = [m for m in messages if len(m.split()) > PARAGRAPH_WORDS]
    return [f"{a} {b}" for a, b in zip(paragraphs, paragraphs[1:] + paragraphs[:1])]


def validation_sentences() -> list[str]:
    """The original validation set (212 texts, unlabelled), in a fixed order."""
    short, long = read_lines(SHORT_FILE), read_lines(LONG_FILE)
    return short + long + over_length_passages(long) + [""]


def labelled_texts(path: Path = LABELLED_FILE) -> list[ValidationText]:
    """`intent<TAB>text` lines under an `intent<TAB>text` header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "intent\ttext":
        raise ValueError(f"{path}: the first line must be the header 'intent<TAB>text'")
    texts = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not all(f.strip() for f in fields):
            raise ValueError(f"{path}:{number}: expected 'intent<TAB>text', got {line!r}")
        texts.append(ValidationText(fields[1].strip(), fields[0].strip()))
    return texts


def validation_texts() -> list[ValidationText]:
    """The whole gate set: the original texts, then the labelled ones."""
    return [ValidationText(text, None) for text in validation_sentences()] + labelled_texts()
