"""Auto-J pairwise test set: labels 0/1/2 as A/B/tie."""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

import pandas as pd

from pipelines.formats import schema
from pipelines.formats.reading import records_by_file

log = logging.getLogger(__name__)


_AUTOJ_LABELS = {0: "a", 1: "b", 2: "tie"}


def convert_autoj(paths: schema.PathLike | Sequence[schema.PathLike], seed: int = 0) -> pd.DataFrame:
    """Auto-J pairwise JSONL: label 0 = response 1, 1 = response 2, 2 = tie."""
    del seed  # no shuffling: "response 1" -> A
    rows: list[dict] = []
    odd: collections.Counter[str] = collections.Counter()
    for where, rec in records_by_file(paths, "autoj", rows):
        prompt = schema.text_field(rec, "prompt", where)
        r1, r2 = schema.response_pair(rec, where, "response 1", "response 2", odd)
        if "label" not in rec:
            raise schema.ConversionError(f"{where}: field 'label' missing")
        raw = rec["label"]
        value = int(raw) if isinstance(raw, str) and raw.strip() in {"0", "1", "2"} else raw
        if isinstance(value, bool) or value not in _AUTOJ_LABELS:
            raise schema.ConversionError(f"{where}: field 'label' is {raw!r}, expected 0, 1 or 2")
        rows.append(
            schema.single_turn_row(
                "autoj", len(rows), prompt, r1, r2, _AUTOJ_LABELS[value], source_id=where.rsplit(" ", 1)[-1]
            )
        )
    schema.log_odd("autoj", odd)
    return schema.make_frame(rows)
