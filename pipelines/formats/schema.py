"""The train.csv schema every format converts to: one row builder, one validation, one error type."""

from __future__ import annotations

import collections
import json
import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS, TEXT_COLUMNS

log = logging.getLogger(__name__)


COLUMNS = ["id", "model_a", "model_b", *TEXT_COLUMNS, *CLASS_COLUMNS]
EXTRA_COLUMNS = ["source", "source_id"]  # optional; consumers ignore them
WINNER_COLUMNS = list(CLASS_COLUMNS)
JSON_COLUMNS = list(TEXT_COLUMNS)
ONE_HOT = {"a": (1, 0, 0), "b": (0, 1, 0), "tie": (0, 0, 1)}

# id = offset + running index over all rows of one convert() call (all files together).
# Arena CSVs (Kaggle layout) keep their own ids; other arena layouts use the offset.
ID_OFFSETS = {
    "arena": 5_000_000,
    "hh-rlhf": 1_000_000,
    "pandalm": 2_000_000,
    "llmeval2": 3_000_000,
    "autoj": 4_000_000,
}

PathLike = str | os.PathLike


class ConversionError(ValueError):
    """Input that cannot be converted; the message names the file, line/row and field."""


def clean_text(text: str) -> tuple[str, bool]:
    """Replace each lone UTF-16 surrogate (invalid in UTF-8) with one U+FFFD, rejoining split pairs;
    say whether any were found."""
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"), True


def clean(text: str) -> str:
    return clean_text(text)[0]


def text_field(rec: dict, field: str, where: str, *, optional: bool = False) -> str:
    """A text field of a record; scalars (e.g. JSON ``true``) become their text, with a warning."""
    if field not in rec:
        if optional:
            return ""
        raise ConversionError(f"{where}: field {field!r} missing")
    value = rec[field]
    if isinstance(value, str):
        return clean(value)
    if value is None and optional:
        return ""
    if isinstance(value, (bool, int, float)) and not (isinstance(value, float) and np.isnan(value)):
        log.warning("%s: field %r is %s %r, converted to text", where, field, type(value).__name__, value)
        return str(value)
    raise ConversionError(f"{where}: field {field!r} is {type(value).__name__}, expected text")


def make_row(
    id_: int,
    prompt: Sequence[str],
    resp_a: Sequence[str],
    resp_b: Sequence[str],
    winner: str,
    *,
    model_a: str = "",
    model_b: str = "",
    source: str = "",
    source_id: object = "",
) -> dict:
    """One output row; the three turn lists are padded with "" to the same length."""
    n = max(len(prompt), len(resp_a), len(resp_b), 1)

    def dump(turns: Sequence[str]) -> str:
        turns = [clean(t) for t in turns] + [""] * (n - len(turns))
        return json.dumps(turns, ensure_ascii=False)

    wa, wb, wt = ONE_HOT[winner]
    return {
        "id": int(id_),
        "model_a": clean(model_a),
        "model_b": clean(model_b),
        "prompt": dump(prompt),
        "response_a": dump(resp_a),
        "response_b": dump(resp_b),
        "winner_model_a": wa,
        "winner_model_b": wb,
        "winner_tie": wt,
        "source": source,
        "source_id": str(source_id),
    }


def make_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS + EXTRA_COLUMNS)
    return df.astype({"id": "int64", **{c: "int64" for c in WINNER_COLUMNS}})


def log_odd(fmt: str, odd: collections.Counter) -> None:
    for what, n in sorted(odd.items()):
        if n:
            log.warning("%s: %d row(s): %s (kept)", fmt, n, what)


def validate(df: pd.DataFrame) -> None:
    """Raise ConversionError unless df follows the train.csv schema (extra columns after the 9 are fine)."""
    if list(df.columns[: len(COLUMNS)]) != COLUMNS:
        raise ConversionError(f"output columns {list(df.columns)} do not start with {COLUMNS}")
    if df.empty:
        raise ConversionError("no rows")
    if not pd.api.types.is_integer_dtype(df["id"]):
        raise ConversionError(f"column 'id' has dtype {df['id'].dtype}, expected integers")
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise ConversionError(
            f"{len(dup)} duplicate id(s), e.g. {dup.iloc[0]} "
            f"(source {df.loc[dup.index[0], 'source'] if 'source' in df else '?'})"
        )
    win = df[WINNER_COLUMNS]
    if not all(pd.api.types.is_integer_dtype(win[c]) for c in WINNER_COLUMNS) or not win.isin([0, 1]).all().all():
        raise ConversionError("winner columns must be 0/1 integers")
    bad = win.sum(axis=1) != 1
    if bad.any():
        raise ConversionError(f"{int(bad.sum())} row(s) without exactly one winner, e.g. id {df['id'][bad].iloc[0]}")
    for col in ("model_a", "model_b", *JSON_COLUMNS):
        if df[col].isna().any():
            raise ConversionError(f"column {col!r} has missing values")
    for i, cells in enumerate(zip(*(df[c] for c in JSON_COLUMNS))):
        lens = set()
        for col, cell in zip(JSON_COLUMNS, cells):
            turns = json.loads(cell)
            if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                raise ConversionError(f"row {i} (id {df['id'].iloc[i]}): {col!r} is not a JSON list of strings")
            lens.add(len(turns))
        if len(lens) != 1:
            raise ConversionError(f"row {i} (id {df['id'].iloc[i]}): prompt/response turn counts differ")


def label_counts(df: pd.DataFrame) -> dict[str, int]:
    return {c: int(df[c].sum()) for c in WINNER_COLUMNS}


def response_pair(rec: dict, where: str, field_a: str, field_b: str, odd: collections.Counter) -> tuple[str, str]:
    """The two responses of a record; empty or identical pairs are kept, and counted in ``odd``."""
    r1, r2 = text_field(rec, field_a, where), text_field(rec, field_b, where)
    odd["empty response"] += (not r1.strip()) or (not r2.strip())
    odd["identical responses"] += r1 == r2
    return r1, r2


def single_turn_row(fmt: str, index: int, prompt: str, resp_a: str, resp_b: str, winner: str, **kwargs) -> dict:
    """:func:`make_row` for a one-turn battle of format ``fmt``: id ``ID_OFFSETS[fmt] + index``, source ``fmt``."""
    return make_row(ID_OFFSETS[fmt] + index, [prompt], [resp_a], [resp_b], winner, **{"source": fmt, **kwargs})
