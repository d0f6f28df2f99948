"""Handcrafted feature groups, each a named unit that ablation can switch off.

A group computes per-response ("side") values, from which the extractor derives ``a_*``,
``b_*``, ``diff_*`` (A - B) and, for counts, ``logratio_*``; and optionally symmetric
pair/prompt values. Known arena biases motivate them: longer, better formatted answers win
more often; near-identical answers and refusals tie or lose.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from features.readability import readability_scores

WORD_RE = re.compile(r"\w+", re.UNICODE)
SENTENCE_END_RE = re.compile(r"[.!?]+(?:\s|$)")
MATTR_WINDOW = 50


@dataclass(frozen=True)
class TextView:
    """One side of a battle, tokenised once and shared by every group."""

    text: str
    n_turns: int
    words: tuple[str, ...] = field(repr=False)

    @classmethod
    def from_turns(cls, turns: list[str]) -> "TextView":
        text = "\n\n".join(turns)
        return cls(text=text, n_turns=sum(bool(t.strip()) for t in turns), words=tuple(WORD_RE.findall(text.lower())))

    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(self.words)


@dataclass(frozen=True)
class FeatureGroup:
    """``side(view, prompt)`` gives per-response values; ``pair(a, b, prompt)`` symmetric ones.

    ``ratio_keys`` are non-negative counts that also get a log ratio.
    """

    name: str
    side: Callable[[TextView, TextView], dict[str, float]]
    ratio_keys: tuple[str, ...] = ()
    pair: Callable[[TextView, TextView, TextView], dict[str, float]] | None = None


# --- length -------------------------------------------------------------------------------

def _length_side(view: TextView, prompt: TextView) -> dict[str, float]:
    return {
        "chars": len(view.text),
        "words": len(view.words),
        "lines": view.text.count("\n") + 1 if view.text else 0,
        "turns": view.n_turns,
        "empty": float(not view.text.strip()),
    }


def _length_pair(a: TextView, b: TextView, prompt: TextView) -> dict[str, float]:
    return {
        "prompt_chars": len(prompt.text),
        "prompt_words": len(prompt.words),
        "prompt_turns": prompt.n_turns,
        "pair_both_empty": float(not a.text.strip() and not b.text.strip()),
    }


# --- lexical diversity --------------------------------------------------------------------

def moving_average_ttr(words: tuple[str, ...], window: int = MATTR_WINDOW) -> float:
    """MATTR (Covington & McFall 2010): type/token ratio averaged over sliding windows,
    so unlike plain TTR it does not fall just because a text is longer."""
    n = len(words)
    if n == 0:
        return 0.0
    if n <= window:
        return len(set(words)) / n
    counts = Counter(words[:window])
    distinct = len(counts)
    total = distinct
    for i in range(window, n):
        new, old = words[i], words[i - window]
        counts[new] += 1
        distinct += counts[new] == 1
        counts[old] -= 1
        distinct -= counts[old] == 0
        total += distinct
    return total / ((n - window + 1) * window)


def _lexical_side(view: TextView, prompt: TextView) -> dict[str, float]:
    n = len(view.words)
    types = len(view.vocabulary)
    sentences = len(SENTENCE_END_RE.findall(view.text)) or (1 if n else 0)
    return {
        "ttr": types / n if n else 0.0,
        "root_ttr": types / math.sqrt(n) if n else 0.0,
        "mattr": moving_average_ttr(view.words),
        "mean_word_len": sum(map(len, view.words)) / n if n else 0.0,
        "words_per_sentence": n / sentences if sentences else 0.0,
    }


# --- overlap ------------------------------------------------------------------------------

def _jaccard(x: frozenset[str], y: frozenset[str]) -> float:
    union = len(x | y)
    return len(x & y) / union if union else 0.0


def _overlap_side(view: TextView, prompt: TextView) -> dict[str, float]:
    vocab, pvocab = view.vocabulary, prompt.vocabulary
    return {
        "prompt_recall": len(vocab & pvocab) / len(pvocab) if pvocab else 0.0,
        "prompt_jaccard": _jaccard(vocab, pvocab),
    }


def _overlap_pair(a: TextView, b: TextView, prompt: TextView) -> dict[str, float]:
    return {
        "pair_jaccard_ab": _jaccard(a.vocabulary, b.vocabulary),
        "pair_identical": float(a.text == b.text),
        "pair_identical_normalised": float(" ".join(a.words) == " ".join(b.words)),
    }


# --- readability --------------------------------------------------------------------------

def _readability_side(view: TextView, prompt: TextView) -> dict[str, float]:
    return readability_scores(view.text)


# --- formatting ---------------------------------------------------------------------------

FORMAT_PATTERNS = {
    "headers": re.compile(r"^\s{0,3}#{1,6}\s+\S", re.M),
    "bullets": re.compile(r"^\s*[-*+\u2022]\s+\S", re.M),
    "numbered": re.compile(r"^\s*\d{1,3}[.)]\s+\S", re.M),
    "code_blocks": re.compile(r"^\s*```", re.M),
    "inline_code": re.compile(r"(?<!`)`[^`\n]+`(?!`)"),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
    "italic": re.compile(r"(?<![*\w])\*[^*\s][^*\n]*\*(?![*\w])|(?<![_\w])_[^_\s][^_\n]*_(?![_\w])"),
    "links": re.compile(r"\[[^\]\n]+\]\([^)\s]+\)|https?://\S+"),
    "table_rows": re.compile(r"^\s*\|.*\|\s*$", re.M),
    "paragraphs": re.compile(r"(?:^|\n\s*\n)\s*\S"),
    "questions": re.compile(r"\?"),
    "exclamations": re.compile(r"!"),
    "refusal": re.compile(
        r"\b(?:i can(?:no|')t|i (?:am|'m) (?:not able|unable)|i won'?t be able|as an ai|"
        r"as a (?:large )?language model|i do(?: not|n'?t) have (?:access|the ability)|not appropriate)\b",
        re.I,
    ),
    "apology": re.compile(r"\b(?:i(?: a|')m sorry|i apologi[sz]e|my apologies|sorry,)", re.I),
}
FORMAT_COUNT_KEYS = tuple(FORMAT_PATTERNS)


def _formatting_side(view: TextView, prompt: TextView) -> dict[str, float]:
    counts = {name: len(p.findall(view.text)) for name, p in FORMAT_PATTERNS.items()}
    counts["code_blocks"] //= 2  # a block is an opening and a closing fence
    return counts


GROUPS: dict[str, FeatureGroup] = {
    g.name: g
    for g in (
        FeatureGroup("length", _length_side, ratio_keys=("chars", "words", "lines"), pair=_length_pair),
        FeatureGroup("lexical", _lexical_side),
        FeatureGroup("overlap", _overlap_side, pair=_overlap_pair),
        FeatureGroup("readability", _readability_side),
        FeatureGroup("formatting", _formatting_side, ratio_keys=FORMAT_COUNT_KEYS),
    )
}
