"""PandaLM test set: pairwise comparisons with annotator votes."""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

import pandas as pd

from pipelines.formats import schema
from pipelines.formats.reading import records_by_file

log = logging.getLogger(__name__)


def _split_cmp_key(key: str, where: str) -> tuple[str, str]:
    parts = key.split("_")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise schema.ConversionError(
            f"{where}: field 'cmp_key' {key!r} is not '<modelX>_<modelY>' with exactly one '_'"
        )
    return parts[0].strip(), parts[1].strip()


def convert_pandalm(paths: schema.PathLike | Sequence[schema.PathLike], seed: int = 0) -> pd.DataFrame:
    """PandaLM testset-v1.json: majority of annotator1..3 (0 tie, 1 response1, 2 response2)."""
    del seed  # no shuffling: response1 -> A
    rows: list[dict] = []
    labels = {0: "tie", 1: "a", 2: "b"}
    odd: collections.Counter[str] = collections.Counter()
    for where, rec in records_by_file(paths, "pandalm", rows):
        prompt = schema.text_field(rec, "instruction", where)
        extra = schema.text_field(rec, "input", where, optional=True)
        if extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        r1, r2 = schema.response_pair(rec, where, "response1", "response2", odd)
        model_a, model_b = _split_cmp_key(schema.text_field(rec, "cmp_key", where), where)
        votes = []
        for field in ("annotator1", "annotator2", "annotator3"):
            if field not in rec:
                raise schema.ConversionError(f"{where}: field {field!r} missing")
            v = rec[field]
            if isinstance(v, bool) or v not in labels:
                raise schema.ConversionError(f"{where}: field {field!r} is {v!r}, expected 0, 1 or 2")
            votes.append(v)
        top, count = collections.Counter(votes).most_common(1)[0]
        if count < 2:
            raise schema.ConversionError(f"{where}: fields 'annotator1..3' {votes} have no majority")
        rows.append(
            schema.single_turn_row(
                "pandalm",
                len(rows),
                prompt,
                r1,
                r2,
                labels[top],
                model_a=model_a,
                model_b=model_b,
                source_id=rec.get("idx", where),
            )
        )
    schema.log_odd("pandalm", odd)
    return schema.make_frame(rows)
