"""How alike the two answers are: the battles where people call a tie.

Why: a person calls a tie when the answers are about the same: near-identical text, the same
final number, both refusals, both very short, the same shape. The per-side groups see each answer
alone (the booster must rebuild "alike" from a_* and b_* splits); these symmetric pair values say
it at once, so P(tie) can rise for such pairs on sources the model has never seen. Every value is
symmetric in A and B, and bounded work per row (texts are cut at ``MAX_CHARS``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from features.text_view import FORMAT_PATTERNS, TextView

MAX_CHARS = 8000  # longer answers are compared on their first 8,000 characters: cost stays linear in rows
SHORT_CHARS = 80
NUMBER_RE = re.compile(r"-?\d+(?:[.,]\d+)*")


def _char_ngrams(text: str, n: int = 3) -> Counter[str]:
    squashed = " ".join(text[:MAX_CHARS].lower().split())
    return Counter(squashed[i : i + n] for i in range(max(len(squashed) - n + 1, 0)))


def _cosine(x: Counter[str], y: Counter[str]) -> float:
    if not x or not y:
        return 0.0
    small, large = (x, y) if len(x) <= len(y) else (y, x)
    dot = sum(v * large.get(k, 0) for k, v in small.items())
    return dot / math.sqrt(sum(v * v for v in x.values()) * sum(v * v for v in y.values()))


def _jaccard(x: set, y: set) -> float:
    union = len(x | y)
    return len(x & y) / union if union else 0.0


def _bigrams(words: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:], strict=False))


def _lines(text: str) -> set[str]:
    return {" ".join(line.lower().split()) for line in text[:MAX_CHARS].splitlines() if line.strip()}


def _last_number(text: str) -> str | None:
    found = NUMBER_RE.findall(text[-MAX_CHARS:])
    return found[-1].replace(",", "") if found else None


def _refuses(view: TextView) -> bool:
    return bool(FORMAT_PATTERNS["refusal"].search(view.text[:MAX_CHARS]))


def _shape(view: TextView) -> tuple[int, ...]:
    """Which formatting kinds the answer uses at all (headers, bullets, code, ...)."""
    head = view.text[:MAX_CHARS]
    return tuple(int(bool(FORMAT_PATTERNS[k].search(head))) for k in ("headers", "bullets", "numbered", "code_blocks"))


def similarity_side(view: TextView, prompt: TextView) -> dict[str, float]:
    return {}


def similarity_pair(a: TextView, b: TextView, prompt: TextView) -> dict[str, float]:
    la, lb = len(a.text), len(b.text)
    wa, wb = len(a.words), len(b.words)
    na, nb = _last_number(a.text), _last_number(b.text)
    ra, rb = _refuses(a), _refuses(b)
    return {
        "pair_char3_cosine": _cosine(_char_ngrams(a.text), _char_ngrams(b.text)),
        "pair_bigram_jaccard": _jaccard(_bigrams(a.words[:2000]), _bigrams(b.words[:2000])),
        "pair_line_jaccard": _jaccard(_lines(a.text), _lines(b.text)),
        "pair_chars_ratio": min(la, lb) / max(la, lb) if max(la, lb) else 1.0,
        "pair_words_ratio": min(wa, wb) / max(wa, wb) if max(wa, wb) else 1.0,
        "pair_min_chars": float(min(la, lb)),
        "pair_both_short": float(la < SHORT_CHARS and lb < SHORT_CHARS),
        "pair_both_refuse": float(ra and rb),
        "pair_one_refuses": float(ra != rb),
        "pair_same_last_number": float(na is not None and na == nb),
        "pair_same_shape": float(_shape(a) == _shape(b)),
    }
