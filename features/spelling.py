"""Spelling-error and grammar-slip rates of each answer, one of the competition guide's feature ideas.

Spelling: ``pyspellchecker`` (pure Python, its English word-frequency list ships inside the
package: no download, no Java). Grammar: LanguageTool would be the library of choice, but
``language_tool_python`` (which installs from PyPI, and Java is here) downloads the LanguageTool
server (``LanguageTool-6.8.zip``, ~250 MB, from GitHub) on first use: here that fails with a
``ConnectionError`` (no internet but PyPI), as it would in a Kaggle notebook with the internet off. So the
grammar part is a handful of cheap, explicit slips (repeated word, a/an before the wrong sound,
lower-case sentence start, lower-case pronoun "i", space before or none after punctuation), not a
grammar checker.

What is checked is prose (:func:`features.prose.prose`: no code blocks, inline code or URLs), and
only all-lower-case words of ASCII letters with two or more letters: numbers, identifiers
(``snake_case``, ``camelCase``, ``x2``), acronyms, capitalised names and non-English words are never
errors. An error is a word pyspellchecker does not know and the prompt does not use (the user's own
terms, names of libraries and the like, are not misspellings). Its list is American English
("colour" and "analyse" count) and has no jargon ("json", "api"): noise that hits A and B alike.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

from features.prose import prose

if TYPE_CHECKING:
    from spellchecker import SpellChecker

    from features.text_view import TextView

WORD = re.compile(r"(?<![\w'])[a-z]{2,}(?:'[a-z]+)?(?![\w'])")
SLIPS = {
    "repeated_word": re.compile(r"\b([A-Za-z]+)\s+\1\b", re.I),
    "a_before_vowel": re.compile(r"\ba\s+(?!u|eu|one\b|once\b)[aeiou][a-z]*\b"),
    "an_before_consonant": re.compile(r"\ban\s+(?!h)[bcdfgjklmnpqrstvwxyz][a-z]*\b"),
    "lower_sentence_start": re.compile(r"(?<=[a-z]{3}[.!?])\s+[a-z]"),
    "lower_i": re.compile(r"(?<![\w'])i(?=\s|'m\b|'ve\b|'ll\b|'d\b)"),
    "space_before_punct": re.compile(r"\w[ \t]+[,;:!?](?=\s|$)"),
    "no_space_after_punct": re.compile(r"[a-z][,;][A-Za-z]"),
}
KEYS = ("spell_words", "spell_errors", "spell_error_rate", "grammar_slips", "grammar_slip_rate")


@lru_cache(maxsize=1)
def checker() -> SpellChecker:
    """One English checker per process (loading its word list takes ~0.2 s)."""
    from spellchecker import SpellChecker

    return SpellChecker(language="en", distance=1)


def unknown_words(words: list[str], allowed: frozenset[str] = frozenset()) -> int:
    """How many of ``words`` (lower case, repeats counted) neither the dictionary nor ``allowed`` knows."""
    if not words:
        return 0
    # SpellChecker.unknown's own test, without its per-word overhead (a third of this group's time):
    # lower-case alphabetic words are never numbers, and over-long ones are not checked
    frequency = checker().word_frequency
    known, longest = frequency.dictionary, frequency.longest_word_length + 3
    unknown = {w for w in set(words) if w not in known and len(w) <= longest} - allowed
    return sum(w in unknown for w in words) if unknown else 0


def spelling_scores(text: str, allowed: frozenset[str] = frozenset()) -> dict[str, float]:
    """Checked words, unknown words and their rate, grammar slips and their rate per 100 words;
    ``allowed``: words that are never errors (the prompt's)."""
    body = prose(text)
    words = WORD.findall(body)
    errors = unknown_words(words, allowed)
    slips = sum(len(p.findall(body)) for p in SLIPS.values())
    n_words = len(body.split())
    return {
        "spell_words": float(len(words)),
        "spell_errors": float(errors),
        "spell_error_rate": errors / len(words) if words else 0.0,
        "grammar_slips": float(slips),
        "grammar_slip_rate": 100.0 * slips / n_words if n_words else 0.0,
    }


def spelling_side(view: TextView, prompt: TextView) -> dict[str, float]:
    return spelling_scores(view.text, prompt.vocabulary)
