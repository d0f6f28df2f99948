"""Stackers that learn from sources with and without ties without unlearning ties.

Why: a source with no tie labels (hh-rlhf, LLMBar, ...) says nothing about how often people call
a tie, yet a plain multiclass loss reads every one of its rows as "not a tie" and pulls P(tie)
down for everyone. The options differ only in what tie-less rows may teach. Each is one class
below, registered by name (:mod:`stacking.tie_registry`); a new option is one more class with
``@register``, anywhere. Its docstring is its description (``describe_options``).

Every booster is swap-augmented and swap-averaged, so p(A | A, B) == p(B | B, A).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from arena_schema import N_CLASSES, TIE
from stacking.config import STUDY_PRESET, StackerConfig
from stacking.lgbm import LGBMStacker
from stacking.tie_registry import AUTO, REGISTRY, check_choice, option_names, register

log = logging.getLogger(__name__)

MASK_LOGIT = -15.0
HAS_TIES_COLUMN = "pair_source_has_ties"
AUTO_WITH_TIELESS, AUTO_WITHOUT = STUDY_PRESET.option, "plain"  # what ``auto`` resolves to (benchmarks/results/loso)


def tie_handling(name: str) -> type[TieHandling]:
    """The registered class of option ``name`` (ValueError for an unknown one or ``auto``)."""
    if name not in REGISTRY:
        raise ValueError(f"tie handling must be one of {option_names()}, got {name!r}")
    cls: type[TieHandling] = REGISTRY[name]
    return cls


def resolve_tie_handling(requested: str, tieless: np.ndarray | None) -> str:
    """``auto`` -> ``masked_tie`` when any training row comes from a source without ties, else ``plain``
    (the same model then); any other option is returned as asked."""
    if requested != AUTO:
        check_choice(requested)
        return requested
    any_tieless = tieless is not None and bool(np.asarray(tieless, dtype=bool).any())
    return AUTO_WITH_TIELESS if any_tieless else AUTO_WITHOUT


def is_savable(name: str) -> bool:
    """Whether a model of option ``name`` (``auto`` resolves to savable ones) is one booster per fold."""
    return name == AUTO or tie_handling(name).savable


def describe_options() -> list[tuple[str, str]]:
    """(name, first docstring paragraph) per registered option: the list the docs show."""
    return [(name, " ".join((REGISTRY[name].__doc__ or "").split("\n\n")[0].split())) for name in option_names()]


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


# --------------------------------------------------------------------------- the options


class TieHandling:
    """One way to train on rows of sources without ties: the hooks :class:`TieAwareStacker` calls.

    The base trains one multiclass booster over the rows :meth:`training_rows` keeps, weighted by
    :meth:`sample_weight`, starting from :meth:`init_score`. A subclass overrides what it changes;
    fitted state lives on the instance (one per fit).
    """

    name: ClassVar[str] = ""
    savable: ClassVar[bool] = True  # one booster over the caller's columns: stacking.model can save it
    needs_source: ClassVar[bool] = False  # needs each row's source name, not only whether it has ties
    input_column: ClassVar[str | None] = None  # extra input: has_ties while training, 1 when predicting

    def __init__(self, tieless_weight: float = STUDY_PRESET.tieless_weight):
        self.tieless_weight = tieless_weight
        self.boosters_: list[LGBMStacker] = []

    def sample_weight(self, weight: np.ndarray, has_ties: np.ndarray) -> np.ndarray:
        return weight

    def training_rows(self, has_ties: np.ndarray) -> np.ndarray:
        return np.ones(len(has_ties), dtype=bool)

    def init_score(self, y: np.ndarray, source: np.ndarray, has_ties: np.ndarray) -> np.ndarray | None:
        """(n, 3) raw scores a row starts from (None: from zero)."""
        return None

    def fit_boosters(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        source: np.ndarray,
        has_ties: np.ndarray,
        weight: np.ndarray,
        groups: np.ndarray,
        seed: int,
        config: StackerConfig,
    ) -> list[LGBMStacker]:
        keep = self.training_rows(has_ties)
        init = self.init_score(y, source, has_ties)
        model = LGBMStacker(seed=seed, config=config).fit(
            X[keep], y[keep], groups[keep], sample_weight=weight[keep], init_score=None if init is None else init[keep]
        )
        return [model]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.boosters_[0].predict_proba(X)

    @classmethod
    def fit_fold(
        cls,
        X: pd.DataFrame,
        y: np.ndarray,
        source: np.ndarray,
        has_ties: np.ndarray,
        weight: np.ndarray | None,
        groups: np.ndarray | None,
        seed: int,
        config: StackerConfig | None,
        overrides: dict[str, Any],
    ) -> LGBMStacker | TieAwareStacker:
        """The fitted stacker of one cross-fitting fold (``stacking.cross_fit.fit_rows``)."""
        settings = replace(config or StackerConfig(), **overrides)
        return TieAwareStacker(cls.name, seed=seed, config=settings).fit(X, y, source, has_ties, weight, groups)


@register
class Plain(TieHandling):
    """One multiclass booster over all rows (the baseline)."""

    name = "plain"

    @classmethod
    def fit_fold(
        cls,
        X: pd.DataFrame,
        y: np.ndarray,
        source: np.ndarray,
        has_ties: np.ndarray,
        weight: np.ndarray | None,
        groups: np.ndarray | None,
        seed: int,
        config: StackerConfig | None,
        overrides: dict[str, Any],
    ) -> LGBMStacker | TieAwareStacker:
        """Exactly the single-source stacker."""
        return LGBMStacker(seed=seed, config=config, **overrides).fit(X, y, groups, sample_weight=weight)


@register
class DropTieless(TieHandling):
    """Tie-less sources are left out (the bar to beat)."""

    name = "drop_tieless"

    def training_rows(self, has_ties: np.ndarray) -> np.ndarray:
        return has_ties


@register
class Weighted(TieHandling):
    """Tie-less rows count ``tieless_weight`` (0.2)."""

    name = "weighted"

    def sample_weight(self, weight: np.ndarray, has_ties: np.ndarray) -> np.ndarray:
        return np.where(has_ties, weight, weight * self.tieless_weight)


@register
class HasTiesInput(TieHandling):
    """A ``pair_source_has_ties`` input, set to 1 when predicting."""

    name = "has_ties_input"
    savable = False
    input_column = HAS_TIES_COLUMN


@register
class MaskedTie(TieHandling):
    """A partial label in one booster: tie-less rows start with a tie logit of -15, so their loss is
    on P(A) / (P(A) + P(B)) only and their tie gradient is ~0."""

    name = "masked_tie"

    def tie_offset(self, y: np.ndarray, source: np.ndarray, has_ties: np.ndarray) -> np.ndarray:
        return np.where(has_ties, 0.0, MASK_LOGIT)

    def init_score(self, y: np.ndarray, source: np.ndarray, has_ties: np.ndarray) -> np.ndarray | None:
        init = np.zeros((len(y), N_CLASSES))
        init[:, TIE] = self.tie_offset(y, source, has_ties)
        return init


@register
class TieOffset(MaskedTie):
    """``masked_tie`` plus a per-source tie-rate offset for the tie-bearing sources (log-odds of the
    source's tie rate against the pooled one); predicted at the pooled rate."""

    name = "tie_offset"
    needs_source = True

    def tie_offset(self, y: np.ndarray, source: np.ndarray, has_ties: np.ndarray) -> np.ndarray:
        offset = super().tie_offset(y, source, has_ties)
        if not has_ties.any():
            return offset
        pooled = np.clip((y[has_ties] == TIE).mean(), 1e-3, 1 - 1e-3)
        self.pooled_tie_rate_ = float(pooled)
        self.source_offsets_: dict[str, float] = {}
        for s in np.unique(source[has_ties]):
            rows = source == s
            rate = np.clip((y[rows] == TIE).mean(), 1e-3, 1 - 1e-3)
            delta = np.log(rate / (1 - rate)) - np.log(pooled / (1 - pooled))
            offset[rows] = delta
            self.source_offsets_[str(s)] = float(delta)
        return offset


@register
class Hierarchical(TieHandling):
    """P(tie) from a binary booster on tie-bearing sources only, P(B | decided) from a binary booster
    on decided rows of all sources; P(A) = (1 - P(tie)) P(A | decided). Tie-less rows provably
    cannot change P(tie)."""

    name = "hierarchical"
    savable = False

    def fit_boosters(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        source: np.ndarray,
        has_ties: np.ndarray,
        weight: np.ndarray,
        groups: np.ndarray,
        seed: int,
        config: StackerConfig,
    ) -> list[LGBMStacker]:
        tie_rows, decided = has_ties, y != TIE
        tie_model = TieStacker(seed=seed, config=config).fit(
            X[tie_rows], (y[tie_rows] == TIE).astype(int), groups[tie_rows], sample_weight=weight[tie_rows]
        )
        decided_model = DecidedStacker(seed=seed, config=config).fit(
            X[decided], y[decided], groups[decided], sample_weight=weight[decided]
        )
        return [tie_model, decided_model]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        tie_model, decided_model = self.boosters_
        tie = tie_model.predict_proba(X)
        b_given_decided = decided_model.predict_proba(X)
        return np.column_stack([(1 - tie) * (1 - b_given_decided), (1 - tie) * b_given_decided, tie])


# --------------------------------------------------------------------------- the estimator


class TieAwareStacker(BaseEstimator):
    """Stacker over features of several sources; ``option`` names the tie handling (a registered class).

    ``fit(X, y, source, has_ties, weight=None, groups=None)``: ``source`` names each row's data set,
    ``has_ties`` says whether that set has any tie labels. ``predict_proba(X)`` -> (n, 3).
    Settings come from ``config`` (a :class:`StackerConfig`); the keywords override it
    (:attr:`resolved_config`). The keywords are kept as given, so ``sklearn.base.clone`` works.
    """

    handling_: TieHandling | None = None

    def __init__(
        self,
        option: str = "hierarchical",
        params: dict | None = None,
        num_boost_round: int = STUDY_PRESET.num_boost_round,
        early_stopping_rounds: int = STUDY_PRESET.early_stopping_rounds,
        tieless_weight: float = STUDY_PRESET.tieless_weight,
        seed: int = 0,
        config: StackerConfig | None = None,
    ):
        tie_handling(option)  # an unknown option fails here, not after feature extraction
        self.option = option
        self.params = params
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.tieless_weight = tieless_weight
        self.seed = seed
        self.config = config

    @property
    def resolved_config(self) -> StackerConfig:
        """The boosters' settings: ``config``, or without one the study's rounds (``STUDY_PRESET`` by default);
        ``params`` on top."""
        base = self.config or StackerConfig()
        if self.config is None:  # the study's settings; with a config its fields count unless overridden
            base = replace(base, num_boost_round=self.num_boost_round, early_stopping_rounds=self.early_stopping_rounds)
        return replace(base, params={**base.params, **(self.params or {})}, tie_handling=self.option)

    def _frame(self, X: pd.DataFrame, handling: TieHandling, has_ties_value: np.ndarray | float) -> pd.DataFrame:
        if handling.input_column is None:
            return X
        col = np.broadcast_to(np.asarray(has_ties_value, dtype=np.float32), (len(X),))
        return X.assign(**{handling.input_column: col})

    def fit(self, X: pd.DataFrame, y, source, has_ties, weight=None, groups=None) -> TieAwareStacker:
        y = np.asarray(y)
        source = np.asarray(source).astype(str)
        has_ties = np.asarray(has_ties, dtype=bool)
        weight = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        handling = tie_handling(self.option)(tieless_weight=self.tieless_weight)
        X = self._frame(X, handling, has_ties.astype(np.float32))
        weight = handling.sample_weight(weight, has_ties)
        handling.boosters_ = handling.fit_boosters(
            X, y, source, has_ties, weight, groups, self.seed, self.resolved_config
        )
        self.handling_ = handling
        return self

    def _fitted(self) -> TieHandling:
        if self.handling_ is None:
            raise RuntimeError(f"TieAwareStacker({self.option!r}) is not fitted")
        return self.handling_

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        handling = self._fitted()
        return handling.predict_proba(self._frame(X, handling, 1.0))

    # A savable option is one booster over the caller's columns: at prediction time an ordinary
    # LGBMStacker, so the saved model (stacking.model) needs only these.
    def fitted_booster(self):
        handling = self._fitted()
        if not handling.savable:
            raise NotImplementedError(
                f"tie handling {self.option!r} predicts with more than one booster over the"
                " caller's columns; save is not supported"
            )
        return handling.boosters_[0].fitted_booster()

    @property
    def columns_(self) -> list[str]:
        return self._fitted().boosters_[0].columns_

    @property
    def best_iteration_(self) -> int:
        return max(b.best_iteration_ for b in self._fitted().boosters_)
