"""Auto-J pairwise test set: labels 0/1/2 as A/B/tie."""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

import pandas as pd

from pipelines.formats.reading import input_paths, iter_records, require_rows
from pipelines.formats.rows import (
    ID_OFFSETS,
    ConversionError,
    PathLike,
    log_odd,
    make_frame,
    make_row,
    text_field,
)

log = logging.getLogger(__name__)


_AUTOJ_LABELS = {0: "a", 1: "b", 2: "tie"}


def convert_autoj(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """Auto-J pairwise JSONL: label 0 = response 1, 1 = response 2, 2 = tie."""
    del seed  # no shuffling: "response 1" -> A
    rows: list[dict] = []
    odd: collections.Counter[str] = collections.Counter()
    for path in input_paths(paths):
        before = len(rows)
        for where, rec in iter_records(path):
            prompt = text_field(rec, "prompt", where)
            r1, r2 = text_field(rec, "response 1", where), text_field(rec, "response 2", where)
            if "label" not in rec:
                raise ConversionError(f"{where}: field 'label' missing")
            raw = rec["label"]
            value = int(raw) if isinstance(raw, str) and raw.strip() in {"0", "1", "2"} else raw
            if isinstance(value, bool) or value not in _AUTOJ_LABELS:
                raise ConversionError(f"{where}: field 'label' is {raw!r}, expected 0, 1 or 2")
            odd["empty response"] += (not r1.strip()) or (not r2.strip())
            odd["identical responses"] += r1 == r2
            rows.append(
                make_row(
                    ID_OFFSETS["autoj"] + len(rows),
                    [prompt],
                    [r1],
                    [r2],
                    _AUTOJ_LABELS[value],
                    source="autoj",
                    source_id=where.rsplit(" ", 1)[-1],
                )
            )
        require_rows(path, before, len(rows))
        log.info("autoj: %s: %d rows", path, len(rows) - before)
    log_odd("autoj", odd)
    return make_frame(rows)
