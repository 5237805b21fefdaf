"""Word error rate: (substitutions + deletions + insertions) / reference words, on normalised words (lower case,
no punctuation, digits 0-20 spelled out, hyphens split). Pure; used by the tests and bench/transcription.py."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["edit_distance", "normalize", "word_error_rate"]

_NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]
_SPELLED = {str(i): word for i, word in enumerate(_NUMBERS)}
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> list[str]:
    """The words of `text` as compared."""
    words = _NOT_WORD.sub(" ", text.lower().replace("-", " ")).split()
    return [_SPELLED.get(w, w) for w in (w.strip("'") for w in words) if w]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[-1]


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """WER over (reference, hypothesis) pairs: total edits over total reference words."""
    edits = words = 0
    for ref, hyp in pairs:
        r = normalize(ref)
        edits += edit_distance(r, normalize(hyp))
        words += len(r)
    return edits / words if words else 0.0
