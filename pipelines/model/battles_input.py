"""What the estimator takes as battles and labels: a DataFrame in the Kaggle schema or already parsed, and
``y`` as winner columns, class indices or class names. Checked here, before any work, with one-line errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, CLASS_NAMES
from pipelines.data.battles import TURN_COLUMNS, DataError, ParseReport, load_battles_frame
from pipelines.runtime.errors import UserError
from pipelines.stages.stacker_inputs import SOURCE_COLUMNS


class BattlesTypeError(UserError, TypeError, ValueError):
    """Battles given as something other than a DataFrame (an array, a list): a TypeError, as sklearn raises
    for a wrong input type, and a ValueError, as every user error here."""


def check_frame(frame: Any, name: str) -> pd.DataFrame:
    """``frame`` itself when it is a DataFrame; else a one-line error saying what is expected (an array has
    no column names, so its columns could only be guessed)."""
    if not isinstance(frame, pd.DataFrame):
        raise BattlesTypeError(
            f"{name}: expected a pandas DataFrame of battles, in the Kaggle schema (id, prompt, response_a,"
            f" response_b, and the winner columns to fit) or parsed (id, prompt_turns, a_turns, b_turns),"
            f" got {type(frame).__module__}.{type(frame).__qualname__}"
        )
    return frame


def as_battles(frame: pd.DataFrame, name: str, labelled: bool) -> tuple[pd.DataFrame, ParseReport]:
    """Kaggle-schema frames (raw JSON-list strings) are validated and parsed; parsed battles
    (``prompt_turns``/``a_turns``/``b_turns``) pass through. Multi-source columns are kept."""
    check_frame(frame, name)
    turn_columns = list(TURN_COLUMNS.values())
    if all(c in frame.columns for c in turn_columns):
        needed = ["id", *(["label"] if labelled else [])]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"{name}: parsed battles lack column(s) {missing}")
        out = frame.reset_index(drop=True).copy()
        out["id"] = out["id"].astype(str)
        return out, ParseReport(path=name, rows=len(out))
    parsed, report = load_battles_frame(frame, name, labelled)
    for col in SOURCE_COLUMNS:
        if col in frame.columns:
            parsed[col] = frame[col].to_numpy()
    return parsed, report


def labels_of(y: Any, rows: int) -> np.ndarray:
    """Class indices (0 = A wins, 1 = B wins, 2 = tie) from ``y``: the three winner columns (one-hot), or
    one value per row as an index (0/1/2) or a class name (``"a"``/``"b"``/``"tie"``)."""
    if isinstance(y, pd.DataFrame) and all(c in y.columns for c in CLASS_COLUMNS):
        onehot = y[list(CLASS_COLUMNS)].to_numpy()
        if not np.isin(onehot, (0, 1)).all() or not (onehot.sum(axis=1) == 1).all():
            raise DataError(f"y: the winner columns {list(CLASS_COLUMNS)} are not one-hot 0/1 rows")
        labels = onehot.argmax(axis=1)
    else:
        values = np.asarray(y, dtype=object)
        if values.ndim != 1:
            raise DataError(f"y: expected one label per row or the columns {list(CLASS_COLUMNS)}, got {values.shape}")
        index: dict[Any, int] = {**{c: i for i, c in enumerate(CLASS_NAMES)}, **{i: i for i in range(len(CLASS_NAMES))}}
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (str, int, np.integer)) or v not in index]
        if bad:
            raise DataError(f"y: label {bad[0]!r} is none of 0/1/2 or {list(CLASS_NAMES)}")
        labels = np.array([index[v] for v in values], dtype=np.int64)
    if len(labels) != rows:
        raise DataError(f"y: {len(labels)} labels for {rows} rows")
    return labels.astype(np.int64)
