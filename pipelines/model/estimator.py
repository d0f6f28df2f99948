"""The whole stack as one scikit-learn-shaped estimator: ``fit`` on battles, ``predict_proba`` on any battles
frame, ``save``/``load`` as a verified bundle.

``fit`` fits the features-only stacker first (``fit_steps`` yields the model at once, so a run can write a
submission before any encoder starts), then the encoders in the same folds, then a stacker with their
probabilities, chosen only when its OOF log loss is better (the steps: :mod:`pipelines.model.fitting`). The
estimator never sees a test set: :func:`pipelines.model.scoring.score` scores one and returns what it decided
(the stacker or the class prior, the test calibration); the run's files and report are ``pipelines.model.run``'s,
the bundle's layout and checks ``pipelines.bundle.model_bundle``'s. The bundle always keeps the features-only
stacker, and the stacker with encoders plus the encoders' fold models whenever they finished (chosen or not), so
``predict_proba(..., stacker=...)`` can use either: ``"chosen"``, ``"features"`` or ``"full"``; ``None`` (default)
is what the run submitted (the class prior where its prior guard rejected the stacker, ``decisions_``).
A pickled fitted model carries and checks the identity its bundle would (:meth:`ArenaPreferenceModel.__setstate__`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

from arena_schema import CLASS_NAMES
from encoders.settings import EncoderConfig
from pipelines.bundle import model_bundle
from pipelines.config.run_config import SourceFiles
from pipelines.model import fitting, scoring
from pipelines.model.battles_input import as_battles, labels_of
from pipelines.model.model_features import fold_features_of
from pipelines.runtime.run_budget import NO_BUDGET, RunBudget
from pipelines.runtime.stage_timer import StageTimer
from pipelines.stages.stacker_inputs import StackerInputs
from stacking.config import StackerConfig

NESTED = "stacker"  # the parameter whose fields get_params/set_params reach as stacker__<field>


class ArenaPreferenceModel(ClassifierMixin, BaseEstimator):
    """P(A wins), P(B wins), P(tie) for battles; every fold, encoder and stacker of a run in one object.

    sklearn's shape: ``fit(X, y=None)``, ``predict_proba``, ``predict`` (class names) and
    ``score`` (ClassifierMixin's accuracy; the run reports log loss, the competition's metric). The stacker's
    settings are nested parameters (``set_params(stacker__num_boost_round=10)``, as a Pipeline's steps).

    Fitted attributes: ``classes_`` (``["a", "b", "tie"]``), ``feature_columns_`` (the chosen stacker's),
    ``encoder_names_`` (encoders the chosen stacker uses), ``folds_``, ``oof_proba_``, ``oof_log_loss_``,
    ``stackers_`` ({"features", "full"}: StackerModel; "full" whenever encoders finished, chosen or not),
    ``chosen_stacker_``, ``stacker_oof_log_loss_`` (per stacker key), ``encoder_models_`` (name:
    ``EncoderFoldModels``), ``fit_report_`` (the fit's record: ``pipelines.bundle.fit_record.FitRecord``),
    ``shift_reference_``; loaded from a bundle also ``test_choice_``
    (the test calibration the run's test set resolved to) and ``decisions_`` (what the run submitted:
    ``pipelines.bundle.decisions``).
    """

    def __init__(
        self,
        *,
        n_folds: int = 5,
        seed: int = 42,
        feature_groups: Sequence[str] | None = None,
        stacker: StackerConfig | None = None,
        encoders: Sequence[EncoderConfig] = (),
        fold_features: Sequence[Any] = (),
        # every fold-feature kind's settings (pipelines.stages.fold_feature_kinds.setting_names()), with the
        # defaults of their FeatureConfig fields; read by name, so only sklearn needs them spelled out here
        tfidf: bool = False,
        embedder: str | None = None,
        embedder_max_length: int = 256,
        extra_sources: Mapping[str, SourceFiles] | None = None,
        n_jobs: int | None = None,
        cache_dir: str | Path | None = None,
        work_dir: str | Path | None = None,
        progress: bool = False,
        test_calibration: str = "auto",
    ) -> None:
        self.n_folds = n_folds
        self.seed = seed
        self.feature_groups = feature_groups
        self.stacker = stacker
        self.encoders = encoders
        self.fold_features = fold_features
        self.tfidf = tfidf
        self.embedder = embedder
        self.embedder_max_length = embedder_max_length
        self.extra_sources = extra_sources
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.work_dir = work_dir
        self.progress = progress
        self.test_calibration = test_calibration

    # ----------------------------------------------------------------- parameters
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """sklearn's parameters; ``deep`` adds the stacker's settings as ``stacker__<field>``."""
        params = super().get_params(deep=False)
        config = StackerConfig() if self.stacker is None else self.stacker
        if deep and isinstance(config, StackerConfig):
            params.update({f"{NESTED}__{f.name}": getattr(config, f.name) for f in fields(StackerConfig)})
        return params

    def set_params(self, **params: Any) -> ArenaPreferenceModel:
        """sklearn's ``set_params``; ``stacker__<field>`` replaces that field of the stacker's settings (a new
        :class:`StackerConfig`, checked as any other: the one given at construction is never changed)."""
        nested = {k.partition("__")[2]: params.pop(k) for k in [k for k in params if k.startswith(NESTED + "__")]}
        super().set_params(**params)
        if nested:
            known = {f.name for f in fields(StackerConfig)}
            unknown = sorted(set(nested) - known)
            if unknown:
                raise ValueError(
                    f"{NESTED}__{unknown[0]}: StackerConfig has no such field (its fields: {sorted(known)})"
                )
            self.stacker = replace(self.stacker or StackerConfig(), **nested)
        return self

    @property
    def _groups(self) -> tuple[str, ...]:
        return model_bundle.feature_groups_of(self)

    def all_fold_features(self) -> list[Any]:
        """The user's fold transformers plus those ``tfidf`` / ``embedder`` ask for (unfitted)."""
        return fold_features_of(self)

    # ----------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y: Any = None) -> ArenaPreferenceModel:
        """Fit on the battles ``X``; labels from ``y`` (see :func:`labels_of`) or, without it, from ``X``
        (winner columns, or ``label`` for parsed battles). No test rows are seen here: score them with
        :meth:`predict_proba` or :func:`pipelines.model.scoring.score`. A run with a time budget calls
        :meth:`fit_steps` with it."""
        for _ in self.fit_steps(X, y):
            pass
        return self

    def fit_steps(
        self, X: pd.DataFrame, y: Any = None, *, budget: RunBudget = NO_BUDGET
    ) -> Iterator[ArenaPreferenceModel]:
        """:meth:`fit`, yielding the model each time it changes (the features-only stacker fitted; a stacker
        with encoders chosen, or kept unchosen). The model is usable at each step, so a run with a time budget
        can publish before any encoder starts; after the last step the fit is complete. ``budget`` (the run's,
        :class:`pipelines.runtime.run_budget.RunBudget`): encoder folds that would overrun its deadline, with the
        scoring of its test rows reserved, are not started; without one the fit is the same as ``fit``'s."""
        yield from fitting.fit_steps(self, X, y, budget)

    def training_inputs(
        self, X: pd.DataFrame, y: Any = None, *, folds_path: Path | None = None, timer: StageTimer | None = None
    ) -> StackerInputs:
        """What :meth:`fit` trains its stackers on: parsed battles (with the embedding columns the fold features
        read), labels, folds (saved to ``folds_path``), handcrafted and extra-source columns, sources and weights.
        Public so that the experiments (tune, ablation) evaluate exactly the model a run fits; with
        :meth:`all_fold_features` and ``StackerInputs.fit_kwargs`` it is every input ``fit_calibrated`` gets."""
        return fitting.training_inputs(self, X, y, folds_path=folds_path, timer=timer)

    # ----------------------------------------------------------------- predict
    def predict_proba(
        self,
        frame: pd.DataFrame,
        *,
        use_encoders: bool = True,
        sources: Mapping[str, pd.DataFrame | str | Path] | None = None,
        stacker: str | None = None,
        encoder_proba: Mapping[str, np.ndarray] | None = None,
        test_calibration: str | None = None,
    ) -> np.ndarray:
        """(n, 3) calibrated probabilities (A wins, B wins, tie) for any battles frame (what
        :func:`pipelines.model.scoring.score` returns; it also returns the decision behind them).

        ``stacker``: None (default) what the run submitted: the class prior on every row where its prior guard
        rejected the stacker (``decisions_``), else the chosen stacker; ``"chosen"`` the chosen stacker whatever
        the guard said; ``"features"`` or ``"full"`` (with encoders, kept whenever the encoders finished) that
        one. ``use_encoders=False``: the features-only stacker. ``sources``: the probabilities of extra sources the
        model was trained with (frame or file: id + 3 columns). ``encoder_proba``: {encoder: (n, 3) array in
        ``frame``'s row order} computed elsewhere (e.g. one process per GPU); those encoders' fold models are
        then not run here. ``test_calibration``: ``"in-source"``, ``"new-source"`` or ``"auto"`` (default: the
        model's ``test_calibration``), decided on all of ``frame``."""
        check_is_fitted(self, "stackers_")
        encoders = scoring.EncoderScoring(progress=self.progress, proba=dict(encoder_proba or {}))
        proba, _ = scoring.score(  # the one scoring function; the decision it returns is not kept
            self,
            frame,
            stacker=stacker,
            test_calibration=test_calibration,
            sources=sources,
            encoders=encoders,
            use_encoders=use_encoders,
        )
        assert proba is not None  # no deadline: nothing is skipped
        return proba

    def predict(self, X: pd.DataFrame, **kwargs: Any) -> np.ndarray:
        """The most probable class name per battle (``classes_``); ``kwargs`` as for :meth:`predict_proba`."""
        check_is_fitted(self, "stackers_")
        return np.asarray(self.classes_)[self.predict_proba(X, **kwargs).argmax(axis=1)]

    def score(self, X: pd.DataFrame, y: Any = None, sample_weight: Any = None) -> float:
        """ClassifierMixin's metric, accuracy, with labels as :meth:`fit` takes them (``y`` or ``X``'s own).
        Accuracy ignores how sure the model is; the runs judge it by log loss (``oof_log_loss_``)."""
        if y is None:
            battles, _ = as_battles(X, "X", labelled=True)
            labels = battles["label"].to_numpy()
        else:
            labels = labels_of(y, len(X))
        expected = np.asarray(CLASS_NAMES)[labels]
        return float(accuracy_score(expected, self.predict(X), sample_weight=sample_weight))

    # ----------------------------------------------------------------- save / load
    def save(self, directory: str | Path, *, decisions: dict | None = None, test_choice: dict | None = None) -> Path:
        """Write the bundle to ``directory`` (:mod:`pipelines.bundle.model_bundle`). ``decisions``: what the run
        decided and submitted (the prior guard's verdict), recorded so that scoring the bundle later repeats it, as
        this model does from now on (``decisions_``); None keeps the model's own (a loaded bundle's verdict
        survives a re-save). ``test_choice``: the test calibration the run's test set resolved to (the decision
        :func:`pipelines.model.scoring.score` returned), kept with the fit record (a loaded model's
        ``test_choice_``)."""
        check_is_fitted(self, "stackers_")
        return model_bundle.save_bundle(self, directory, decisions=decisions, test_choice=test_choice)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        encoder_base_paths: dict[str, str] | None = None,
        require_signature: bool = False,
    ) -> ArenaPreferenceModel:
        """A fitted model from a bundle; every file is verified first (``BundleError`` otherwise).
        ``encoder_base_paths``: {encoder: base model folder} where the recorded paths do not exist (Kaggle);
        ``require_signature``: refuse a bundle not signed under ``ARENA_PREF_BUNDLE_KEY`` (a plain sha256
        digest anyone can recompute; ``ARENA_PREF_REQUIRE_SIGNATURE=1`` asks the same of every load)."""
        return model_bundle.load_model(
            cls, directory, encoder_base_paths=encoder_base_paths, require_signature=require_signature
        )

    # ----------------------------------------------------------------- pickle
    def __getstate__(self) -> dict:
        """A fitted model's pickle carries what its bundle's checks compare (feature fingerprint, format and
        library versions), so that unpickling in a checkout whose feature code changed is refused as ``load``
        refuses the bundle, instead of predicting other numbers silently."""
        state = dict(super().__getstate__())
        if "stackers_" in state:
            state[model_bundle.PICKLED_IDENTITY] = model_bundle.pickle_identity(self)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        identity = state.pop(model_bundle.PICKLED_IDENTITY, None)
        super().__setstate__(state)
        if "stackers_" in state:
            model_bundle.check_pickle_identity(identity, self)
