"""Realistic validation texts for the converter's gate: what users of an intent model type.

Short queries (1 to 20 words), long single-intent messages (30 to 125 tokens), and
paragraphs joined in pairs to run past the maximum length, so truncation is exercised.
An empty string adds the 2-token case ([CLS] [SEP]). Never validate on constant inputs.
"""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).with_name("data")
SHORT_FILE = DATA / "validation_sentences.txt"
LONG_FILE = DATA / "validation_long_messages.txt"
PARAGRAPH_WORDS = 60   # messages longer than this many words are paragraphs


def read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def over_length_passages(messages: list[str]) -> list[str]:
    """Each paragraph followed by the next: 200+ tokens, cut to the maximum when tokenized."""
    paragraphs = [m for m in messages if len(m.split()) > PARAGRAPH_WORDS]
    return [f"{a} {b}" for a, b in zip(paragraphs, paragraphs[1:] + paragraphs[:1])]


def validation_sentences() -> list[str]:
    """The default validation set (over 200 texts), in a fixed order."""
    short, long = read_lines(SHORT_FILE), read_lines(LONG_FILE)
    return short + long + over_length_passages(long) + [""]
