"""Adversarial validation: can a classifier tell the training rows from the rows to be scored?

Why: which calibrator fits the test rows depends on whether they come from the training sources
(Kaggle's own split: the in-source calibrator) or from somewhere new (the new-source one). If a
classifier on the stacker's features separates the two sets, the test set is a new source. The
score is the out-of-fold ROC AUC of that classifier (grouped folds, so a prompt's rows never sit on
both sides of a split), with a Hanley & McNeil (1982) 95% interval: near 0.5 means "looks like the
training data". The decision threshold was chosen on the training sources by
``benchmarks/new_source_calibration.py`` (each source held out against the rest as positives,
random same-source splits as negatives).

The same battle (or prompt) on both sides is one group (:func:`linked_groups`): split apart, the
classifier learns each held-out row from its twin of the other label and scores it the wrong way round,
so training rows scored against themselves gave an AUC of 0.02-0.1 instead of 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

AUC_THRESHOLD = 0.70  # from the study: between same-source splits and held-out sources (docs/new_source_calibration.md)
MAX_ROWS_PER_SIDE = 5_000  # each side is subsampled to this: the AUC is as good, the cost bounded
MIN_SOURCE_ROWS = 200  # a training source with fewer reference rows is not compared on its own
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}
NUM_BOOST_ROUND = 150
PROMPT_PREFIX = "prompt_"  # the prompt's own feature columns (prompt_chars, ...): equal on every row of a prompt


def auc_interval(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """95% interval of an AUC from its Hanley-McNeil standard error."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / max(n_pos * n_neg, 1)
    half = 1.96 * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


@dataclass
class ShiftReport:
    """The detector's verdict: per training source the AUC of "scored rows vs that source's rows", the
    closest source (lowest AUC), the threshold, and whether the rows are a new source."""

    per_source: dict[str, dict]
    closest: str
    threshold: float
    new_source: bool

    @property
    def auc(self) -> float:
        return float(self.per_source[self.closest]["auc"])

    @property
    def interval(self) -> tuple[float, float]:
        low, high = self.per_source[self.closest]["interval_95"]
        return float(low), float(high)

    def to_dict(self) -> dict:
        low, high = self.interval
        verdict = "the rows look like a new source" if self.new_source else "the rows look like the training data"
        return {
            "auc": round(self.auc, 4),
            "interval_95": [round(low, 4), round(high, 4)],
            "closest_source": self.closest,
            "threshold": self.threshold,
            "per_source": self.per_source,
            "new_source": self.new_source,
            "why": (
                f"closest training source {self.closest!r}: AUC {self.auc:.3f} (95% interval {low:.3f}-{high:.3f}),"
                f" lower bound {'above' if self.new_source else 'not above'} the threshold {self.threshold:.2f}:"
                f" {verdict}"
            ),
        }


def separability(
    reference: pd.DataFrame,
    scored: pd.DataFrame,
    reference_groups: np.ndarray | None = None,
    scored_groups: np.ndarray | None = None,
    n_splits: int = 5,
    seed: int = 0,
    num_threads: int = 1,
) -> dict:
    """Out-of-fold AUC (and 95% interval) of a LightGBM classifier telling ``scored`` from ``reference``.

    ``*_groups``: a group per row (e.g. prompt / answer pair; default: one per row), kept on one side of
    every split: otherwise the classifier learns the prompts of one side (their prompt-length features)
    from rows of the same prompt and "separates" two halves of one source."""
    columns = [c for c in reference.columns if c in scored.columns]
    if not columns:
        raise ValueError("reference and scored rows share no feature column")
    rng = np.random.default_rng(seed)
    ref_idx, sco_idx = _sample(len(reference), rng), _sample(len(scored), rng)
    X = pd.concat([reference[columns].iloc[ref_idx], scored[columns].iloc[sco_idx]], ignore_index=True)
    label = np.r_[np.zeros(len(ref_idx), dtype=int), np.ones(len(sco_idx), dtype=int)]
    ref_g = np.arange(len(reference)) if reference_groups is None else np.asarray(reference_groups)
    sco_g = np.arange(len(scored)) if scored_groups is None else np.asarray(scored_groups)
    side_groups = np.r_[np.array([f"r{g}" for g in ref_g[ref_idx]]), np.array([f"s{g}" for g in sco_g[sco_idx]])]
    groups = linked_groups(X, side_groups)
    n_splits = min(n_splits, len(set(groups[len(ref_idx) :])), len(set(groups[: len(ref_idx)])))
    if n_splits < 2:
        raise ValueError(
            f"adversarial validation needs >= 2 unrelated groups of rows on each side, got {len(ref_idx)}"
            f" and {len(sco_idx)} rows in {len(set(groups))} group(s) of the same prompts"
        )
    oof = np.zeros(len(label))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    params = {**PARAMS, "seed": seed, "num_threads": num_threads}
    for train, held in splitter.split(X, label, groups):
        booster = lgb.train(params, lgb.Dataset(X.iloc[train], label[train]), NUM_BOOST_ROUND)
        oof[held] = booster.predict(X.iloc[held])
    auc = float(roc_auc_score(label, oof))
    low, high = auc_interval(auc, int(label.sum()), int(len(label) - label.sum()))
    return {"auc": round(auc, 4), "interval_95": [round(low, 4), round(high, 4)], "rows": [len(ref_idx), len(sco_idx)]}


def linked_groups(X: pd.DataFrame, groups: np.ndarray) -> np.ndarray:
    """``groups`` merged wherever rows share a prompt (equal ``prompt_*`` columns; without them, equal
    rows): a group per connected set, so a battle or prompt on both sides is held out as one.

    Why: the reference and the scored rows carry groups of their own numbering; the same prompt in both
    would otherwise be split across folds, and the classifier would score each held-out row by its twin
    of the other side. Merging unrelated prompts of equal lengths only makes folds coarser."""
    keys = [c for c in X.columns if str(c).startswith(PROMPT_PREFIX)] or list(X.columns)
    key_codes = pd.factorize(pd.util.hash_pandas_object(X[keys], index=False).to_numpy())[0]
    group_codes, group_names = pd.factorize(pd.Series(groups))
    n_groups, n_keys = len(group_names), int(key_codes.max()) + 1 if len(key_codes) else 0
    edges = coo_matrix(
        (np.ones(len(X)), (group_codes, n_groups + key_codes)), shape=(n_groups + n_keys, n_groups + n_keys)
    )
    _, component = connected_components(edges, directed=False)
    return component[group_codes]


def _sample(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, MAX_ROWS_PER_SIDE, replace=False)) if n > MAX_ROWS_PER_SIDE else np.arange(n)


class ShiftDetector:
    """``fit(reference, source, scored)``: rows to be scored are in-source when some training source
    (with at least ``min_source_rows`` reference rows) cannot be told apart from them.

    Per source, not against the pooled training rows: a test set drawn from one of several training
    sources is still easy to tell from their mix, yet it is in-source.
    """

    def __init__(
        self,
        threshold: float = AUC_THRESHOLD,
        n_splits: int = 5,
        min_source_rows: int = MIN_SOURCE_ROWS,
        seed: int = 0,
        num_threads: int = 1,
    ):
        self.threshold = threshold
        self.n_splits = n_splits
        self.min_source_rows = min_source_rows
        self.seed = seed
        self.num_threads = num_threads

    def fit(
        self,
        reference: pd.DataFrame,
        source: np.ndarray,
        scored: pd.DataFrame,
        reference_groups: np.ndarray | None = None,
        scored_groups: np.ndarray | None = None,
    ) -> ShiftDetector:
        source = np.asarray(source).astype(str)
        groups = np.arange(len(reference)) if reference_groups is None else np.asarray(reference_groups)
        names, counts = np.unique(source, return_counts=True)
        big = [str(n) for n, c in zip(names, counts, strict=True) if c >= self.min_source_rows]
        if not big:  # one small training set: compare against all of it
            big, source = ["all"], np.full(len(source), "all")
        per_source = {}
        for name in big:
            rows = source == name
            per_source[name] = separability(
                reference[rows].reset_index(drop=True),
                scored.reset_index(drop=True),
                groups[rows],
                scored_groups,
                self.n_splits,
                self.seed,
                self.num_threads,
            )
        closest = min(per_source, key=lambda n: per_source[n]["auc"])
        new = per_source[closest]["interval_95"][0] > self.threshold
        self.report_ = ShiftReport(per_source, closest, self.threshold, bool(new))
        return self


REFERENCE_ROWS_PER_SOURCE = 2_000  # what a bundle keeps of each training source to compare new rows with


@dataclass
class ShiftReference:
    """A per-source sample of the training rows' features: what new rows are compared with, at fit time
    and later from a bundle (the same sample both times, so the decision is the same)."""

    features: pd.DataFrame
    source: np.ndarray
    groups: np.ndarray

    @classmethod
    def sample(
        cls,
        X: pd.DataFrame,
        source: np.ndarray | None,
        groups: np.ndarray,
        seed: int = 0,
        per_source: int = REFERENCE_ROWS_PER_SOURCE,
    ) -> ShiftReference:
        source = np.full(len(X), "train") if source is None else np.asarray(source).astype(str)
        rng = np.random.default_rng(seed)
        keep = []
        for name in sorted(set(source)):
            rows = np.flatnonzero(source == name)
            keep.append(np.sort(rng.choice(rows, per_source, replace=False)) if len(rows) > per_source else rows)
        index = np.concatenate(keep)
        return cls(X.iloc[index].reset_index(drop=True).astype(np.float32), source[index], np.asarray(groups)[index])

    def detect(
        self, scored: pd.DataFrame, scored_groups: np.ndarray | None = None, seed: int = 0, num_threads: int = 1
    ) -> ShiftReport:
        """The detector's report for ``scored`` (``scored_groups``: e.g. prompt groups of its rows)."""
        missing = [c for c in self.features.columns if c not in scored.columns]
        if missing:
            raise ValueError(f"rows to score lack {len(missing)} reference feature column(s), e.g. {missing[:3]}")
        detector = ShiftDetector(seed=seed, num_threads=num_threads)
        columns = list(self.features.columns)
        return detector.fit(self.features, self.source, scored[columns], self.groups, scored_groups).report_

    def save(self, path: Path) -> Path:
        np.savez_compressed(
            path,
            values=self.features.to_numpy(dtype=np.float32),
            columns=np.array(self.features.columns, dtype=str),
            source=self.source.astype(str),
            groups=np.asarray(self.groups, dtype=np.int64),
        )
        return path

    @classmethod
    def load(cls, path: Path, known_columns: Iterable[str] | None = None) -> ShiftReference:
        """The saved sample; ``known_columns``: the model's feature columns, which every reference column
        must be one of. A bad file is refused (ValueError naming it and the column), never detected with:
        LightGBM takes NaN as "missing" and a column the scored rows lack fails only later."""
        with np.load(path, allow_pickle=False) as npz:
            values, columns = npz["values"], [str(c) for c in npz["columns"]]
            source, groups = npz["source"].astype(str), npz["groups"]
        if values.shape != (len(source), len(columns)) or len(groups) != len(source):
            raise ValueError(f"{path}: shapes disagree ({values.shape}, {len(columns)} columns, {len(source)} rows)")
        _check_columns(path, columns, known_columns)
        _check_values(path, values, columns)
        return cls(pd.DataFrame(values, columns=columns), source, groups)


def _check_columns(path: Path, columns: list[str], known: Iterable[str] | None) -> None:
    repeated = [c for c in dict.fromkeys(columns) if columns.count(c) > 1]
    if repeated:
        raise ValueError(f"{path}: column {repeated[0]!r} appears {columns.count(repeated[0])} times")
    if known is not None:
        allowed = set(known)
        unknown = [c for c in columns if c not in allowed]
        if unknown:
            raise ValueError(
                f"{path}: column {unknown[0]!r} is not one of the model's feature columns"
                f" ({len(unknown)} unknown column(s))"
            )


def _check_values(path: Path, values: np.ndarray, columns: list[str]) -> None:
    if values.dtype.kind not in "fiu":
        raise ValueError(f"{path}: values of type {values.dtype}, expected numbers")
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(
            f"{path}: column {columns[col]!r}: {int(bad[:, col].sum())} value(s) NaN or infinite"
            f" (first in row {row}); the reference holds only finite feature values"
        )
