"""Folds over several sources: grouped by prompt *and* by answer pair, across every source.

Why: the shared sets repeat prompts and answers (FairEval's pairs are inside qlora-vicuna80,
LLMBar re-labels MT-Bench and LLMEval² items), and several votes on one pair must never sit on
both sides of a fold. Rows are linked when they share a normalised prompt or an unordered pair of
normalised answers; a group is a connected component of those links.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pipelines.data.folds import prompt_groups

MIN_ANSWER_CHARS = 20  # shorter answers ("", "Yes.") recur by chance and would chain unrelated prompts


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


def _answer_pair_keys(battles: pd.DataFrame) -> list[str | None]:
    keys: list[str | None] = []
    for a, b in zip(battles["a_turns"], battles["b_turns"]):
        na, nb = _norm(a), _norm(b)
        keys.append(_hash("\x1d".join(sorted((na, nb)))) if min(len(na), len(nb)) >= MIN_ANSWER_CHARS else None)
    return keys


def source_groups(battles: pd.DataFrame) -> np.ndarray:
    """Group id per row: rows sharing a prompt or an answer pair end up in one group."""
    prompts = prompt_groups(battles)
    parent = list(range(int(prompts.max()) + 1 if len(prompts) else 0))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_prompt: dict[str, int] = {}
    for g, key in zip(prompts, _answer_pair_keys(battles)):
        if key is None:
            continue
        if key in first_prompt:
            ra, rb = find(first_prompt[key]), find(int(g))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        else:
            first_prompt[key] = int(g)
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
