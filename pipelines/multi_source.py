"""Cross-fitting over a primary set plus extra training sources: the pieces full_run, tune and
ablation need for ``--extra-train`` and ``--fold-seeds``.

Why: extra sources only train. Folds are made over *all* rows (grouped by prompt and answer pair,
``pipelines.source_folds``), so a prompt that is in the primary's fold k is never trained on
through an extra set; OOF metrics and calibration then use the primary rows only, and the
report gives OOF per source. Which tie handling to use when extras are given is what the
leave-one-source-out report (``pipelines.loso``) decides: ``DEFAULT_TIE_HANDLING``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.loso import score_rows
from pipelines.source_folds import make_source_folds, source_groups
from stacking.tie_handling import OPTIONS, TieAwareStacker

DEFAULT_TIE_HANDLING = "masked_tie"  # chosen by benchmarks/results/loso (README: "Several training sources")


def add_training_source_args(parser: argparse.ArgumentParser) -> None:
    """``--extra-train FILE[:weight]`` (repeatable), ``--tie-handling``, ``--fold-seeds``."""
    parser.add_argument(
        "--extra-train",
        action="append",
        default=[],
        metavar="[NAME=]FILE[:WEIGHT]",
        help="an extra training set (only trains; never scored); repeatable",
    )
    parser.add_argument(
        "--tie-handling",
        choices=OPTIONS,
        default=None,
        help=f"how sources without ties train (default: {DEFAULT_TIE_HANDLING} with extra sources, plain without)",
    )
    parser.add_argument("--fold-seeds", type=int, default=1, help="repeated grouped CV: N fold seeds")


def resolve_tie_handling(requested: str | None, battles: pd.DataFrame) -> str:
    """The requested option, else the default: plain for one source, the LOSO choice for several."""
    if requested is not None:
        return requested
    return DEFAULT_TIE_HANDLING if battles["source"].nunique() > 1 else "plain"


@dataclass
class SourceCrossFit:
    """OOF probabilities for every row (extras included, for the per-source report), test means."""

    oof: np.ndarray
    test: np.ndarray | None
    folds: np.ndarray
    models: list[TieAwareStacker]


def cross_fit_sources(
    X: pd.DataFrame,
    battles: pd.DataFrame,
    option: str,
    n_folds: int = 5,
    seed: int = 42,
    X_test: pd.DataFrame | None = None,
    folds: np.ndarray | None = None,
    **stacker_kwargs,
) -> SourceCrossFit:
    """One tie-aware stacker per fold, trained on every source's rows outside the fold."""
    folds = make_source_folds(battles, n_folds, seed) if folds is None else np.asarray(folds)
    groups = source_groups(battles)
    y = battles["label"].to_numpy()
    oof = np.zeros((len(y), 3))
    test = np.zeros((len(X_test), 3)) if X_test is not None else None
    models = []
    for k in np.unique(folds):
        train = folds != k
        model = TieAwareStacker(option, seed=seed + int(k), **stacker_kwargs).fit(
            X[train],
            y[train],
            battles["source"].to_numpy()[train],
            battles["source_has_ties"].to_numpy()[train],
            battles["weight"].to_numpy()[train] if "weight" in battles else None,
            groups[train],
        )
        oof[~train] = model.predict_proba(X[~train])
        if test is not None:
            test += model.predict_proba(X_test) / len(np.unique(folds))
        models.append(model)
    return SourceCrossFit(oof=oof, test=test, folds=folds, models=models)


def oof_per_source(battles: pd.DataFrame, oof: np.ndarray) -> dict[str, dict]:
    """Log loss, per-class loss, pairwise loss and vote-share loss of the OOF rows of each source."""
    y = battles["label"].to_numpy()
    out = {}
    for source in battles["source"].drop_duplicates():
        rows = (battles["source"] == source).to_numpy()
        out[str(source)] = score_rows(battles[rows], y[rows], oof[rows])
    return out


def paired_seed_deltas(variant: list[float], base: list[float]) -> dict:
    """Mean ± std over fold seeds of (variant − base), paired per seed: the split alone moves OOF."""
    diff = np.asarray(variant, dtype=float) - np.asarray(base, dtype=float)
    return {
        "diff_mean": float(diff.mean()),
        "diff_std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
        "seeds": int(len(diff)),
    }
