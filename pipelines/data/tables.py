"""The run's other tabular inputs (``--test-labels``, ``--source`` probability files, encoder OOF files),
read by the same hardened reader as the battles (:func:`pipelines.data.battles.read_table`).

Why: a second reader with other rules reads a trailing comma, a ``;`` file or UTF-16 differently from
the battles reader, silently or with a traceback; one reader gives one behaviour and errors that
name file, line and column. Parquet is recognised by its content (``PAR1``), not by its name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, N_CLASSES
from pipelines.data.battles import LABELS_SCHEMA, DataError, _check_ids, _labels, _Where, read_table

PARQUET_MAGIC = b"PAR1"


def is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == PARQUET_MAGIC


def _table(path: Path) -> tuple[pd.DataFrame, np.ndarray | None, str]:
    """Strings of a CSV (with its file lines) or a parquet file's columns as text (rows numbered)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    if is_parquet(path):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a damaged file
            raise DataError(f"{path}: unreadable parquet file ({type(exc).__name__}: {exc})") from None
        return frame.reset_index(drop=True), None, str(path)
    raw = read_table(path, LABELS_SCHEMA)
    return raw.frame, raw.lines, str(path)


def _require(frame: pd.DataFrame, name: str, what: str) -> None:
    missing = [c for c in LABELS_SCHEMA if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: line 1: missing column(s) {missing} ({what}); found {list(frame.columns)[:12]}")


def read_labels(path: str | Path) -> pd.DataFrame:
    """``id`` and ``label`` (0=A, 1=B, 2=tie) from a file in the sample_submission schema (``--test-labels``)."""
    path = Path(path)
    frame, lines, name = _table(path)
    _require(frame, name, "a labels file in the sample_submission schema")
    text = frame.astype(str) if lines is None else frame
    where = _Where(name, lines)
    ids = _check_ids(text, where)
    return pd.DataFrame({"id": ids.to_numpy(dtype=object), "label": _labels(text, where)})


def read_proba_file(path: str | Path) -> pd.DataFrame:
    """id + 3 probabilities (``--source`` files, encoder OOF/test files), checked: a broken source must not
    silently become NaN features; refusals name the line (CSV) or row (parquet) and the column."""
    path = Path(path)
    frame, lines, name = _table(path)
    _require(frame, name, "id + 3 class probabilities")
    where = _Where(name, lines)
    text = frame.astype(str) if lines is None else frame
    ids = _check_ids(text, where)
    values = np.empty((len(frame), N_CLASSES), dtype=np.float64)
    for j, col in enumerate(CLASS_COLUMNS):
        column = (
            pd.to_numeric(frame[col], errors="coerce")
            if lines is None
            else pd.to_numeric(frame[col].str.strip(), errors="coerce")
        )
        values[:, j] = column.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values[:, j]) | (values[:, j] < 0) | (values[:, j] > 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{where(row, col)}: expected a probability in [0, 1], got {str(frame[col].iloc[row])[:40]!r}"
            )
    off = np.abs(values.sum(axis=1) - 1) > 1e-3
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise DataError(
            f"{where(row)}, columns {list(CLASS_COLUMNS)}: probabilities sum to {values[row].sum():.4f}, not 1"
            f" (id={ids.iloc[row]})"
        )
    out = pd.DataFrame(values, columns=list(CLASS_COLUMNS))
    out.insert(0, "id", ids.to_numpy(dtype=object))
    return out
