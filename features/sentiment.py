"""Sentiment of each answer (VADER), one of the competition guide's feature ideas.

VADER (``vaderSentiment``) is a rule-and-lexicon scorer that ships its lexicon inside the package:
nothing is downloaded at run time, it is deterministic and needs no model. A whole-text compound
score saturates at +-1 on long answers (it sums over words), so the group scores each sentence (or
line) and reports the mean, the extremes and the shares of positive and negative sentences; per
sentence is also faster than VADER on one long text. Prose only (:func:`features.prose.prose`):
code and URLs are not sentiment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from features.prose import prose

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from features.text_view import TextView

SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
THRESHOLD = 0.05  # VADER's own cut for a positive / negative text
KEYS = ("sent_mean", "sent_min", "sent_max", "sent_pos_share", "sent_neg_share")
MAX_SENTENCES = 300  # bounded work per answer (a 20k-character prose cap holds ~200 sentences)


@lru_cache(maxsize=1)
def analyzer() -> SentimentIntensityAnalyzer:
    """One analyzer per process (loading the lexicon takes ~10 ms)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_scores(text: str) -> dict[str, float]:
    """Sentence-level VADER compound summaries of one answer; all 0 without prose."""
    body = prose(text)
    sentences = [s for s in (p.strip() for p in SENTENCE_SPLIT.split(body)) if any(c.isalpha() for c in s)]
    sentences = sentences[:MAX_SENTENCES]
    if not sentences:
        return dict.fromkeys(KEYS, 0.0)
    vader = analyzer()
    compounds = [vader.polarity_scores(s)["compound"] for s in sentences]
    n = len(compounds)
    return {
        "sent_mean": sum(compounds) / n,
        "sent_min": min(compounds),
        "sent_max": max(compounds),
        "sent_pos_share": sum(c >= THRESHOLD for c in compounds) / n,
        "sent_neg_share": sum(c <= -THRESHOLD for c in compounds) / n,
    }


def sentiment_side(view: TextView, prompt: TextView) -> dict[str, float]:
    return sentiment_scores(view.text)
