"""Prompt-grouped, label-stratified folds, saved once per run so every stage shares them.

Folds depend on the seed, the fold count and the data, so ``folds.csv`` carries a sidecar
``folds.json`` (seed, n_folds, a hash of the sorted ids with their prompt and label, a hash of
``folds.csv`` itself) and is reused only when all of it matches: a rerun with another seed or
other data, or one after a run killed between the two writes, makes new folds.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from arena_schema import CLASS_TITLES
from pipelines.runtime.errors import PreflightError
from pipelines.runtime.run_dir import atomic_to_csv, atomic_write_text

log = logging.getLogger(__name__)

PROMPT = "prompt"
ACROSS_SOURCES = "prompt, any prompt turn or answer turn, across sources"  # pipelines.data.source_folds
FoldMaker = Callable[[pd.DataFrame, int, int], pd.DataFrame]
MIN_ROWS_PER_FOLD = 3  # fewer leaves a fold's validation split (and its log loss) meaningless
MIN_CLASSES = 2


def prompt_keys(battles: pd.DataFrame) -> list[str]:
    """A hash of each row's normalised prompt turns (same prompt -> same key)."""
    return [
        hashlib.blake2b(
            "\x1e".join(" ".join(t.lower().split()) for t in turns).encode("utf-8", "replace"), digest_size=8
        ).hexdigest()
        for turns in battles["prompt_turns"]
    ]


def prompt_groups(battles: pd.DataFrame) -> np.ndarray:
    """Group key per row: same prompt -> same group."""
    return pd.factorize(pd.Series(prompt_keys(battles)))[0]


def data_fingerprint(battles: pd.DataFrame) -> str:
    """sha256 of the sorted (id, prompt hash, label) rows: what the folds were made from."""
    labels = battles["label"] if "label" in battles else pd.Series([""] * len(battles))
    rows = sorted(f"{i}\x1f{k}\x1f{y}" for i, k, y in zip(battles["id"].astype(str), prompt_keys(battles), labels))
    return hashlib.sha256("\x1e".join(rows).encode("utf-8")).hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def folds_meta(battles: pd.DataFrame, n_folds: int, seed: int, grouping: str = PROMPT) -> dict:
    """What saved folds were made from; ``grouping`` only when it is not the single-source default."""
    meta = {"seed": seed, "n_folds": n_folds, "data_sha256": data_fingerprint(battles)}
    return meta if grouping == PROMPT else {**meta, "grouping": grouping}


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def saved_folds_match(path: Path, meta: dict) -> bool:
    """``folds.csv`` and its sidecar exist, the sidecar matches ``meta`` and describes this very file."""
    try:
        stored = json.loads(sidecar_path(path).read_text())
        return stored == {**meta, "folds_sha256": _file_sha256(path)}
    except (OSError, ValueError):
        return False


def make_folds(battles: pd.DataFrame, n_folds: int = 5, seed: int = 42) -> pd.DataFrame:
    """``id, fold`` for each row; the same prompt never sits in two folds."""
    check_labels(battles, n_folds)
    groups = prompt_groups(battles)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.full(len(battles), -1, dtype=np.int64)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(battles)), battles["label"], groups)):
        fold[valid] = k
    return pd.DataFrame({"id": battles["id"].to_numpy(), "fold": fold})


def load_or_make_folds(
    battles: pd.DataFrame,
    path: Path,
    n_folds: int = 5,
    seed: int = 42,
    maker: FoldMaker = make_folds,
    grouping: str = PROMPT,
) -> pd.DataFrame:
    """Reuse ``folds.csv`` when its sidecar says it was made from this data, seed, fold count (and
    ``grouping``); otherwise make new folds with ``maker`` and save both files atomically (the csv
    first, then the sidecar)."""
    meta = folds_meta(battles, n_folds, seed, grouping)
    if path.exists():
        if saved_folds_match(path, meta):
            folds = pd.read_csv(path, dtype={"id": str})
            log.info("folds: reusing %s", path)
            return folds.set_index("id").loc[battles["id"].astype(str)].reset_index()
        log.warning("folds: %s was made from other data, seed or fold count; making new folds", path)
    folds = maker(battles, n_folds, seed)
    atomic_to_csv(folds, path, index=False)
    atomic_write_text(sidecar_path(path), json.dumps({**meta, "folds_sha256": _file_sha256(path)}, indent=2))
    return folds


def check_labels(battles: pd.DataFrame, n_folds: int) -> None:
    """Enough of the train set to make ``n_folds`` grouped, stratified folds worth scoring."""
    labels = np.asarray(battles["label"])
    classes = np.unique(labels)
    if len(classes) < MIN_CLASSES:
        only = CLASS_TITLES[int(classes[0])] if len(classes) else "none"
        raise PreflightError(f"train: every row has the same label ({only}); need at least 2 classes to learn anything")
    n_prompts = len(np.unique(prompt_groups(battles)))
    if n_prompts < n_folds:
        raise PreflightError(
            f"train: only {n_prompts} distinct prompt(s): cannot make {n_folds} folds grouped by prompt (lower --folds)"
        )
    if len(battles) < MIN_ROWS_PER_FOLD * n_folds:
        raise PreflightError(
            f"train: {len(battles)} rows: too few for {n_folds} folds (need at least {MIN_ROWS_PER_FOLD} per fold)"
        )
