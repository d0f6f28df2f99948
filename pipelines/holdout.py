"""Scoring test predictions against a labels file after predicting (evaluation only, never training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS
from pipelines.metrics import summarize


def load_battles_labels(path: Path) -> tuple[pd.DataFrame, None]:
    """``id`` and ``label`` (0=A, 1=B, 2=tie) from a file in the sample_submission schema."""
    frame = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in ("id", *CLASS_COLUMNS) if c not in frame]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    values = frame[list(CLASS_COLUMNS)].to_numpy()
    if not np.isin(values, [0, 1]).all() or (values.sum(axis=1) != 1).any():
        bad = int(np.flatnonzero(~np.isin(values, [0, 1]).all(axis=1) | (values.sum(axis=1) != 1))[0])
        raise ValueError(f"{path}: row {bad + 1}: labels are not one-hot")
    return pd.DataFrame({"id": frame["id"], "label": values.argmax(axis=1)}), None


def evaluate_test_labels(labels_path: Path, ids: pd.Series, proba: dict[str, np.ndarray]) -> dict:
    """Score test predictions against a labels file (sample_submission schema), read only now."""
    answers, _ = load_battles_labels(labels_path)
    order = answers.set_index("id").reindex(ids.astype(str))
    if order["label"].isna().any():
        raise ValueError(f"{labels_path}: no label for some test ids")
    y = order["label"].to_numpy(dtype=int)
    single_fold = np.zeros(len(y), dtype=int)
    return {name: summarize(y, p, single_fold) for name, p in proba.items()}
