"""PandaLM test set: pairwise comparisons with annotator votes."""

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


def _split_cmp_key(key: str, where: str) -> tuple[str, str]:
    parts = key.split("_")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise ConversionError(f"{where}: field 'cmp_key' {key!r} is not '<modelX>_<modelY>' with exactly one '_'")
    return parts[0].strip(), parts[1].strip()


def convert_pandalm(paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """PandaLM testset-v1.json: majority of annotator1..3 (0 tie, 1 response1, 2 response2)."""
    del seed  # no shuffling: response1 -> A
    rows: list[dict] = []
    labels = {0: "tie", 1: "a", 2: "b"}
    odd: collections.Counter[str] = collections.Counter()
    for path in input_paths(paths):
        before = len(rows)
        for where, rec in iter_records(path):
            prompt = text_field(rec, "instruction", where)
            extra = text_field(rec, "input", where, optional=True)
            if extra.strip():
                prompt = f"{prompt}\n\n{extra}"
            r1, r2 = text_field(rec, "response1", where), text_field(rec, "response2", where)
            model_a, model_b = _split_cmp_key(text_field(rec, "cmp_key", where), where)
            votes = []
            for field in ("annotator1", "annotator2", "annotator3"):
                if field not in rec:
                    raise ConversionError(f"{where}: field {field!r} missing")
                v = rec[field]
                if isinstance(v, bool) or v not in labels:
                    raise ConversionError(f"{where}: field {field!r} is {v!r}, expected 0, 1 or 2")
                votes.append(v)
            top, count = collections.Counter(votes).most_common(1)[0]
            if count < 2:
                raise ConversionError(f"{where}: fields 'annotator1..3' {votes} have no majority")
            odd["empty response"] += (not r1.strip()) or (not r2.strip())
            odd["identical responses"] += r1 == r2
            rows.append(
                make_row(
                    ID_OFFSETS["pandalm"] + len(rows),
                    [prompt],
                    [r1],
                    [r2],
                    labels[top],
                    model_a=model_a,
                    model_b=model_b,
                    source="pandalm",
                    source_id=rec.get("idx", where),
                )
            )
        require_rows(path, before, len(rows))
        log.info("pandalm: %s: %d rows", path, len(rows) - before)
    log_odd("pandalm", odd)
    return make_frame(rows)
