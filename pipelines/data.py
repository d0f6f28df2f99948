"""Load Kaggle-schema battle CSVs into plain DataFrames of parsed turns.

Bad input must fail loudly with the file, row and column; odd but usable input
(invalid JSON, ``null`` turns, lone surrogates) is kept and counted so the run
report can say what was repaired.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, TEXT_COLUMNS, swap_labels

log = logging.getLogger(__name__)

TURN_COLUMNS = {"prompt": "prompt_turns", "response_a": "a_turns", "response_b": "b_turns"}


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names file, row and column."""


@dataclass
class ParseReport:
    """What loading had to repair, per text column; goes into the run report."""

    path: str
    rows: int = 0
    invalid_json: dict[str, int] = field(default_factory=dict)
    null_turns: dict[str, int] = field(default_factory=dict)
    surrogates: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def clean_text(text: str) -> tuple[str, bool]:
    """Replace each lone UTF-16 surrogate (invalid in UTF-8) with one U+FFFD, rejoining split pairs;
    say whether any were found."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"), True


def parse_turns(raw: object) -> tuple[list[str], str | None]:
    """Parse one JSON-list cell into turns; returns (turns, problem) where problem is None,
    "invalid_json" (kept as one raw turn) or "null_turns" (nulls became empty strings)."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return [""], "invalid_json"
    text = str(raw)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return [text], "invalid_json"
    if isinstance(value, list):
        problem = "null_turns" if any(v is None for v in value) else None
        turns = ["" if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in value]
        return (turns or [""]), problem
    if isinstance(value, str):
        return [value], "invalid_json"
    return [text], "invalid_json"


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    if frame.empty:
        raise DataError(f"{path}: file has a header but no rows")
    return frame


def _check_columns(frame: pd.DataFrame, path: Path, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")


def _check_ids(frame: pd.DataFrame, path: Path) -> None:
    ids = frame["id"]
    empty = ids.str.strip() == ""
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0]) + 1
        raise DataError(f"{path}: row {row}, column 'id': empty id")
    dup = ids.duplicated(keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise DataError(
            f"{path}: row {row + 1}, column 'id': duplicate id {ids.iloc[row]!r} (first seen in row {first + 1});"
            f" {int(dup.sum())} duplicate(s) in all"
        )


def _labels(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """One-hot winner columns to class indices 0=a, 1=b, 2=tie, or a DataError naming the first bad cell."""
    values = np.zeros((len(frame), 3), dtype=np.int64)
    for j, col in enumerate(CLASS_COLUMNS):
        cells = frame[col].str.strip()
        parsed = pd.to_numeric(cells, errors="coerce")
        bad = ~parsed.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: row {row + 1}, column {col!r}: expected 0 or 1, got {frame[col].iloc[row]!r}")
        values[:, j] = parsed.to_numpy(dtype=np.int64)
    not_one_hot = values.sum(axis=1) != 1
    if not_one_hot.any():
        row = int(np.flatnonzero(not_one_hot)[0])
        raise DataError(
            f"{path}: row {row + 1}, columns {list(CLASS_COLUMNS)}: labels are not one-hot "
            f"({values[row].tolist()}); {int(not_one_hot.sum())} such row(s)"
        )
    return values.argmax(axis=1)


def load_battles(path: str | Path, *, labelled: bool | None = None) -> tuple[pd.DataFrame, ParseReport]:
    """Read a train/test CSV into a DataFrame with parsed turn lists.

    Output columns: ``id`` (str), ``prompt_turns``, ``a_turns``, ``b_turns`` (lists of str) and,
    for labelled data, ``label`` (0 = A wins, 1 = B wins, 2 = tie). Model names are never
    carried: test data has none, so nothing may depend on them. ``labelled=None`` detects.
    """
    path = Path(path)
    frame = _read_csv(path)
    _check_columns(frame, path, ("id", *TEXT_COLUMNS))
    if labelled is None:
        labelled = any(c in frame.columns for c in CLASS_COLUMNS)
    if labelled:
        _check_columns(frame, path, CLASS_COLUMNS)
    _check_ids(frame, path)

    report = ParseReport(path=str(path), rows=len(frame))
    out = pd.DataFrame({"id": frame["id"].str.strip().to_numpy(dtype=object)})
    for col, turn_col in TURN_COLUMNS.items():
        counts = {"invalid_json": 0, "null_turns": 0, "surrogates": 0}
        parsed: list[list[str]] = []
        for row, raw in enumerate(frame[col].to_numpy(dtype=object)):
            turns, problem = parse_turns(raw)
            if problem:
                counts[problem] += 1
                if problem == "invalid_json" and len(report.examples) < 5:
                    report.examples.append(f"row {row + 1}, column {col!r}: not a JSON list; kept as one raw turn")
            cleaned = []
            had_surrogate = False
            for t in turns:
                t, bad = clean_text(t)
                had_surrogate |= bad
                cleaned.append(t)
            counts["surrogates"] += had_surrogate
            parsed.append(cleaned)
        out[turn_col] = pd.Series(parsed, dtype=object)
        report.invalid_json[col] = counts["invalid_json"]
        report.null_turns[col] = counts["null_turns"]
        report.surrogates[col] = counts["surrogates"]
    if labelled:
        out["label"] = _labels(frame, path)
    repaired = sum(report.invalid_json.values()) + sum(report.surrogates.values())
    if repaired:
        log.warning(
            "%s: repaired %d cell(s): invalid JSON %s, lone surrogates %s",
            path,
            repaired,
            report.invalid_json,
            report.surrogates,
        )
    log.info("loaded %s: %d rows%s", path, len(out), " (labelled)" if labelled else "")
    return out, report


def swap_battles(battles: pd.DataFrame) -> pd.DataFrame:
    """The same battles with A and B exchanged (labels too): the basis of swap augmentation."""
    swapped = battles.copy()
    swapped["a_turns"], swapped["b_turns"] = battles["b_turns"], battles["a_turns"]
    if "label" in battles:
        swapped["label"] = swap_labels(battles["label"].to_numpy())
    return swapped
