"""Input formats of ``pipelines.convert``: one module per external source, one shared row schema.

Why: the training and evaluation code only reads the Kaggle "LLM Classification
Finetuning" layout, so every outside source (Chatbot Arena dumps, Anthropic
hh-rlhf, PandaLM, LLMEval2, Auto-J) is mapped here, once, to exactly that schema,
with its own label rules and A/B order handled per source. Bad rows raise
``ConversionError`` naming file, line/row and field; no row is ever dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from pipelines.formats.arena import convert_arena
from pipelines.formats.autoj import convert_autoj
from pipelines.formats.hh_rlhf import convert_hh_rlhf
from pipelines.formats.llmeval2 import convert_llmeval2
from pipelines.formats.pandalm import convert_pandalm
from pipelines.formats.reading import input_paths
from pipelines.formats.schema import COLUMNS, ConversionError, PathLike, label_counts, validate

__all__ = ["COLUMNS", "CONVERTERS", "ConversionError", "convert", "label_counts", "validate"]

CONVERTERS: dict[str, Callable[..., pd.DataFrame]] = {
    "arena": convert_arena,
    "hh-rlhf": convert_hh_rlhf,
    "pandalm": convert_pandalm,
    "llmeval2": convert_llmeval2,
    "autoj": convert_autoj,
}


def convert(format: str, paths: PathLike | Sequence[PathLike], seed: int = 0) -> pd.DataFrame:
    """Convert `paths` of one source format into one validated train.csv-schema DataFrame."""
    if format not in CONVERTERS:
        raise ValueError(f"unknown format {format!r}; choose from {sorted(CONVERTERS)}")
    df = CONVERTERS[format](input_paths(paths), seed=seed)
    validate(df)
    return df
