"""The inputs a run's model is fitted on, for the experiments (tune, ablation) to evaluate that same model.

Why: an experiment that builds its own inputs drifts from ``full_run``: it may drop a flag (``--tfidf``,
``--embedder``) or a source's weight without a word. Here the run's estimator (``estimator_of``) builds
them (:meth:`ArenaPreferenceModel.training_inputs`), so handcrafted groups, probability sources, training
sources and weights, tie handling and the fold features (fitted inside each training fold) are exactly the
fit's. The stacker fit itself is :func:`stacking.cross_fit.fit_calibrated` with the arguments the run's own
builder makes (:meth:`pipelines.stages.stacker_inputs.StackerInputs.fit_kwargs`).

    model = model_inputs(config)
    fit = model.fit(config.stacker, config.seed)                  # the run's features-only stacker, OOF
    fit = model.fit(stacker, seed, columns=[...], fold_features=model.fold_features[:1], folds=other_folds)
    model = model.with_fold_cache()  # many fits on the same folds: each fold feature fitted once per fold

New-source calibration does not enter these figures: it scores test rows unlike every training source, while
the experiments score out-of-fold rows of the training sources, which the in-source calibrator is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from sklearn.base import clone

from pipelines.config.run_config import RunConfig
from pipelines.data.run_sources import load_run_train
from pipelines.data.training_sets import TrainingSourcesConfig
from pipelines.model.run import estimator_of
from pipelines.runtime.errors import UsageError
from pipelines.runtime.stage_timer import StageTimer
from pipelines.stages.fold_feature_setup import fold_feature_name
from pipelines.stages.stacker_inputs import StackerInputs
from stacking.config import StackerConfig
from stacking.cross_fit import CalibratedFit, FoldFeature, fit_calibrated
from stacking.fold_feature_cache import FoldFeatureCache
from stacking.transformer_state import transformer_spec


@dataclass
class ModelInputs:
    """A run's training inputs and its unfitted fold features; :meth:`fit` is the run's stacker fit. With a
    ``fold_cache`` (:meth:`with_fold_cache`) every fit shares each fold feature's fit and columns per fold."""

    inputs: StackerInputs
    fold_features: list[Any]
    fold_cache: FoldFeatureCache | None = None

    def with_fold_cache(self) -> ModelInputs:
        """These inputs with a fresh :class:`FoldFeatureCache` over the training battles (for tune's trials and
        ablation's variants, which fit the same label-free fold features on the same folds again and again)."""
        return replace(self, fold_cache=FoldFeatureCache(self.inputs.train))

    def fit_kwargs(self, fold_features: Sequence[FoldFeature] | None = None) -> dict[str, Any]:
        """What ``fit_calibrated`` gets besides X, y, folds, config and seed: groups, the training sources'
        weights and tie flags, and the fold features with the battles they read (default: all of them)."""
        features = self.fold_features if fold_features is None else fold_features
        return self.inputs.fit_kwargs(features, self.fold_cache)  # the run's own builder: nothing drifts

    def fit(
        self,
        stacker: StackerConfig,
        seed: int,
        *,
        columns: Sequence[str] | None = None,
        fold_features: Sequence[FoldFeature] | None = None,
        folds: np.ndarray | None = None,
        **kwargs: Any,
    ) -> CalibratedFit:
        """Cross-fitted, calibrated stacker over ``columns`` of X (default all) plus ``fold_features`` (default
        all), on ``folds`` (default the run's)."""
        i = self.inputs
        X = i.X if columns is None else i.X[list(columns)]
        return fit_calibrated(
            X, i.y, i.folds if folds is None else folds, stacker, seed, **self.fit_kwargs(fold_features), **kwargs
        )

    def fold_feature_names(self) -> list[str]:
        """One name per fold feature (``tfidf``, ``embedding``, or the class name), for reports and groups."""
        return [fold_feature_name(t) for t in self.fold_features]

    def fold_feature_columns(self) -> dict[str, list[str]]:
        """{fold feature name: the columns it adds}, from a fit on all training rows (e.g. TF-IDF's SVD keeps fewer
        components on few rows, so a small fit could name fewer columns than a fold's fit)."""
        battles = self.inputs.train
        return {
            name: list(clone(t).fit(battles).transform(battles.iloc[:1]).columns)
            for name, t in zip(self.fold_feature_names(), self.fold_features)
        }

    def describe(self) -> list[dict]:
        """The fold features as specs (class and parameters): what a report or a study key records."""
        return [transformer_spec(t) for t in self.fold_features]


def model_inputs(config: RunConfig, timer: StageTimer | None = None) -> ModelInputs:
    """The inputs ``full_run`` with ``config`` fits on (train file, extra training sets, probability sources,
    groups, fold features), folds saved to ``config.out / "folds.csv"`` as the run saves them."""
    timer = timer or StageTimer()
    model = estimator_of(config)
    with timer.stage("load"):
        train, _ = load_run_train(config.train_path, config.sources)
    inputs = model.training_inputs(train, folds_path=config.out / "folds.csv", timer=timer)
    return ModelInputs(inputs, model.all_fold_features())


def require_extras_loaded(inputs: Any, sources: TrainingSourcesConfig) -> None:
    """Stop when extra training sets were asked for (``sources.extra_train``) but the inputs hold only the
    primary rows (the run's ``load_run_train`` loads extras with ``load_training_sources``): silently
    ignoring a training set would report a model that is not the one asked for. Called by the experiments (tune,
    ablation), where those inputs come from."""
    if sources.extra_train and "is_primary" not in inputs.train:
        raise UsageError("extra_train: these inputs were prepared without the extra training sets")
