"""The prose of an answer: what sentiment and spelling should read, without code, URLs or numbers.

Why: a Python snippet is full of "misspelled" identifiers and a URL is not a sentence; counting
them as errors (or as neutral words) would measure how much code an answer has, which the
formatting group already does. Work is bounded: only the first ``max_chars`` characters are read,
so a 1 MB answer costs what a 20k-character one does.
"""

from __future__ import annotations

import re

FENCED_CODE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S)  # an unclosed fence runs to the end
INDENTED_CODE = re.compile(r"^(?: {4}|\t).*$", re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
URL = re.compile(r"\b(?:https?://|ftp://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.-]+\b", re.I)
MAX_CHARS = 20_000


def prose(text: str, max_chars: int = MAX_CHARS) -> str:
    """``text`` cut to ``max_chars``, with fenced, indented and inline code and URLs/e-mails blanked."""
    text = text[:max_chars]
    if "```" in text or "~~~" in text:
        text = FENCED_CODE.sub("\n", text)
    if "    " in text or "\t" in text:
        text = INDENTED_CODE.sub("", text)
    if "`" in text:
        text = INLINE_CODE.sub(" ", text)
    if "://" in text or "www." in text or "@" in text:
        text = URL.sub(" ", text)
    return text
