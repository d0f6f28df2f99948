"""New-source calibration, judged as a procedure by nested leave-one-source-out (LOSO).

    python benchmarks/new_source_calibration.py --combined combined.csv --work outputs/nsc   # predictions (cached)
    python benchmarks/new_source_calibration.py --combined combined.csv --work outputs/nsc --analyse

For every fold seed and every held-out tie-bearing source h (>= 200 rows):
- ``loso[h]``: a stacker trained on every other source (minus rows sharing a prompt or answer-pair
  group with h) predicts h: what a deployed model does on a new source;
- ``inner[h][s]``: for each other tie-bearing source s, a stacker trained without h *and* s predicts
  s: the LOSO predictions a calibrator for h may be fitted on (it never sees h, nor a model that did);
- ``insource[h]``: 5-fold grouped OOF over the rows that may train for h: what today's in-source
  calibrator (temperature on the primary OOF rows) is fitted on.
Each candidate procedure is fitted on ``inner[h]`` (or ``insource[h]``) and scores ``loso[h]``; macro
mean over held-out sources, paired per seed against today's in-source temperature. Stacker: the
product's defaults (``StackerConfig``, ``masked_tie``) on one thread; the seed moves folds, the inner
early-stopping split and bagging. ``--groups`` changes the feature groups (a feature variant is a
``--tag``): the same study then judges features. Writes ``results.{json,md}`` and PNGs to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena_schema import N_CLASSES
from benchmarks.common import ROOT
from features.extractor import FeatureExtractor
from features.groups import DEFAULT_GROUPS
from pipelines.data.source_folds import make_source_folds, source_groups
from pipelines.data.training_sets import load_training_sources, mark_sources_with_ties, source_families
from pipelines.runtime.command_setup import setup_logging
from stacking.config import STUDY_PRESET, StackerConfig
from stacking.cross_fit import cross_fit
from stacking.source_balance import source_balance_weights
from stacking.source_holdout import eligible_holdouts, held_out_source_proba, source_training_rows

log = logging.getLogger("new_source_calibration")


def load_data(combined: Path, groups: tuple[str, ...], cache_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    battles = mark_sources_with_ties(load_training_sources(combined)).reset_index(drop=True)
    # held-out units are source families (mtbench-human with its turn 2, qlora-vicuna80 with FairEval): a source
    # is never judged "new" while its twin trains
    battles["source"] = source_families(battles["source"].to_numpy())
    X = FeatureExtractor(groups, n_jobs=1, cache_dir=cache_dir, progress=True).transform(battles)
    return battles, X.reset_index(drop=True)


def _cached(path: Path, make) -> np.ndarray:
    if path.exists():
        return np.load(path)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, value)
    return value


def predict_stage(
    battles: pd.DataFrame,
    X: pd.DataFrame,
    work: Path,
    seeds: list[int],
    config: StackerConfig,
    insource: bool = True,
    source_balance: float = 0.0,
) -> None:
    """Every LOSO, leave-two-out and (``insource``) in-source OOF prediction of the study, cached per piece.
    ``source_balance``: train with :func:`stacking.source_balance.source_balance_weights` of that power,
    computed over each fit's own training rows."""
    y = battles["label"].to_numpy()
    source = battles["source"].to_numpy().astype(str)
    has_ties = battles["source_has_ties"].to_numpy(dtype=bool)
    groups = source_groups(battles)
    holdouts = eligible_holdouts(source, has_ties)

    def held_out(holdout: str, seed: int, exclude: Sequence[str] = ()) -> np.ndarray:
        """OOF probabilities of ``holdout`` with the sources in ``exclude`` left out of training too."""
        weights = None
        if source_balance:
            weights = np.zeros(len(source))
            train = source_training_rows(source, groups, [holdout, *exclude])
            weights[train] = source_balance_weights(source[train], source_balance)
        proba = held_out_source_proba(
            X, y, source, has_ties, groups, [holdout], config, seed, exclude=exclude, sample_weight=weights
        )
        return proba[holdout]

    for seed in seeds:
        for h in holdouts:
            t0 = time.time()
            _cached(
                work / f"seed{seed}" / f"loso_{h}.npy",
                lambda h=h, seed=seed: held_out(h, seed),
            )
            for s in holdouts:
                if s != h:
                    _cached(
                        work / f"seed{seed}" / f"inner_{h}__{s}.npy",
                        lambda h=h, s=s, seed=seed: held_out(s, seed, [h]),
                    )
            if insource:
                _cached(
                    work / f"seed{seed}" / f"insource_{h}.npy",
                    lambda h=h, seed=seed: _insource_oof(battles, X, h, seed, config),
                )
            log.info("seed %d, held-out %s: %.0f s", seed, h, time.time() - t0)


def _insource_oof(battles: pd.DataFrame, X: pd.DataFrame, held: str, seed: int, config: StackerConfig) -> np.ndarray:
    """OOF over the rows that may train for ``held`` (NaN elsewhere), 5 grouped folds as a run makes them."""
    source = battles["source"].to_numpy().astype(str)
    rows = source_training_rows(source, source_groups(battles), [held])
    sub = battles[rows].reset_index(drop=True)
    folds = make_source_folds(sub, 5, seed)
    raw = cross_fit(
        X[rows].reset_index(drop=True),
        sub["label"].to_numpy(),
        folds,
        source_groups(sub),
        config=config,
        seed=seed,
        tieless=~sub["source_has_ties"].to_numpy(dtype=bool),
        source=sub["source"].to_numpy(),
    )
    out = np.full((len(battles), N_CLASSES), np.nan)
    out[rows] = raw.oof
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--combined", type=Path, required=True, help="pipelines.build_shared output (source column)")
    p.add_argument("--work", type=Path, required=True, help="prediction cache (resumable)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "new_source_calibration")
    p.add_argument("--fold-seeds", type=int, default=3)
    p.add_argument("--groups", default=",".join(DEFAULT_GROUPS), help="feature groups (comma-separated)")
    p.add_argument("--tag", default="features", help="name of this feature variant (its own cache)")
    p.add_argument("--cache-dir", type=Path, default=ROOT / "outputs" / "feature_cache")
    p.add_argument("--analyse", action="store_true", help="score the candidates on the cached predictions")
    p.add_argument(
        "--no-insource",
        action="store_true",
        help="skip the in-source OOF fits (a feature variant judged against --baseline-tag's chosen procedure)",
    )
    p.add_argument(
        "--source-balance", type=float, default=0.0, help="train with source-balanced weights of this power (0: off)"
    )
    p.add_argument("--params", default="{}", help="JSON overrides of stacking.lgbm.DEFAULT_PARAMS for every fit")
    p.add_argument(
        "--keep-columns",
        default=None,
        help="regular expression: only the feature columns it matches train (e.g. '^(diff|logratio|pair)_')",
    )
    p.add_argument("--baseline-tag", default="features", help="the variant a feature variant is paired against")
    p.add_argument(
        "--against",
        default=None,
        help="with --analyse: pair every candidate with this candidate of the same variant"
        " (e.g. temperature/per_source/none); results go to <tag>_vs_<candidate>/",
    )
    args = p.parse_args(argv)
    setup_logging()
    groups = tuple(g for g in args.groups.split(",") if g)
    battles, X = load_data(args.combined, groups, args.cache_dir)
    if args.keep_columns:
        X = X.filter(regex=args.keep_columns)
        if X.shape[1] == 0:
            raise SystemExit(f"--keep-columns {args.keep_columns!r} matches no feature column")
        log.info("kept %d feature columns matching %r", X.shape[1], args.keep_columns)
    seeds = STUDY_PRESET.fold_seeds(args.fold_seeds)
    work = args.work / args.tag
    if not args.analyse:
        predict_stage(
            battles,
            X,
            work,
            seeds,
            StackerConfig(num_threads=STUDY_PRESET.num_threads, params=json.loads(args.params)),
            insource=not args.no_insource,
            source_balance=args.source_balance,
        )
        return 0
    from benchmarks.new_source_study import analyse

    analyse(battles, X, args.work, args.tag, seeds, args.out, " ".join(sys.argv), args.baseline_tag, args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
