"""One answer tokenised once (:class:`TextView`) and the formatting patterns, shared by the feature groups.

Why a module of its own: ``features.groups`` registers every group, and the groups in other modules
(similarity, sentiment, spelling) use these; kept here, no group module has to import the registry back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class TextView:
    """One side of a battle, tokenised once and shared by every group."""

    text: str
    n_turns: int
    words: tuple[str, ...] = field(repr=False)

    @classmethod
    def from_turns(cls, turns: list[str]) -> TextView:
        text = "\n\n".join(turns)
        lower = text.lower()
        view = cls(text=text, n_turns=sum(bool(t.strip()) for t in turns), words=tuple(WORD_RE.findall(lower)))
        view.__dict__["lower"] = lower  # seeds the cached property below
        return view

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def vocabulary(self) -> frozenset[str]:  # computed once per view, shared by the groups
        return frozenset(self.words)


def prompt_recall(view: TextView, prompt: TextView) -> float:
    """Share of the prompt's distinct words the answer uses (0 for an empty prompt)."""
    return len(view.vocabulary & prompt.vocabulary) / len(prompt.vocabulary) if prompt.vocabulary else 0.0


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
