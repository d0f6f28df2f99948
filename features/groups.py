"""Handcrafted feature groups, each a named unit that ablation can switch off.

A group computes per-response ("side") values, from which the extractor derives ``a_*``,
``b_*``, ``diff_*`` (A - B) and, for counts, ``logratio_*``; and optionally symmetric
pair/prompt values. Known arena biases motivate them: longer, better formatted answers win
more often; near-identical answers and refusals tie or lose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from features.failure import failure_pair, no_side_values
from features.readability import readability_scores
from features.sentiment import sentiment_side
from features.similarity import similarity_pair, similarity_side
from features.spelling import spelling_side
from features.text_view import FORMAT_PATTERNS, TextView, prompt_recall

SENTENCE_END_RE = re.compile(r"[.!?]+(?:\s|$)")
MATTR_WINDOW = 50


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
    # Each position i adds 1 to every window that holds it and no earlier copy of its word:
    # windows starting at s with max(prev[i] + 1, i - window + 1) <= s <= min(i, n - window).
    # Summing those integer counts gives exactly the sum of per-window distinct counts.
    last: dict[str, int] = {}
    total = 0
    last_start = n - window
    for i, word in enumerate(words):  # plain comparisons below: max()/min() calls cost more here
        lo = last.get(word, -1) + 1
        last[word] = i
        if lo < i - window + 1:
            lo = i - window + 1
        hi = i if i < last_start else last_start
        if hi >= lo:
            total += hi - lo + 1
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
        "prompt_recall": prompt_recall(view, prompt),
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

FORMAT_COUNT_KEYS = tuple(FORMAT_PATTERNS)

# Literals without which a pattern cannot match (none of these patterns ignores case): the
# regex only runs when one is present, which gives the same count, sooner.
_FORMAT_NEEDS = {
    "headers": ("#",),
    "code_blocks": ("```",),
    "inline_code": ("`",),
    "bold": ("**", "__"),
    "italic": ("*", "_"),
    "links": ("](", "http"),
    "table_rows": ("|",),
}
# The case-insensitive patterns: each alternative holds one of these lowercase pieces. Python's re
# matches an ASCII letter ignoring case only with its two ASCII cases and, beyond ASCII, with
# U+0130, U+0131, U+017F and the Kelvin sign U+212A (re docs, IGNORECASE); so when a text has none
# of those four, any match lowercases (str.lower, char by char) to one of the pieces, and a text
# whose lowercase holds no piece has no match.
_FORMAT_NEEDS_LOWER = {
    "refusal": ("i can", "i am ", "i 'm ", "i won", "as an ai", "language model", "i do", "not appropriate"),
    "apology": ("sorry", "apologi"),
}
_CASELESS_NON_ASCII = ("\u0130", "\u0131", "\u017f", "\u212a")
_FORMAT_CHAR_COUNTS = {"questions": "?", "exclamations": "!"}  # one-character patterns: str.count
# Same matches, found faster: the leading look-behind moves after the literal it guards
# ("(?<!X)\*" == "\*(?<!X\*)"), so the regex engine can skip ahead to '*'/'_' characters.
_FORMAT_FAST = {
    "italic": re.compile(r"\*(?<![*\w]\*)[^*\s][^*\n]*\*(?![*\w])|_(?<![_\w]_)[^_\s][^_\n]*_(?![_\w])"),
}
assert all(not FORMAT_PATTERNS[k].flags & re.IGNORECASE for k in _FORMAT_NEEDS)
assert all(FORMAT_PATTERNS[k].flags & re.IGNORECASE for k in _FORMAT_NEEDS_LOWER)
assert all(FORMAT_PATTERNS[k].pattern == re.escape(c) for k, c in _FORMAT_CHAR_COUNTS.items())


def _formatting_side(view: TextView, prompt: TextView) -> dict[str, float]:
    text = view.text
    counts: dict[str, float] = {}
    for name, pattern in FORMAT_PATTERNS.items():
        if name in _FORMAT_CHAR_COUNTS:
            counts[name] = text.count(_FORMAT_CHAR_COUNTS[name])
        elif name in _FORMAT_NEEDS and not any(lit in text for lit in _FORMAT_NEEDS[name]):
            counts[name] = 0
        elif (
            name in _FORMAT_NEEDS_LOWER
            and not any(lit in view.lower for lit in _FORMAT_NEEDS_LOWER[name])
            and (text.isascii() or not any(c in text for c in _CASELESS_NON_ASCII))
        ):
            counts[name] = 0
        else:
            counts[name] = len(_FORMAT_FAST.get(name, pattern).findall(text))
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

DEFAULT_GROUPS: tuple[str, ...] = tuple(GROUPS)
# Opt-in groups: known to the extractor, the bundle and ``--groups``, but computed only when named;
# they did not earn a place in the defaults.
OPT_IN_GROUPS: dict[str, FeatureGroup] = {
    g.name: g
    for g in (
        FeatureGroup("sentiment", sentiment_side),  # cost and evidence: docs/sentiment_spelling.md
        FeatureGroup("spelling", spelling_side),
        FeatureGroup("failure", no_side_values, pair=failure_pair),  # "both failed": docs/new_source_calibration.md
        # answer similarity: a default until the families study (docs/new_source_calibration.md, "Ties that transfer")
        FeatureGroup("similarity", similarity_side, pair=similarity_pair),
    )
}
GROUPS.update(OPT_IN_GROUPS)


def expand_groups(names: Iterable[str]) -> tuple[str, ...]:
    """Group names with ``default`` standing for :data:`DEFAULT_GROUPS` (``--groups default,sentiment``);
    order kept, repeats dropped."""
    out: list[str] = []
    for name in names:
        for g in DEFAULT_GROUPS if name == "default" else (name,):
            if g not in out:
                out.append(g)
    return tuple(out)
