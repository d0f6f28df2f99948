"""LightGBM multiclass stacker: swap-augmented training, swap-averaged prediction.

Early stopping never looks at the fold being predicted: each fit carves an inner,
prompt-grouped early-stopping split out of its own training rows, so out-of-fold
probabilities are honest estimates of unseen-data performance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from arena_schema import check_swappable, swap_feature_matrix, swap_labels, swap_proba

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict = {
    "objective": "multiclass",
    "num_class": 3,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "verbose": -1,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
}


class LGBMStacker:
    """One LightGBM booster over a feature frame whose columns follow the A/B convention."""

    def __init__(
        self,
        params: dict | None = None,
        num_boost_round: int = 3000,
        early_stopping_rounds: int = 100,
        inner_valid_fraction: float = 0.15,
        swap_augment: bool = True,
        seed: int = 0,
    ):
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.inner_valid_fraction = inner_valid_fraction
        self.swap_augment = swap_augment
        self.seed = seed
        self.booster_: lgb.Booster | None = None
        self.columns_: list[str] | None = None

    def _augment(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.swap_augment:
            return X, y
        return np.vstack([X, swap_feature_matrix(X, self.columns_)]), np.concatenate([y, swap_labels(y)])

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None, callbacks: list | None = None
    ) -> LGBMStacker:
        """Train with early stopping on an inner grouped split of (X, y) only."""
        self.columns_ = list(X.columns)
        check_swappable(self.columns_)
        values = X.to_numpy(dtype=np.float32)
        y = np.asarray(y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        splitter = GroupShuffleSplit(n_splits=1, test_size=self.inner_valid_fraction, random_state=self.seed)
        fit_idx, stop_idx = next(splitter.split(values, y, groups))
        params = {**self.params, "seed": self.seed}
        train = lgb.Dataset(*self._augment(values[fit_idx], y[fit_idx]), feature_name=self.columns_, free_raw_data=True)
        stop = lgb.Dataset(*self._augment(values[stop_idx], y[stop_idx]), reference=train)
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=[stop],
            valid_names=["early_stop"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False), *(callbacks or [])],
        )
        log.debug("stacker: best iteration %d", self.booster_.best_iteration)
        return self

    @property
    def best_iteration_(self) -> int:
        return int(self.booster_.best_iteration or self.booster_.current_iteration())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Mean of p(A, B) and the swap of p(B, A): exactly symmetric under A/B exchange."""
        return predict_swap_averaged(self.booster_, X, self.columns_)


def predict_swap_averaged(booster: lgb.Booster, X: pd.DataFrame, columns: list[str]) -> np.ndarray:
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(f"feature frame lacks column(s) the stacker was trained on: {missing[:10]}")
    values = X[columns].to_numpy(dtype=np.float32)
    iteration = booster.best_iteration or None
    direct = booster.predict(values, num_iteration=iteration)
    swapped = booster.predict(swap_feature_matrix(values, columns), num_iteration=iteration)
    return (direct + swap_proba(swapped)) / 2.0


@dataclass
class CrossFitResult:
    """Out-of-fold probabilities for train, fold-mean probabilities for test, and the fold models."""

    oof: np.ndarray
    test: np.ndarray | None
    models: list[LGBMStacker]
    fold_ids: list[int]


def cross_fit(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray | None = None,
    X_test: pd.DataFrame | None = None,
    params: dict | None = None,
    seed: int = 0,
    swap_augment: bool = True,
    progress=None,
    **stacker_kwargs,
) -> CrossFitResult:
    """Fit one stacker per fold on the other folds; predict its fold (OOF) and the test rows."""
    y = np.asarray(y)
    folds = np.asarray(folds)
    oof = np.full((len(y), 3), np.nan)
    test = np.zeros((len(X_test), 3)) if X_test is not None else None
    models, fold_ids = [], []
    for k in sorted(np.unique(folds)):
        train_mask = folds != k
        model = LGBMStacker(params=params, seed=seed + int(k), swap_augment=swap_augment, **stacker_kwargs)
        model.fit(X[train_mask], y[train_mask], None if groups is None else np.asarray(groups)[train_mask])
        oof[~train_mask] = model.predict_proba(X[~train_mask])
        if X_test is not None:
            test += model.predict_proba(X_test)
        models.append(model)
        fold_ids.append(int(k))
        log.info("stacker fold %d: best iteration %d", k, model.best_iteration_)
        if progress is not None:
            progress.update(1)
    if test is not None:
        test /= len(models)
    return CrossFitResult(oof=oof, test=test, models=models, fold_ids=fold_ids)
