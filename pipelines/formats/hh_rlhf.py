"""Anthropic hh-rlhf: {chosen, rejected} transcripts split into turns; A/B order by a seeded shuffle."""

from __future__ import annotations

import collections
import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipelines.formats import schema
from pipelines.formats.reading import input_paths, iter_records, require_rows

log = logging.getLogger(__name__)


_HH_MARK = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def _hh_split(chosen: str, rejected: str, where: str) -> tuple[list[str], list[str], list[str]]:
    """(prompts, chosen replies, rejected replies) of one hh-rlhf pair.

    The two transcripts share every turn but the last assistant reply. The split point is
    the last "\\n\\nAssistant:" inside their common prefix; everything after it (even text
    that looks like further turns, which some sampled replies contain) is the reply.
    Consecutive markers of the same role are one turn (the marker stays in its text).
    """
    bounds: list[tuple[str, int, int]] = []
    for m in _HH_MARK.finditer(chosen):
        if not bounds or bounds[-1][0] != m.group(1):
            bounds.append((m.group(1), m.start(), m.end()))
    common = len(os.path.commonprefix([chosen, rejected]))
    last = [k for k, (role, _, end) in enumerate(bounds) if role == "Assistant" and end <= common]
    if not last:
        raise schema.ConversionError(
            f"{where}: fields 'chosen' and 'rejected' share no '\\n\\nHuman: ...\\n\\nAssistant:' "
            "turns before they differ"
        )
    k = last[-1]
    if bounds[0][0] != "Human" or chosen[: bounds[0][1]].strip():
        raise schema.ConversionError(f"{where}: field 'chosen' does not start with '\\n\\nHuman:'")
    texts = [
        chosen[end : (bounds[j + 1][1] if j + 1 < len(bounds) else len(chosen))].strip()
        for j, (_, _, end) in enumerate(bounds[:k])
    ]
    prompts = texts[0::2]
    shared = texts[1::2]
    start = bounds[k][2]
    return prompts, shared + [chosen[start:].strip()], shared + [rejected[start:].strip()]


def convert_hh_rlhf(paths: schema.PathLike | Sequence[schema.PathLike], seed: int = 0) -> pd.DataFrame:
    """Anthropic hh-rlhf {chosen, rejected} JSONL(.gz); A/B order by a seeded shuffle (chosen always wins)."""
    parsed: list[tuple] = []  # (prompts, chosen, rejected, source, source_id)
    odd: collections.Counter[str] = collections.Counter()
    for path in input_paths(paths):
        before = len(parsed)
        for where, rec in iter_records(path):
            chosen, rejected = schema.text_field(rec, "chosen", where), schema.text_field(rec, "rejected", where)
            prompts, ch, rj = _hh_split(chosen, rejected, where)
            odd["identical chosen/rejected"] += chosen == rejected
            odd["empty final reply"] += (not ch[-1]) or (not rj[-1])
            odd["final reply holding more 'Human:/Assistant:' turns"] += bool(
                re.search(r"\n\n(Human|Assistant):", ch[-1] + rj[-1])
            )
            folder = path.resolve().parent.name
            parsed.append((prompts, ch, rj, f"hh-rlhf/{folder}", f"{folder}/{path.name}:{where.rsplit(' ', 1)[-1]}"))
        require_rows(path, before, len(parsed))
        log.info("hh-rlhf: %s: %d rows", path, len(parsed) - before)
    swap = np.random.default_rng(seed).integers(0, 2, size=len(parsed)).astype(bool)
    rows = []
    for i, ((prompts, ch, rj, source, source_id), b_is_chosen) in enumerate(zip(parsed, swap)):
        a, b, winner = (rj, ch, "b") if b_is_chosen else (ch, rj, "a")
        rows.append(
            schema.make_row(schema.ID_OFFSETS["hh-rlhf"] + i, prompts, a, b, winner, source=source, source_id=source_id)
        )
    schema.log_odd("hh-rlhf", odd)
    return schema.make_frame(rows)
