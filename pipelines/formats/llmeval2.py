"""LLMEval2: multi-turn pairwise judgements."""

from __future__ import annotations

import collections
import logging
import re
from collections.abc import Sequence

import pandas as pd

from pipelines.formats import schema
from pipelines.formats.reading import records_by_file

log = logging.getLogger(__name__)


_LLMEVAL2_LABELS = {"model1": "a", "model2": "b", "tie": "tie"}
_MT_MARK = re.compile(r"(?:^|\n\n)(user|assistant): ")


def _mt_turns(text: str) -> tuple[list[str], list[str]] | None:
    """'user: ...\\n\\nassistant: ...' transcript -> (user turns, assistant turns), None if not one."""
    parts = _MT_MARK.split(text)
    if parts[0] != "" or len(parts) < 3:
        return None
    roles, texts = parts[1::2], parts[2::2]
    if len(roles) % 2 or roles != ["user", "assistant"] * (len(roles) // 2):
        return None
    return texts[0::2], texts[1::2]


def convert_llmeval2(paths: schema.PathLike | Sequence[schema.PathLike], seed: int = 0) -> pd.DataFrame:
    """LLMEval2 benchmark (.zip or JSON/JSONL): human model1/model2/TIE; source llmeval2/<dataset>.

    Its mt-bench rows have an empty query and the whole two-turn dialogue in each
    response ("user: ...\\n\\nassistant: ..."); where both sides parse into the same
    user turns they become real multi-turn rows, otherwise (truncated dialogues) they
    are kept as they are with prompt [""].
    """
    del seed  # no shuffling: response1 -> A
    rows: list[dict] = []
    odd: collections.Counter[str] = collections.Counter()
    for where, rec in records_by_file(paths, "llmeval2", rows):
        query = schema.text_field(rec, "query", where)
        r1, r2 = schema.response_pair(rec, where, "response1", "response2", odd)
        human = schema.text_field(rec, "human", where)
        label = _LLMEVAL2_LABELS.get(human.strip().lower())
        if label is None:
            raise schema.ConversionError(f"{where}: field 'human' is {human!r}, expected model1, model2 or TIE")
        dataset = schema.text_field(rec, "dataset", where, optional=True).strip()
        prompt, a, b = [query], [r1], [r2]
        if not query.strip():
            ta, tb = _mt_turns(r1), _mt_turns(r2)
            if ta and tb and ta[0] == tb[0]:
                prompt, a, b = ta[0], ta[1], tb[1]
                odd["empty query, dialogue split into turns"] += 1
            else:
                odd["empty query, kept as one flat turn"] += 1
        rows.append(
            schema.make_row(
                schema.ID_OFFSETS["llmeval2"] + len(rows),
                prompt,
                a,
                b,
                label,
                source=f"llmeval2/{dataset}" if dataset else "llmeval2",
                source_id=where.rsplit(" ", 1)[-1],
            )
        )
    schema.log_odd("llmeval2", odd)
    return schema.make_frame(rows)
