"""Token budgets for (prompt, response A, response B) in one sequence.

The naive baseline concatenates the texts and cuts at ``max_length``, which drops response B
on most arena rows. Here each part gets a share of the budget (20% / 40% / 40% by default),
a part that needs less passes its unused share on, and multi-turn parts keep their latest
turns. Response B always keeps tokens when it has any.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MARKERS = ("<prompt>: ", "\n\n<response_a>: ", "\n\n<response_b>: ")


def allocate_budget(lengths: list[int], shares: list[float], total: int) -> list[int]:
    """Water-filling: each part gets up to its share; leftovers go to parts still wanting more.

    Every non-empty part gets at least one token when ``total`` allows it.
    """
    lengths = [max(int(n), 0) for n in lengths]
    if total <= 0:
        return [0] * len(lengths)
    alloc = [min(n, int(s * total)) for n, s in zip(lengths, shares)]
    for i, n in enumerate(lengths):  # guarantee: a part with tokens is never cut away entirely
        if n > 0 and alloc[i] == 0 and sum(alloc) < total:
            alloc[i] = 1
    left = total - sum(alloc)
    while left > 0:
        wanting = [i for i, n in enumerate(lengths) if alloc[i] < n]
        if not wanting:
            break
        weight = sum(shares[i] for i in wanting) or len(wanting)
        given = 0
        for i in wanting:
            extra = max(1, int(left * (shares[i] or 1) / weight))
            extra = min(extra, lengths[i] - alloc[i], left - given)
            alloc[i] += extra
            given += extra
            if given >= left:
                break
        left -= given
        if given == 0:
            break
    return alloc


def keep_latest_turns(turns: list[list[int]], budget: int, separator: list[int]) -> list[int]:
    """Token ids of the latest turns that fit in ``budget``; the oldest kept turn is cut at its head
    (its end is kept, nearest the turns that follow)."""
    kept: list[list[int]] = []
    used = 0
    for turn in reversed(turns):
        cost = len(turn) + (len(separator) if kept else 0)
        if used + cost <= budget:
            kept.append(turn)
            used += cost
            continue
        room = budget - used - (len(separator) if kept else 0)
        if room > 0:
            kept.append(turn[len(turn) - room :] if kept else turn[:room])
        break
    out: list[int] = []
    for i, turn in enumerate(reversed(kept)):
        if i:
            out.extend(separator)
        out.extend(turn)
    return out


@dataclass
class BattleEncoder:
    """Builds model inputs: ``[CLS/BOS] <prompt>: P <response_a>: A <response_b>: B [SEP/EOS]``."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int = 512
    prompt_share: float = 0.2

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self._markers = [tok(m, add_special_tokens=False)["input_ids"] for m in MARKERS]
        self._turn_sep = tok("\n", add_special_tokens=False)["input_ids"]
        self._prefix = (
            [tok.cls_token_id]
            if tok.cls_token_id is not None
            else ([tok.bos_token_id] if tok.bos_token_id is not None else [])
        )
        end = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        # decoder LLMs pad with EOS (they ship no pad token) and the classifier pools the last non-pad token:
        # an EOS suffix would read as padding, so the last real token is what the head sees; leave it out
        self._suffix = [end] if end is not None and end != tok.pad_token_id else []
        self._overhead = len(self._prefix) + len(self._suffix) + sum(len(m) for m in self._markers)
        if self.max_length <= self._overhead + 3:
            raise ValueError(f"max_length {self.max_length} leaves no room for text (overhead {self._overhead})")

    def _turn_ids(self, turns: list[str]) -> list[list[int]]:
        turns = [t for t in turns if t] or [""]
        return self.tokenizer(turns, add_special_tokens=False, verbose=False)["input_ids"]

    def encode(self, prompt_turns: list[str], a_turns: list[str], b_turns: list[str]) -> list[int]:
        parts = [self._turn_ids(t) for t in (prompt_turns, a_turns, b_turns)]
        need = [sum(map(len, p)) + len(self._turn_sep) * (len(p) - 1) for p in parts]
        shares = [self.prompt_share, (1 - self.prompt_share) / 2, (1 - self.prompt_share) / 2]
        budgets = allocate_budget(need, shares, self.max_length - self._overhead)
        ids = list(self._prefix)
        for marker, part, budget in zip(self._markers, parts, budgets):
            ids.extend(marker)
            ids.extend(keep_latest_turns(part, budget, self._turn_sep))
        ids.extend(self._suffix)
        return ids

    def encode_many(self, prompts, responses_a, responses_b) -> list[list[int]]:
        return [self.encode(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)]


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of row indices with similar lengths (longest first), so padding stays small."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
