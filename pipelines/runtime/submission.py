"""Write submission.csv only if it is valid: a bad result is an error, never a silent file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, N_CLASSES
from pipelines.runtime.run_dir import atomic_to_csv, atomic_write

CLIP = 1e-6


class SubmissionError(ValueError):
    """The predictions cannot make a valid Kaggle submission."""


def build_submission(ids: pd.Series | list, proba: np.ndarray) -> pd.DataFrame:
    names = pd.Series(list(ids), dtype=object).astype(str)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(names), N_CLASSES):
        raise SubmissionError(f"expected probabilities of shape ({len(names)}, {N_CLASSES}), got {proba.shape}")
    if names.duplicated().any():
        raise SubmissionError(f"duplicate test ids, e.g. {names[names.duplicated()].iloc[0]!r}")
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise SubmissionError(
            f"{int(bad.sum())} row(s) with NaN/inf probabilities, first id {names.iloc[np.flatnonzero(bad)[0]]!r}"
        )
    if (proba < 0).any():
        raise SubmissionError("negative probabilities")
    proba = np.clip(proba, CLIP, 1 - CLIP)
    proba = proba / proba.sum(axis=1, keepdims=True)
    frame = pd.DataFrame(proba, columns=list(CLASS_COLUMNS))
    frame.insert(0, "id", names.to_numpy())
    return frame


def write_submission(ids: pd.Series | list, proba: np.ndarray, path: str | Path) -> pd.DataFrame:
    """Validate, clip, renormalise, write atomically, read back and check again.

    The file is checked under its temporary name and only then moved over ``path``: a killed, full
    or concurrent writer leaves the previous submission (or none), never a torn or invalid one.
    """
    frame = build_submission(ids, proba)

    def write_checked(tmp: Path) -> None:
        frame.to_csv(tmp, index=False, float_format="%.8f")
        check_submission_file(tmp, ids)

    atomic_write(path, write_checked)
    return frame


def check_submission_file(path: str | Path, ids: pd.Series | list) -> None:
    """The file on disk has one row per id in order, and rows that sum to 1 to 6 decimals."""
    back = pd.read_csv(path, dtype={"id": str})
    if list(back.columns) != ["id", *CLASS_COLUMNS]:
        raise SubmissionError(f"{path}: columns {list(back.columns)}")
    if back["id"].tolist() != [str(i) for i in ids]:
        raise SubmissionError(f"{path}: ids are not the test ids in test order")
    values = back[list(CLASS_COLUMNS)].to_numpy()
    if not np.isfinite(values).all():
        raise SubmissionError(f"{path}: NaN in file")
    if np.abs(values.sum(axis=1) - 1).max() > 1e-6:
        raise SubmissionError(f"{path}: rows do not sum to 1")
    if (values <= 0).any() or (values >= 1).any():
        raise SubmissionError(f"{path}: probabilities not clipped away from 0 and 1")


def save_predictions(ids: pd.Series, proba: np.ndarray, path: Path, extra: dict | None = None) -> None:
    """Probabilities by id (e.g. the stacker's OOF), with optional extra columns; no validation."""
    frame = pd.DataFrame(proba, columns=list(CLASS_COLUMNS))
    frame.insert(0, "id", ids.astype(str).to_numpy())
    for key, values in (extra or {}).items():
        frame[key] = values
    atomic_to_csv(frame, path, index=False)
