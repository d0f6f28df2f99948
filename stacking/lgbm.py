"""LightGBM multiclass stacker: swap-augmented training, swap-averaged prediction.

Early stopping never looks at the fold being predicted: each fit carves an inner,
prompt-grouped early-stopping split out of its own training rows, so out-of-fold
probabilities are honest estimates of unseen-data performance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupShuffleSplit

from arena_schema import N_CLASSES, check_swappable, swap_feature_matrix, swap_labels, swap_proba
from stacking.config import StackerConfig

log = logging.getLogger(__name__)

# LightGBM parameters not in StackerConfig; StackerConfig.params overrides them, num_threads is its own field
DEFAULT_PARAMS: dict = {
    "objective": "multiclass",
    "num_class": N_CLASSES,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}


class LGBMStacker(BaseEstimator):
    """One LightGBM booster over a feature frame whose columns follow the A/B convention.

    Settings come from a :class:`StackerConfig`; a keyword given here overrides that field
    (:attr:`resolved_config`). The keywords are kept as given, so ``sklearn.base.clone`` works.
    """

    booster_: lgb.Booster | None = None
    columns_: list[str] = []

    def __init__(
        self,
        params: dict | None = None,
        num_boost_round: int | None = None,
        early_stopping_rounds: int | None = None,
        inner_valid_fraction: float | None = None,
        swap_augment: bool | None = None,
        seed: int = 0,
        config: StackerConfig | None = None,
    ):
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.inner_valid_fraction = inner_valid_fraction
        self.swap_augment = swap_augment
        self.seed = seed
        self.config = config

    @property
    def resolved_config(self) -> StackerConfig:
        """``config`` (default: ``StackerConfig()``) with the keywords given here in place of its fields."""
        overrides: dict[str, Any] = {
            "params": self.params,
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
            "inner_valid_fraction": self.inner_valid_fraction,
            "swap_augment": self.swap_augment,
        }
        return replace(self.config or StackerConfig(), **{k: v for k, v in overrides.items() if v is not None})

    @property
    def lgb_params(self) -> dict:
        """LightGBM parameters: defaults, the config's thread count, then the config's overrides."""
        config = self.resolved_config
        return {**DEFAULT_PARAMS, "num_threads": config.num_threads, **config.params}

    # How a target, a raw init score and a prediction change when A and B are exchanged; the
    # binary boosters of stacking.tie_handling override these three.
    def swap_targets(self, y: np.ndarray) -> np.ndarray:
        return swap_labels(y)

    def swap_init_score(self, init: np.ndarray) -> np.ndarray:
        return swap_proba(init)

    def swap_prediction(self, proba: np.ndarray) -> np.ndarray:
        return swap_proba(proba)

    def _augment(
        self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Rows and their A/B-swapped copies (with the same weights), when swap-augmenting."""
        if not self.resolved_config.swap_augment:
            return X, y, w
        w = None if w is None else np.concatenate([w, w])
        return np.vstack([X, swap_feature_matrix(X, self.columns_)]), np.concatenate([y, self.swap_targets(y)]), w

    def _dataset(
        self,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        init: np.ndarray | None,
        reference: lgb.Dataset | None = None,
    ) -> lgb.Dataset:
        """The augmented rows; a swapped copy starts from the swapped init score."""
        X, y, w = self._augment(X, y, w)
        if init is not None and self.resolved_config.swap_augment:
            init = np.concatenate([init, self.swap_init_score(init)])
        if reference is None:
            return lgb.Dataset(X, y, weight=w, init_score=init, feature_name=self.columns_, free_raw_data=True)
        return lgb.Dataset(X, y, weight=w, init_score=init, reference=reference)

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray | None = None,
        callbacks: list | None = None,
        sample_weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
    ) -> LGBMStacker:
        """Train with early stopping on an inner grouped split of (X, y) only (weighted like the fit rows).

        ``init_score`` ((n, 3) raw scores, added before boosting) lets a row start from a known
        offset, e.g. a tie logit of -15 for a source without ties; predictions never add it.
        """
        config = self.resolved_config
        self.columns_ = list(X.columns)
        check_swappable(self.columns_)
        values = X.to_numpy(dtype=np.float32)
        y = np.asarray(y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        splitter = GroupShuffleSplit(n_splits=1, test_size=config.inner_valid_fraction, random_state=self.seed)
        fit_idx, stop_idx = next(splitter.split(values, y, groups))
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        init = None if init_score is None else np.asarray(init_score, dtype=np.float64)
        if init is not None and len(init) != len(y):
            raise ValueError(f"init_score has {len(init)} rows, X has {len(y)}")
        params = {**self.lgb_params, "seed": self.seed}

        def part(idx: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
            return (None if w is None else w[idx]), (None if init is None else init[idx])

        train = self._dataset(values[fit_idx], y[fit_idx], *part(fit_idx))
        stop = self._dataset(values[stop_idx], y[stop_idx], *part(stop_idx), reference=train)
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=config.num_boost_round,
            valid_sets=[stop],
            valid_names=["early_stop"],
            callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False), *(callbacks or [])],
        )
        log.debug("stacker: best iteration %d", self.booster_.best_iteration)
        return self

    def fitted_booster(self) -> lgb.Booster:
        if self.booster_ is None:
            raise RuntimeError("LGBMStacker is not fitted")
        return self.booster_

    @property
    def best_iteration_(self) -> int:
        booster = self.fitted_booster()
        return int(booster.best_iteration or booster.current_iteration())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Mean of p(A, B) and the swap of p(B, A): exactly symmetric under A/B exchange."""
        return predict_swap_averaged(self.fitted_booster(), X, self.columns_, self.swap_prediction)


def predict_swap_averaged(
    booster: lgb.Booster,
    X: pd.DataFrame,
    columns: list[str],
    swap_prediction: Callable[[np.ndarray], np.ndarray] = swap_proba,
) -> np.ndarray:
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(f"feature frame lacks column(s) the stacker was trained on: {missing[:10]}")
    values = X[columns].to_numpy(dtype=np.float32)
    iteration = booster.best_iteration or None
    direct = np.asarray(booster.predict(values, num_iteration=iteration))
    swapped = np.asarray(booster.predict(swap_feature_matrix(values, columns), num_iteration=iteration))
    return (direct + swap_prediction(swapped)) / 2.0
