"""The training frame of a run: one file, or several sources, and which rows the run is judged on.

Why: ``--extra-train`` files only train, so a run's OOF metrics and calibration must cover the
primary file alone. A single file with its own ``source`` column holding several sources (the
combined shared data of ``pipelines.build_shared``) is several sources too; its *primary* rows are
those of its sources with ties. A tie-less source's labels say nothing about P(tie): it trains
with its tie logit masked (``masked_tie``), and calibrating the tie bias on it, or scoring OOF on
it, would reward P(tie) = 0, the very thing the masking avoids. When no source of the file has a
tie, every row is primary. Its per-source OOF is in the report either way (``oof_per_source``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.battles import ParseReport, load_battles
from pipelines.data.training_sets import (
    TrainingSource,
    TrainingSourcesConfig,
    load_training_sources,
    mark_sources_with_ties,
    pop_own_sources,
)
from stacking.source_holdout import eligible_holdouts


def is_multi_source(train: pd.DataFrame) -> bool:
    """Rows of more than one source: folds are grouped across sources, extras only train."""
    return "source" in train.columns and train["source"].nunique() > 1


def primary_of_combined(frame: pd.DataFrame) -> np.ndarray:
    """Rows of a combined file that are scored: those of its sources with ties (all rows if none has one)."""
    has_ties = frame["source_has_ties"].to_numpy(dtype=bool)
    return has_ties if has_ties.any() else np.ones(len(frame), dtype=bool)


def with_source_columns(train: pd.DataFrame) -> pd.DataFrame:
    """A frame with a several-valued ``source`` column but without ``is_primary``/``weight``/
    ``source_has_ties`` (e.g. the combined file read as a frame) gets them, as :func:`load_run_train`
    would give them; any other frame is returned as it is."""
    if not is_multi_source(train) or {"is_primary", "weight", "source_has_ties"} <= set(train.columns):
        return train
    frame = mark_sources_with_ties(train.assign(source=train["source"].astype(str)))
    if "weight" not in frame:
        frame["weight"] = 1.0
    if "is_primary" not in frame:
        frame["is_primary"] = primary_of_combined(frame)
    return frame


def load_run_train(train_path: str | Path, sources: TrainingSourcesConfig) -> tuple[pd.DataFrame, ParseReport]:
    """The run's training battles and the primary file's parse report: ``load_battles`` as today for
    one plain file; with extras, or a file whose ``source`` column names several sources,
    :func:`pipelines.data.training_sets.load_training_sources` plus the primary rows decided above."""
    battles, parse = load_battles(train_path, labelled=True, keep=("source",))
    own = pop_own_sources(battles, train_path)
    if not sources.extra_train and (own is None or own.nunique() <= 1):
        return battles, parse  # the single-source path, unchanged
    frame = load_training_sources(
        TrainingSource(path=Path(train_path), name=Path(train_path).name.split(".")[0] or Path(train_path).name),
        sources.sources,
        primary_read=(battles, own),
    )
    mine = frame["is_primary"].to_numpy(dtype=bool)
    if frame.loc[mine, "source"].nunique() > 1:  # a combined primary file: its tie-less sources only train
        frame.loc[mine, "is_primary"] = primary_of_combined(frame[mine])
    return frame, parse


def new_source_holdouts(train: pd.DataFrame) -> list[str]:
    """The sources a new-source calibrator would be fitted on (tie-bearing, >= 200 rows): the fit makes one
    only when there are two or more (:func:`pipelines.stages.new_source_stage.fit_new_source`, same rule)."""
    if "source" not in train.columns or "source_has_ties" not in train.columns:
        return []
    return eligible_holdouts(train["source"].to_numpy(), train["source_has_ties"].to_numpy())


def scored_mask(train: pd.DataFrame) -> np.ndarray:
    """The rows a run is judged on: ``is_primary`` where the frame has it, else every row."""
    if "is_primary" in train.columns:
        return train["is_primary"].to_numpy(dtype=bool)
    return np.ones(len(train), dtype=bool)
