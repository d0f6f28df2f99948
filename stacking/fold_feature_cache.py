"""Fold features fitted once per set of training rows, their columns kept, for experiments that refit the stacker
many times on the same folds (tune's trials, ablation's variants).

Why: a fold feature (TF-IDF, the embedding projection) reads no labels, so what it learns depends only on its
settings and its training rows. Every trial of a study and every ablation variant fits the same transformer on
the same fold rows and transforms the same rows again; with ``--tfidf`` that is most of the time. The cache keys
a fit by the transformer's class and ``get_params()`` and by the training rows themselves (a digest of their
positions, so the folds of another fold seed never collide with fold ``k`` of this one), and keeps the columns
of the row sets it is asked for (each fold's training and held-out rows): memory is rows x columns per fold and
fold feature, never one copy per trial. Results are bit-identical to refitting: the same fit on the same rows.

    cache = FoldFeatureCache(battles)
    fit_calibrated(X, y, folds, config, seed, fold_features=transformers, battles=battles, fold_cache=cache)

One process, one thread: the cache is a plain object with no locking, handed to the fits that share it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone


def feature_key(transformer: Any) -> str:
    """The transformer's class and its ``get_params(deep=False)``: equal keys, equal fits on equal rows."""
    cls = type(transformer)
    params = transformer.get_params(deep=False) if hasattr(transformer, "get_params") else {}
    return f"{cls.__module__}.{cls.__qualname__}{sorted(params.items())!r}"


def rows_key(rows: np.ndarray) -> str:
    """A digest of row positions (order kept: the transformed rows come back in this order)."""
    positions = np.ascontiguousarray(rows, dtype=np.int64)
    return f"{len(positions)}:{hashlib.blake2b(positions.tobytes(), digest_size=16).hexdigest()}"


class FoldFeatureCache:
    """Fitted fold features by (transformer settings, training rows) and their columns by (fit, rows) over one
    battles frame. ``n_fits`` and ``n_transforms`` count the real work done (for reports and tests)."""

    def __init__(self, battles: pd.DataFrame) -> None:
        self.battles = battles
        self._fitted: dict[tuple[str, str], Any] = {}
        self._owned: dict[int, tuple[Any, tuple[str, str]]] = {}  # id of a fit the cache made -> (the fit, its key)
        self._columns: dict[tuple[tuple[str, str], str], pd.DataFrame] = {}
        self.n_fits = 0
        self.n_transforms = 0

    def fit(self, transformer: Any, rows: np.ndarray) -> Any:
        """A clone of ``transformer`` fitted on ``battles.iloc[rows]``, fitted on the first request only."""
        key = (feature_key(transformer), rows_key(rows))
        fitted = self._fitted.get(key)
        if fitted is None:
            fitted = clone(transformer).fit(self.battles.iloc[rows])
            self._fitted[key] = fitted
            self._owned[id(fitted)] = (fitted, key)
            self.n_fits += 1
        return fitted

    def transform(self, fitted: Any, rows: np.ndarray) -> pd.DataFrame:
        """``fitted.transform(battles.iloc[rows])``, kept when the cache fitted ``fitted`` (not to be mutated)."""
        owned = self._owned.get(id(fitted))
        if owned is None or owned[0] is not fitted:  # not a fit of this cache: no key to keep its columns under
            self.n_transforms += 1
            return fitted.transform(self.battles.iloc[rows])
        slot = (owned[1], rows_key(rows))
        columns = self._columns.get(slot)
        if columns is None:
            columns = fitted.transform(self.battles.iloc[rows])
            self._columns[slot] = columns
            self.n_transforms += 1
        return columns

    def nbytes(self) -> int:
        """Bytes held by the kept columns (the fitted transformers' own arrays are not counted)."""
        return int(sum(frame.memory_usage(index=True, deep=False).sum() for frame in self._columns.values()))
