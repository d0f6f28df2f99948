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
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from stacking.config import StackerConfig
from stacking.lgbm import LGBMStacker

log = logging.getLogger(__name__)

TIE = 2
MASK_LOGIT = -15.0
HAS_TIES_COLUMN = "pair_source_has_ties"
OPTIONS = ("plain", "drop_tieless", "weighted", "has_ties_input", "masked_tie", "tie_offset", "hierarchical")


def resolve_tie_handling(requested: str, tieless: np.ndarray | None) -> str:
    """``auto`` -> ``masked_tie`` when any training row comes from a source without ties, else ``plain``
    (the same model then); any other option is returned as asked."""
    if requested != "auto":
        if requested not in OPTIONS:
            raise ValueError(f"tie handling must be 'auto' or one of {OPTIONS}, got {requested!r}")
        return requested
    return "masked_tie" if tieless is not None and bool(np.asarray(tieless, dtype=bool).any()) else "plain"


class _BinaryStacker(LGBMStacker):
    """A binary LGBMStacker (``hierarchical``'s parts): same inner early stopping and swap averaging."""

    @property
    def lgb_params(self) -> dict:
        params = {k: v for k, v in super().lgb_params.items() if k != "num_class"}
        return {**params, "objective": "binary"}


class TieStacker(_BinaryStacker):
    """P(tie): a tie stays a tie when A and B are exchanged."""

    def swap_targets(self, y: np.ndarray) -> np.ndarray:
        return y

    def swap_init_score(self, init: np.ndarray) -> np.ndarray:
        return init

    def swap_prediction(self, proba: np.ndarray) -> np.ndarray:
        return proba


class DecidedStacker(_BinaryStacker):
    """P(B wins | decided): exchanging A and B turns it into 1 - p."""

    def swap_targets(self, y: np.ndarray) -> np.ndarray:
        return 1 - y

    def swap_init_score(self, init: np.ndarray) -> np.ndarray:
        return -init

    def swap_prediction(self, proba: np.ndarray) -> np.ndarray:
        return 1.0 - proba


class TieAwareStacker(BaseEstimator):
    """Stacker over features of several sources; ``option`` picks the tie handling (see module doc).

    ``fit(X, y, source, has_ties, weight=None, groups=None)``: ``source`` names each row's data set,
    ``has_ties`` says whether that set has any tie labels. ``predict_proba(X)`` -> (n, 3).
    Settings come from ``config`` (a :class:`StackerConfig`); the keywords override it
    (:attr:`resolved_config`). The keywords are kept as given, so ``sklearn.base.clone`` works.
    """

    model_: LGBMStacker | None = None

    def __init__(
        self,
        option: str = "hierarchical",
        params: dict | None = None,
        num_boost_round: int = 600,
        early_stopping_rounds: int = 50,
        tieless_weight: float = 0.2,
        seed: int = 0,
        config: StackerConfig | None = None,
    ):
        if option not in OPTIONS:
            raise ValueError(f"tie handling must be one of {OPTIONS}, got {option!r}")
        self.option = option
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.tieless_weight = tieless_weight
        self.seed = seed
        self.config = config

    @property
    def resolved_config(self) -> StackerConfig:
        """The boosters' settings: ``config``, or without one the study's rounds; ``params`` on top."""
        base = self.config or StackerConfig()
        if self.config is None:  # the study's settings; with a config its fields count unless overridden
            base = replace(base, num_boost_round=self.num_boost_round, early_stopping_rounds=self.early_stopping_rounds)
        tie_handling: Any = self.option  # one of OPTIONS, checked in __init__
        return replace(base, params={**base.params, **(self.params or {})}, tie_handling=tie_handling)

    def _frame(self, X: pd.DataFrame, has_ties_value: np.ndarray | float) -> pd.DataFrame:
        if self.option != "has_ties_input":
            return X
        col = np.broadcast_to(np.asarray(has_ties_value, dtype=np.float32), (len(X),))
        return X.assign(**{HAS_TIES_COLUMN: col})

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
        X = self._frame(X, has_ties.astype(np.float32))
        if self.option == "weighted":
            weight = np.where(has_ties, weight, weight * self.tieless_weight)
        config = self.resolved_config
        if self.option == "hierarchical":
            tie_rows, decided = has_ties, y != TIE
            self.tie_model_ = TieStacker(seed=self.seed, config=config).fit(
                X[tie_rows], (y[tie_rows] == TIE).astype(int), groups[tie_rows], sample_weight=weight[tie_rows]
            )
            self.decided_model_ = DecidedStacker(seed=self.seed, config=config).fit(
                X[decided], y[decided], groups[decided], sample_weight=weight[decided]
            )
            return self
        keep = has_ties if self.option == "drop_tieless" else np.ones(len(y), dtype=bool)
        init = self._tie_offsets(y, source, has_ties)[keep] if self.option in ("masked_tie", "tie_offset") else None
        self.model_ = LGBMStacker(seed=self.seed, config=config).fit(
            X[keep], y[keep], groups[keep], sample_weight=weight[keep], init_score=init
        )
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        X = self._frame(X, 1.0)
        if self.option == "hierarchical":
            tie = self.tie_model_.predict_proba(X)
            b_given_decided = self.decided_model_.predict_proba(X)
            return np.column_stack([(1 - tie) * (1 - b_given_decided), (1 - tie) * b_given_decided, tie])
        return self._single().predict_proba(X)

    # One booster over the caller's columns (every option but hierarchical and has_ties_input) is
    # an ordinary LGBMStacker at prediction time: the saved model (stacking.model) needs only these.
    def _single(self) -> LGBMStacker:
        if self.model_ is None:
            raise RuntimeError(f"TieAwareStacker({self.option!r}) is not fitted or has no single booster")
        return self.model_

    def fitted_booster(self):
        if self.option == "has_ties_input":
            raise NotImplementedError("has_ties_input predicts with an extra input column; save is not supported")
        return self._single().fitted_booster()

    @property
    def columns_(self) -> list[str]:
        return self._single().columns_

    @property
    def best_iteration_(self) -> int:
        if self.option == "hierarchical":
            return max(self.tie_model_.best_iteration_, self.decided_model_.best_iteration_)
        return self._single().best_iteration_
