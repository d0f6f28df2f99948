"""Prompt-grouped, label-stratified folds, saved once per run so every stage shares them."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

log = logging.getLogger(__name__)


def prompt_groups(battles: pd.DataFrame) -> np.ndarray:
    """Group key per row: a hash of the normalised prompt turns (same prompt -> same group)."""
    keys = [
        hashlib.blake2b(
            "\x1e".join(" ".join(t.lower().split()) for t in turns).encode("utf-8", "replace"), digest_size=8
        ).hexdigest()
        for turns in battles["prompt_turns"]
    ]
    return pd.factorize(pd.Series(keys))[0]


def make_folds(battles: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """``id, fold`` for each row; the same prompt never sits in two folds."""
    groups = prompt_groups(battles)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ValueError(f"only {n_groups} distinct prompts: cannot make {n_folds} grouped folds")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(battles), -1, dtype=np.int64)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(battles)), battles["label"], groups)):
        fold[valid] = k
    return pd.DataFrame({"id": battles["id"].to_numpy(), "fold": fold})


def load_or_make_folds(battles: pd.DataFrame, path: Path, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """Reuse ``folds.csv`` if it covers exactly these ids; otherwise make and save it."""
    if path.exists():
        folds = pd.read_csv(path, dtype={"id": str})
        if set(folds["id"]) == set(battles["id"]) and folds["fold"].nunique() == n_folds:
            log.info("folds: reusing %s", path)
            return folds.set_index("id").loc[battles["id"]].reset_index()
        log.warning("folds: %s does not match this train set; making new folds", path)
    folds = make_folds(battles, n_folds, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    folds.to_csv(path, index=False)
    return folds
