"""Folds over several sources: grouped by prompt *and* by any shared turn, across every source.

Why: the shared sets repeat prompts and answers (FairEval's pairs are inside qlora-vicuna80,
LLMBar re-labels MT-Bench and LLMEval² items, MT-Bench turn-2 votes hold the turn-1 question and
answers), and several votes on one text must never sit on both sides of a fold. Rows are linked
when they share a normalised prompt, any normalised prompt turn or any normalised answer turn;
a group is a connected component of those links.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pipelines.data.folds import prompt_groups

MIN_TURN_CHARS = 20  # shorter turns ("", "Yes.", "Thanks!") recur by chance and would chain unrelated prompts


def _norm(turns: list[str]) -> str:
    return "\x1e".join(" ".join(t.lower().split()) for t in turns)


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()


def pair_keys(battles: pd.DataFrame, ordered: bool = False) -> np.ndarray:
    """Hash of prompt + both answers; order-independent unless ``ordered`` (then A|B and B|A differ)."""
    keys = []
    for p, a, b in zip(battles["prompt_turns"], battles["a_turns"], battles["b_turns"]):
        na, nb = _norm(a), _norm(b)
        if not ordered:
            na, nb = sorted((na, nb))
        keys.append(_hash(_norm(p) + "\x1d" + na + "\x1d" + nb))
    return np.array(keys, dtype=object)


def pair_orientation(battles: pd.DataFrame) -> np.ndarray:
    """True where the row's A answer is the pair's canonical first answer (sorted order)."""
    return np.array([_norm(a) <= _norm(b) for a, b in zip(battles["a_turns"], battles["b_turns"])])


def _linking_turns(battles: pd.DataFrame) -> list[set[str]]:
    """Per row, the hashes of its normalised prompt and answer turns long enough to link rows."""
    out = []
    for p, a, b in zip(battles["prompt_turns"], battles["a_turns"], battles["b_turns"]):
        turns = {("p", " ".join(t.lower().split())) for t in p} | {("a", " ".join(t.lower().split())) for t in (*a, *b)}
        out.append({_hash(kind + text) for kind, text in turns if len(text) >= MIN_TURN_CHARS})
    return out


def source_groups(battles: pd.DataFrame) -> np.ndarray:
    """Group id per row: rows sharing a whole prompt, any prompt turn or any answer turn (each of at least
    ``MIN_TURN_CHARS`` characters) end up in one group, the connected components of those links.

    Why turns and not whole texts: a turn-2 vote holds its turn-1 question and answers, so it must share
    a fold with the turn-1 votes of the same question; and one answer judged against two different
    opponents is one piece of text on both sides of a split otherwise.
    """
    prompts = prompt_groups(battles)
    parent = list(range(int(prompts.max()) + 1 if len(prompts) else 0))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_group: dict[str, int] = {}
    for g, keys in zip(prompts, _linking_turns(battles)):
        for key in keys:
            if key not in first_group:
                first_group[key] = int(g)
                continue
            ra, rb = find(first_group[key]), find(int(g))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return pd.factorize(pd.Series([find(int(g)) for g in prompts]))[0]


def make_source_folds(battles: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> np.ndarray:
    """Fold per row, stratified by label and source together, grouped by :func:`source_groups`."""
    groups = source_groups(battles)
    if len(np.unique(groups)) < n_folds:
        raise ValueError(f"only {len(np.unique(groups))} groups: cannot make {n_folds} grouped folds")
    strata = pd.factorize(battles["source"].astype(str) + "/" + battles["label"].astype(str))[0]
    fold = np.full(len(battles), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(battles)), strata, groups)):
        fold[valid] = k
    return fold
