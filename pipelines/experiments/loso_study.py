"""Leave-one-source-out study: how each tie handling transfers to a source it has never seen.

For every held-out source: train on all other sources (minus any row sharing a prompt or an
answer pair with the held-out one, so overlapping sets cannot leak), score the held-out rows.
Also within-source OOF: grouped folds over all rows, scored per source. Each option of
``stacking.tie_handling`` is run with every fold seed (the seed moves the folds, the inner
early-stopping split and LightGBM's bagging); results are mean ± std over seeds, and deltas are
paired per seed against ``drop_tieless``. The commands ``pipelines.loso`` and
``pipelines.ablation --by-source`` call :func:`run_loso`, :func:`summarize_results` and
:func:`write_outputs`.

The study uses the run's feature flags with the run's meaning: ``--groups``, and the fold features
(``--tfidf``, ``--embedder``) fitted on each fit's training rows only. Its probabilities are
uncalibrated, on purpose: the held-out source plays the new source, and the run's new-source
calibrator is itself fitted on leave-one-source-out predictions, so applying it here would score it
on the rows it was fitted on. Judging it honestly needs a nested study (a calibrator for source h fitted
on predictions of models that never saw h): ``benchmarks/new_source_calibration.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from arena_schema import N_CLASSES
from features.extractor import FeatureExtractor
from features.groups import expand_groups
from pipelines.config.run_config import FeatureConfig
from pipelines.data.source_folds import make_source_folds, source_groups
from pipelines.data.training_sets import (
    combined_shared_data,
    family_members,
    load_training_sources,
    mark_sources_with_ties,
    source_families,
)
from pipelines.reports.loso_report import summarize_results, write_outputs
from pipelines.reports.metrics import reliability
from pipelines.reports.source_scoring import score_rows
from pipelines.stages.fold_feature_setup import build_fold_features, fold_feature_name
from stacking.config import STUDY_PRESET
from stacking.cross_fit import with_fold_features
from stacking.fold_feature_cache import FoldFeatureCache
from stacking.source_holdout import source_training_rows
from stacking.tie_handling import TieAwareStacker
from stacking.tie_registry import option_names

log = logging.getLogger(__name__)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass(kw_only=True)
class LosoConfig:
    """Settings of one study (``pipelines.loso``'s flags are built from these fields). Lists are comma-separated
    text, as typed on the command line; the methods read them. Defaults: ``stacking.config.STUDY_PRESET``, so
    the numbers stay comparable with the committed studies."""

    data: Path | None = field(
        default=None, metadata={"help": "shared data folder (converted with pipelines.build_shared rules)"}
    )
    combined: Path | None = field(default=None, metadata={"help": "a train.csv-schema file with a source column"})
    out: Path = field(metadata={"help": "folder for loso.{json,md,html} and PNGs"})
    options: str = field(
        default_factory=lambda: ",".join(option_names()),  # the registered options, read when asked
        metadata={"help": "comma-separated tie handlings to compare (stacking.tie_registry)"},
    )
    fold_seeds: int = field(default=3, metadata={"help": "repeated fold splits: results are mean and std over them"})
    holdouts: str = field(default="", metadata={"help": "comma-separated sources to hold out ('': all)"})
    oof_options: str | None = field(
        default=None, metadata={"help": "options that also get within-source OOF (none given: all; '' none)"}
    )
    jobs: int = field(default=1, metadata={"help": "(option, seed) tasks run in parallel"})
    folds: int = field(default=STUDY_PRESET.n_folds, metadata={"help": "grouped CV folds"})
    cache_dir: Path = field(default=Path("outputs/feature_cache"), metadata={"help": "feature cache"})
    learning_rate: float = field(default=STUDY_PRESET.learning_rate, metadata={"help": "LightGBM learning rate"})
    num_boost_round: int = field(default=STUDY_PRESET.num_boost_round, metadata={"help": "most boosting rounds"})
    early_stopping_rounds: int = field(
        default=STUDY_PRESET.early_stopping_rounds, metadata={"help": "stop after this many rounds without gain"}
    )
    num_threads: int = field(default=STUDY_PRESET.num_threads, metadata={"help": "LightGBM threads per fit"})
    tieless_weight: float = field(
        default=STUDY_PRESET.tieless_weight, metadata={"help": "the weight of a tie-less row (option weighted)"}
    )
    n_jobs: int = field(default=1, metadata={"help": "feature extraction processes"})
    groups: str = field(
        default="default",
        metadata={"help": "comma-separated feature groups, 'default' for the default ones (e.g. default,sentiment)"},
    )
    fold_features: FeatureConfig = field(default_factory=FeatureConfig, metadata={"cli": False})  # --tfidf, ...

    def __post_init__(self) -> None:
        if (self.data is None) == (self.combined is None):
            raise ValueError("give one of --data and --combined")
        self.data = None if self.data is None else Path(self.data)  # a str from Python code works too
        self.combined = None if self.combined is None else Path(self.combined)
        self.out, self.cache_dir = Path(self.out), Path(self.cache_dir)
        for flag, names in (("--options", self.option_list()), ("--oof-options", self.oof_option_list())):
            unknown = [o for o in names if o not in option_names()]
            if unknown:
                raise ValueError(f"{flag}: unknown option(s) {unknown}; choose from {option_names()}")
        from features.groups import GROUPS

        groups = self.feature_groups()
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or not groups:
            raise ValueError(
                f"--groups {self.groups!r}: unknown or no feature group(s) {unknown}; choose from {sorted(GROUPS)}"
            )
        for name, least in (("fold_seeds", 1), ("folds", 2), ("jobs", 1), ("n_jobs", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least {least}")

    def option_list(self) -> list[str]:
        return _names(self.options)

    def oof_option_list(self) -> list[str]:
        return self.option_list() if self.oof_options is None else _names(self.oof_options)

    def holdout_list(self) -> list[str] | None:
        """The sources to hold out; None: every source."""
        return _names(self.holdouts) or None

    def feature_groups(self) -> tuple[str, ...]:
        return expand_groups(_names(self.groups))

    def feature_config(self) -> FeatureConfig:
        """The fold features (``--tfidf``, ``--embedder``) over the study's groups."""
        return dataclasses.replace(self.fold_features, groups=self.feature_groups(), n_jobs=self.n_jobs)

    def stacker_settings(self) -> dict:
        """Keywords of ``TieAwareStacker`` (and the report's ``settings``)."""
        return {
            "params": {"learning_rate": self.learning_rate, "num_threads": self.num_threads},
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "tieless_weight": self.tieless_weight,
        }


# --------------------------------------------------------------------------- experiment


def _fit_predict(option, X, battles, train, test, groups, seed, settings, fold_features=(), cache=None) -> np.ndarray:
    """One stacker on the ``train`` rows, its probabilities for the ``test`` rows; the fold features (``--tfidf``,
    ``--embedder``) are fitted on the training rows only, as in every fold of a run (by ``cache``, a
    :class:`FoldFeatureCache` over ``battles``, once for every option that trains on these rows)."""
    train_idx, test_idx = np.flatnonzero(train), np.flatnonzero(test)
    if cache is not None:
        fitted = [cache.fit(t, train_idx) for t in fold_features]
    else:
        fitted = [clone(t).fit(battles.iloc[train_idx]) for t in fold_features]
    model = TieAwareStacker(option, seed=seed, **settings)
    model.fit(
        with_fold_features(X.iloc[train_idx], battles, fitted, train_idx, cache),
        battles["label"].to_numpy()[train],
        battles["source"].to_numpy()[train],
        battles["source_has_ties"].to_numpy()[train],
        battles["weight"].to_numpy()[train] if "weight" in battles else None,
        groups[train],
    )
    return model.predict_proba(with_fold_features(X.iloc[test_idx], battles, fitted, test_idx, cache))


def _run_task(
    option, k, battles, X, groups, holdouts, n_folds, oof, settings, has_ties, fold_features=(), cache=None
) -> dict:
    """One option with one fold seed: every held-out source family, then (optionally) grouped OOF."""
    seed = STUDY_PRESET.fold_seed(k)
    y = battles["label"].to_numpy()
    sources = battles["source"].to_numpy().astype(str)
    families = source_families(sources)
    out: dict[str, Any] = {"loso": {}, "oof": {}, "pooled": None}
    pooled_y, pooled_p = [], []
    for held in holdouts:
        test = families == held
        train = source_training_rows(families, groups, [held])
        t0 = time.time()
        proba = _fit_predict(option, X, battles, train, test, groups, seed, settings, fold_features, cache)
        sc = score_rows(battles[test], y[test], proba)
        out["loso"][held] = sc
        tie = sc["per_class"]["tie"]
        log.info(
            "loso %s seed %d held %s: %.4f (tie-row %s) %.0fs",
            option,
            seed,
            held,
            sc["log_loss"],
            "-" if tie is None else f"{tie:.3f}",
            time.time() - t0,
        )
        if has_ties[held]:
            pooled_y.append(y[test])
            pooled_p.append(proba)
    if pooled_y:
        out["pooled"] = (np.concatenate(pooled_y), np.vstack(pooled_p))
    if oof:
        folds = make_source_folds(battles, n_folds, seed)
        proba = np.zeros((len(y), N_CLASSES))
        for f in range(n_folds):
            held = folds == f
            proba[held] = _fit_predict(option, X, battles, ~held, held, groups, seed, settings, fold_features, cache)
        for s in sorted(set(sources)):
            rows = sources == s
            out["oof"][s] = score_rows(battles[rows], y[rows], proba[rows])
        log.info("oof %s seed %d done", option, seed)
    return out


def run_loso(
    battles: pd.DataFrame,
    X: pd.DataFrame,
    options=None,
    fold_seeds: int = 3,
    holdouts=None,
    n_folds: int = STUDY_PRESET.n_folds,
    oof_options=None,
    settings: dict | None = None,
    n_jobs: int = 1,
    on_progress=None,
    fold_features: Sequence[Any] = (),
    fold_cache: bool = True,
) -> dict:
    """Scores per option, seed and source (LOSO and, for ``oof_options``, within-source OOF), plus
    pooled predictions of the tie-bearing held-out sources for the reliability diagrams (first seed).
    ``fold_features`` (unfitted; ``battles`` carry the columns they read) are fitted on each fit's training rows;
    with ``n_jobs=1`` and ``fold_cache`` once per seed and training rows for all options (a cache per seed, so
    memory holds one seed's fits; parallel tasks run in other processes and fit their own)."""
    from joblib import Parallel, delayed

    settings = settings or {}
    options = list(option_names() if options is None else options)
    oof_options = options if oof_options is None else list(oof_options)
    battles = battles.reset_index(drop=True)
    X = X.reset_index(drop=True)
    families = source_families(battles["source"].to_numpy())
    groups = source_groups(battles)
    holdouts = sorted({str(f) for f in source_families(holdouts)}) if holdouts else sorted(set(families))
    has_ties = _tie_bearing(battles, families)
    tasks = [(o, k) for k in range(fold_seeds) for o in options]  # seed by seed: partial reports stay paired
    cache_of = _seed_cache(battles, fold_cache and bool(fold_features) and n_jobs == 1)
    done = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_task)(
            o, k, battles, X, groups, holdouts, n_folds, o in oof_options, settings, has_ties, fold_features,
            cache=cache_of(k),
        )
        for o, k in tasks
    )  # fmt: skip
    return _gather(tasks, done, has_ties, on_progress)


def _tie_bearing(battles: pd.DataFrame, families: np.ndarray) -> dict[str, bool]:
    """Whether each source and each family has ties: by source for the within-source OOF tables, by
    family for the held-out units (a family name is a member's)."""
    has_ties = {str(s): bool(v) for s, v in battles.groupby("source")["source_has_ties"].any().items()}
    has_ties.update({str(f): bool(v) for f, v in battles.groupby(families)["source_has_ties"].any().items()})
    return has_ties


def _seed_cache(battles: pd.DataFrame, enabled: bool) -> Callable[[int], FoldFeatureCache | None]:
    """Fold seed -> the fold-feature cache its tasks share (None when disabled); only one seed's cache is
    held: asking for the next seed drops the previous one (a task still queued keeps its own)."""
    caches: dict[int, FoldFeatureCache] = {}

    def cache_of(k: int) -> FoldFeatureCache | None:
        if not enabled:
            return None
        if k not in caches:
            caches.clear()
            caches[k] = FoldFeatureCache(battles)
        return caches[k]

    return cache_of


def _gather(tasks: list[tuple[str, int]], done, has_ties: dict[str, bool], on_progress) -> dict:
    """The tasks' scores as option -> source -> one score per seed, and the first seed's reliability;
    ``on_progress`` sees the results after each task (a partial report)."""
    results: dict[str, Any] = {"loso": {}, "oof": {}, "reliability": {}, "has_ties": has_ties}
    for (option, k), out in zip(tasks, done):
        for part in ("loso", "oof"):
            table = results[part].setdefault(option, {})
            for s, sc in out[part].items():
                table.setdefault(s, []).append(sc)
        if k == 0 and out["pooled"] is not None:
            yy, pp = out["pooled"]
            results["reliability"][option] = reliability(yy, pp)
        if on_progress is not None:
            on_progress(results)
    return results


def run_study(config: LosoConfig, command: str = "python -m pipelines.loso") -> tuple[dict, dict[str, Path]]:
    """The whole study over the shared data folder (``config.data``, combined on the fly) or one train.csv-schema
    file with a source column (``config.combined``): features, :func:`run_loso`, a report in ``config.out`` after
    every finished task (so a cut-short run still has one) and at the end. Returns the summary and the paths."""
    start = time.time()
    out, combined, groups = config.out, config.combined, config.feature_groups()
    options, settings = config.option_list(), config.stacker_settings()
    if config.data is not None:
        combined = out / "_combined.csv"
        out.mkdir(parents=True, exist_ok=True)
        combined_shared_data(config.data).to_csv(combined, index=False)
    if combined is None:
        raise ValueError("give the shared data folder or a combined train file")
    battles = mark_sources_with_ties(load_training_sources(combined))
    if config.data is not None:
        combined.unlink()
    X = FeatureExtractor(groups, n_jobs=config.n_jobs, cache_dir=config.cache_dir, progress=False).transform(battles)
    transformers, battles = build_fold_features(config.feature_config(), battles, config.cache_dir)
    meta = {
        "rows": int(len(battles)),
        "sources": battles.groupby("source").size().to_dict(),
        "has_ties": {str(k): bool(v) for k, v in battles.groupby("source")["source_has_ties"].first().items()},
        "families": family_members(battles["source"].to_numpy()),  # what each held-out unit holds
        "fold_seeds": config.fold_seeds,
        "feature_groups": list(groups),
        "fold_features": [fold_feature_name(t) for t in transformers],
        "settings": settings,
        "options": options,
        "command": command,
    }

    def progress(partial: dict) -> None:
        write_outputs(partial, summarize_results(partial), {**meta, "wall_s": time.time() - start}, out)

    results = run_loso(
        battles,
        X,
        options,
        config.fold_seeds,
        config.holdout_list(),
        config.folds,
        config.oof_option_list(),
        settings,
        config.jobs,
        progress,
        transformers,
    )
    summary = summarize_results(results)
    meta["wall_s"] = time.time() - start
    return summary, write_outputs(results, summary, meta, out)
