"""Stackers that learn from sources with and without ties without unlearning ties.

Why: a source with no tie labels (hh-rlhf, LLMBar, ...) says nothing about how often people call
a tie, yet a plain multiclass loss reads every one of its rows as "not a tie" and pulls P(tie)
down for everyone. The options here differ only in what tie-less rows may teach:

- ``plain``: one multiclass booster over all rows (the baseline).
- ``drop_tieless``: tie-less sources are left out (the bar to beat).
- ``weighted``: tie-less rows count ``tieless_weight`` (0.2).
- ``has_ties_input``: a ``pair_source_has_ties`` input, set to 1 when predicting.
- ``masked_tie``: a partial label in one booster: tie-less rows start with a tie logit of -15,
  so their loss is on P(A) / (P(A) + P(B)) only and their tie gradient is ~0.
- ``tie_offset``: ``masked_tie`` plus a per-source tie-rate offset for the tie-bearing sources
  (log-odds of the source's tie rate against the pooled one); predicted at the pooled rate.
- ``hierarchical``: P(tie) from a binary booster on tie-bearing sources only, P(B | decided)
  from a binary booster on decided rows of all sources; P(A) = (1 - P(tie)) P(A | decided).
  Tie-less rows provably cannot change P(tie).

Every booster is swap-augmented and swap-averaged, so p(A | A, B) == p(B | B, A).
"""

from __future__ import annotations

import logging

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from arena_schema import check_swappable, swap_feature_matrix, swap_labels, swap_proba
from stacking.lgbm import DEFAULT_PARAMS

log = logging.getLogger(__name__)

TIE = 2
MASK_LOGIT = -15.0
HAS_TIES_COLUMN = "pair_source_has_ties"
OPTIONS = ("plain", "drop_tieless", "weighted", "has_ties_input", "masked_tie", "tie_offset", "hierarchical")


class _SwapBooster:
    """One LightGBM booster, swap-augmented; ``kind`` is multiclass, tie (binary) or decided (binary).

    Same early-stopping rule as ``stacking.lgbm.LGBMStacker`` (an inner grouped split of the
    training rows), plus sample weights and init scores that LGBMStacker does not take yet.
    """

    def __init__(self, kind: str, params: dict, num_boost_round: int, early_stopping_rounds: int, seed: int):
        self.kind = kind
        base = {**DEFAULT_PARAMS, **params, "seed": seed}
        if kind != "multiclass":
            base = {k: v for k, v in base.items() if k != "num_class"}
            base["objective"] = "binary"
        self.params = base
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    def _swap_y(self, y: np.ndarray) -> np.ndarray:
        if self.kind == "multiclass":
            return swap_labels(y)
        return y if self.kind == "tie" else 1 - y

    def _dataset(self, X, y, w, init, reference=None) -> lgb.Dataset:
        Xa = np.vstack([X, swap_feature_matrix(X, self.columns_)])
        init_a = None if init is None else np.concatenate([init, init])  # tie offsets survive a swap
        return lgb.Dataset(
            Xa,
            np.concatenate([y, self._swap_y(y)]),
            weight=np.concatenate([w, w]),
            init_score=init_a,
            feature_name=self.columns_,
            reference=reference,
            free_raw_data=True,
        )

    def fit(self, X: np.ndarray, columns: list[str], y, weight, groups, init_score=None, valid_fraction=0.15):
        self.columns_ = list(columns)
        check_swappable(self.columns_)
        split = GroupShuffleSplit(n_splits=1, test_size=valid_fraction, random_state=self.seed)
        fit_idx, stop_idx = next(split.split(X, y, groups))
        init = (lambda idx: None) if init_score is None else (lambda idx: init_score[idx])
        train = self._dataset(X[fit_idx], y[fit_idx], weight[fit_idx], init(fit_idx))
        stop = self._dataset(X[stop_idx], y[stop_idx], weight[stop_idx], init(stop_idx), reference=train)
        self.booster_ = lgb.train(
            self.params,
            train,
            num_boost_round=self.num_boost_round,
            valid_sets=[stop],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Multiclass: 3 swap-averaged probabilities; tie: P(tie); decided: P(B | decided)."""
        it = self.booster_.best_iteration or None
        direct = self.booster_.predict(X, num_iteration=it)
        swapped = self.booster_.predict(swap_feature_matrix(X, self.columns_), num_iteration=it)
        if self.kind == "multiclass":
            return (direct + swap_proba(swapped)) / 2.0
        if self.kind == "tie":
            return (direct + swapped) / 2.0
        return (direct + 1.0 - swapped) / 2.0


class TieAwareStacker:
    """Stacker over features of several sources; ``option`` picks the tie handling (see module doc).

    ``fit(X, y, source, has_ties, weight=None, groups=None)``: ``source`` names each row's data set,
    ``has_ties`` says whether that set has any tie labels. ``predict_proba(X)`` -> (n, 3).
    """

    def __init__(
        self,
        option: str = "hierarchical",
        params: dict | None = None,
        num_boost_round: int = 600,
        early_stopping_rounds: int = 50,
        tieless_weight: float = 0.2,
        seed: int = 0,
    ):
        if option not in OPTIONS:
            raise ValueError(f"tie handling must be one of {OPTIONS}, got {option!r}")
        self.option = option
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.tieless_weight = tieless_weight
        self.seed = seed

    def _booster(self, kind: str) -> _SwapBooster:
        return _SwapBooster(kind, self.params, self.num_boost_round, self.early_stopping_rounds, self.seed)

    def _matrix(self, X: pd.DataFrame, has_ties_value: np.ndarray | float | None = None) -> tuple[np.ndarray, list]:
        columns = list(X.columns)
        values = X.to_numpy(dtype=np.float32)
        if self.option == "has_ties_input":
            col = np.broadcast_to(np.asarray(has_ties_value, dtype=np.float32), (len(X),))
            values = np.column_stack([values, col])
            columns = [*columns, HAS_TIES_COLUMN]
        return values, columns

    def _tie_offsets(self, y: np.ndarray, source: np.ndarray, has_ties: np.ndarray) -> np.ndarray:
        """Tie-logit init score per row: MASK_LOGIT for tie-less sources; for ``tie_offset`` also the
        source's tie log-odds minus the pooled tie log-odds of the tie-bearing sources."""
        offset = np.where(has_ties, 0.0, MASK_LOGIT)
        if self.option == "tie_offset" and has_ties.any():
            pooled = np.clip((y[has_ties] == TIE).mean(), 1e-3, 1 - 1e-3)
            self.pooled_tie_rate_ = float(pooled)
            self.source_offsets_ = {}
            for s in np.unique(source[has_ties]):
                rows = source == s
                rate = np.clip((y[rows] == TIE).mean(), 1e-3, 1 - 1e-3)
                delta = np.log(rate / (1 - rate)) - np.log(pooled / (1 - pooled))
                offset[rows] = delta
                self.source_offsets_[str(s)] = float(delta)
        init = np.zeros((len(y), 3))
        init[:, TIE] = offset
        return init

    def fit(self, X: pd.DataFrame, y, source, has_ties, weight=None, groups=None) -> TieAwareStacker:
        y = np.asarray(y)
        source = np.asarray(source).astype(str)
        has_ties = np.asarray(has_ties, dtype=bool)
        weight = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        values, columns = self._matrix(X, has_ties.astype(np.float32))
        if self.option == "weighted":
            weight = np.where(has_ties, weight, weight * self.tieless_weight)
        if self.option == "hierarchical":
            tie_rows = has_ties
            self.tie_model_ = self._booster("tie").fit(
                values[tie_rows], columns, (y[tie_rows] == TIE).astype(int), weight[tie_rows], groups[tie_rows]
            )
            decided = y != TIE
            self.decided_model_ = self._booster("decided").fit(
                values[decided], columns, y[decided], weight[decided], groups[decided]
            )
            return self
        keep = has_ties if self.option == "drop_tieless" else np.ones(len(y), dtype=bool)
        init = None
        if self.option in ("masked_tie", "tie_offset"):
            init = self._tie_offsets(y, source, has_ties)[keep]
        self.model_ = self._booster("multiclass").fit(
            values[keep], columns, y[keep], weight[keep], groups[keep], init_score=init
        )
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        values, _ = self._matrix(X, 1.0)
        if self.option == "hierarchical":
            tie = self.tie_model_.predict(values)
            b_given_decided = self.decided_model_.predict(values)
            return np.column_stack([(1 - tie) * (1 - b_given_decided), (1 - tie) * b_given_decided, tie])
        return self.model_.predict(values)
