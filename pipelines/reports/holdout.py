"""Scoring test predictions against a labels file after predicting (evaluation only, never training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.battles import DataError
from pipelines.reports.metrics import summarize


def labels_for(answers: pd.DataFrame, ids: pd.Series, labels_path: Path) -> np.ndarray:
    """The labels of ``ids`` in their order; every test id must have one (checked before any fit)."""
    order = answers.set_index("id").reindex(ids.astype(str))
    missing = order["label"].isna().to_numpy()
    if missing.any():
        raise DataError(
            f"--test-labels {labels_path}: no label for {int(missing.sum())} of {len(ids)} test id(s),"
            f" e.g. {list(ids.astype(str)[missing][:3])}"
        )
    return order["label"].to_numpy(dtype=int)


def evaluate_test_labels(y: np.ndarray, proba: dict[str, np.ndarray]) -> dict:
    """Score test predictions against the test labels (read and matched to the test ids before the fit)."""
    single_fold = np.zeros(len(y), dtype=int)
    return {name: summarize(y, p, single_fold) for name, p in proba.items()}
