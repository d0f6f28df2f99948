"""The whole stack as one scikit-learn-shaped estimator: parse, fold, featurise, fine-tune encoders,
stack, calibrate; ``predict_proba`` on any battles frame; ``save``/``load`` as a verified bundle.

``fit`` fits the features-only stacker first (``fit_steps`` yields the model at once, so a run can write a
submission before any encoder starts), then the encoders in the same folds, then a stacker with their
probabilities, which is chosen only when its OOF log loss is better. The estimator only fits and never sees
a test set: scoring one, the time budget, the run's files and report are ``pipelines.model.run.fit_predict``'s.
The bundle always keeps the features-only stacker, and the stacker with encoders plus the encoders' fold
models whenever they finished (chosen or not; the manifest records which is chosen), so
``predict_proba(..., stacker=...)`` can use either: ``"chosen"``, ``"features"`` or ``"full"``; ``None`` (default)
is what the run submitted (the class prior where its prior guard rejected the stacker, ``decisions_``).
A pickled fitted model carries and checks the identity its bundle would (:meth:`ArenaPreferenceModel.__setstate__`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

from arena_schema import CLASS_COLUMNS, CLASS_NAMES, N_CLASSES
from encoders.settings import EncoderConfig
from features.extractor import FeatureExtractor
from features.groups import DEFAULT_GROUPS, expand_groups
from pipelines.bundle.decisions import check_decisions, decisions_record, prior_in_place_of
from pipelines.bundle.identity import base_difference, base_identity, feature_difference, feature_fingerprint
from pipelines.bundle.store import (
    BUNDLE_FORMAT,
    BundleError,
    bundle_key,
    load_stacker,
    read_verified,
    replace_directory,
    write_manifest,
)
from pipelines.data.battles import TURN_COLUMNS, DataError, ParseReport, load_battles_frame
from pipelines.data.run_sources import with_source_columns
from pipelines.data.tables import read_proba_file
from pipelines.reports.metrics import nested_prior, summarize
from pipelines.runtime.errors import UserError
from pipelines.runtime.run_budget import NO_BUDGET, RunBudget
from pipelines.runtime.run_dir import remove_quietly, temp_path
from pipelines.runtime.stage_timer import StageTimer
from pipelines.stages.config import FeatureConfig
from pipelines.stages.fold_feature_setup import fold_transformers, prepare_battles
from pipelines.stages.new_source_stage import check_calibration, choose_calibration, fit_new_source, shift_reference
from pipelines.stages.preflight import check_savable
from pipelines.stages.run_plan import RunPlan
from pipelines.stages.stacker_inputs import SOURCE_COLUMNS, StackerInputs, build_inputs
from pipelines.stages.stacker_stage import StackerFit, fit_stacker
from stacking.config import StackerConfig
from stacking.model import StackerModel, library_versions
from stacking.shift_detection import ShiftReference
from stacking.sources import source_features
from stacking.transformer_state import new_transformer, transformer_spec

log = logging.getLogger("arena_pref")

FEATURES, FULL = "features", "full"  # the two stackers a bundle can hold
CHOSEN = "chosen"  # predict_proba(stacker=...): the chosen stacker even where the run submitted the class prior
PICKLED_IDENTITY = "_pickled_identity"  # what a pickled fitted model carries and checks when unpickled
SHIFT_REFERENCE = "shift_reference.npz"  # the training rows new rows are compared with (calibration="auto")
LOCAL_PARAMS = ("cache_dir", "work_dir", "progress")  # this machine's settings: never saved in a bundle
REQUIRED_PARAMS = ("n_folds", "seed", "feature_groups", "stacker", "encoders", "extra_sources")  # in every bundle


class BattlesTypeError(UserError, TypeError, ValueError):
    """Battles given as something other than a DataFrame (an array, a list): a TypeError, as sklearn raises
    for a wrong input type, and a ValueError, as every user error here."""


def check_frame(frame: Any, name: str) -> pd.DataFrame:
    """``frame`` itself when it is a DataFrame; else a one-line error saying what is expected (an array has
    no column names, so its columns could only be guessed)."""
    if not isinstance(frame, pd.DataFrame):
        raise BattlesTypeError(
            f"{name}: expected a pandas DataFrame of battles, in the Kaggle schema (id, prompt, response_a,"
            f" response_b, and the winner columns to fit) or parsed (id, prompt_turns, a_turns, b_turns),"
            f" got {type(frame).__module__}.{type(frame).__qualname__}"
        )
    return frame


def as_battles(frame: pd.DataFrame, name: str, labelled: bool) -> tuple[pd.DataFrame, ParseReport]:
    """Kaggle-schema frames (raw JSON-list strings) are validated and parsed; parsed battles
    (``prompt_turns``/``a_turns``/``b_turns``) pass through. Multi-source columns are kept."""
    check_frame(frame, name)
    turn_columns = list(TURN_COLUMNS.values())
    if all(c in frame.columns for c in turn_columns):
        needed = ["id", *(["label"] if labelled else [])]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise UserError(f"{name}: parsed battles lack column(s) {missing}")
        out = frame.reset_index(drop=True).copy()
        out["id"] = out["id"].astype(str)
        return out, ParseReport(path=name, rows=len(out))
    parsed, report = load_battles_frame(frame, name, labelled)
    for col in SOURCE_COLUMNS:
        if col in frame.columns:
            parsed[col] = frame[col].to_numpy()
    return parsed, report


def labels_of(y: Any, rows: int) -> np.ndarray:
    """Class indices (0 = A wins, 1 = B wins, 2 = tie) from ``y``: the three winner columns (one-hot), or
    one value per row as an index (0/1/2) or a class name (``"a"``/``"b"``/``"tie"``)."""
    if isinstance(y, pd.DataFrame) and all(c in y.columns for c in CLASS_COLUMNS):
        onehot = y[list(CLASS_COLUMNS)].to_numpy()
        if not np.isin(onehot, (0, 1)).all() or not (onehot.sum(axis=1) == 1).all():
            raise DataError(f"y: the winner columns {list(CLASS_COLUMNS)} are not one-hot 0/1 rows")
        labels = onehot.argmax(axis=1)
    else:
        values = np.asarray(y, dtype=object)
        if values.ndim != 1:
            raise DataError(f"y: expected one label per row or the columns {list(CLASS_COLUMNS)}, got {values.shape}")
        index: dict[Any, int] = {**{c: i for i, c in enumerate(CLASS_NAMES)}, **{i: i for i in range(len(CLASS_NAMES))}}
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (str, int, np.integer)) or v not in index]
        if bad:
            raise DataError(f"y: label {bad[0]!r} is none of 0/1/2 or {list(CLASS_NAMES)}")
        labels = np.array([index[v] for v in values], dtype=np.int64)
    if len(labels) != rows:
        raise DataError(f"y: {len(labels)} labels for {rows} rows")
    return labels.astype(np.int64)


def candidate_name(fit: StackerFit) -> str:
    return "features" + ("+" + "+".join(fit.sources) if fit.sources else "")


class ArenaPreferenceModel(ClassifierMixin, BaseEstimator):
    """P(A wins), P(B wins), P(tie) for battles; every fold, encoder and stacker of a run in one object.

    sklearn's shape: ``fit(X, y=None)``, ``predict_proba``, ``predict`` (class names) and
    ``score`` (ClassifierMixin's accuracy; the run reports log loss, the competition's metric).

    Fitted attributes: ``classes_`` (``["a", "b", "tie"]``), ``feature_columns_`` (the chosen stacker's),
    ``encoder_names_`` (encoders the chosen stacker uses), ``folds_``, ``oof_proba_``, ``oof_log_loss_``,
    ``stackers_`` ({"features", "full"}: StackerModel; "full" whenever encoders finished, chosen or not),
    ``chosen_stacker_``, ``stacker_oof_log_loss_`` (per stacker key), ``encoder_models_`` (name:
    ``EncoderFoldModels``), ``fit_report_``, ``shift_reference_``; loaded from a bundle also ``calibration_choice_``
    (the calibration the run's test set resolved to) and ``decisions_`` (what the run submitted:
    ``pipelines.bundle.decisions``). ``last_calibration_``: what the latest ``predict_proba`` resolved to.
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
        tfidf: bool = False,
        embedder: str | None = None,
        embedder_max_length: int = 256,
        extra_sources: Mapping[str, str] | None = None,
        n_jobs: int | None = None,
        cache_dir: str | Path | None = None,
        work_dir: str | Path | None = None,
        progress: bool = False,
        calibration: str = "auto",
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
        self.calibration = calibration

    # ----------------------------------------------------------------- settings
    @property
    def _groups(self) -> tuple[str, ...]:
        return expand_groups(self.feature_groups) if self.feature_groups is not None else DEFAULT_GROUPS

    def _fold_feature_config(self) -> FeatureConfig:
        return FeatureConfig(
            groups=self._groups, tfidf=self.tfidf, embedder=self.embedder, embedder_max_length=self.embedder_max_length
        )

    def all_fold_features(self) -> list[Any]:
        """The user's fold transformers plus those ``tfidf`` / ``embedder`` ask for (unfitted)."""
        return [*self.fold_features, *fold_transformers(self._fold_feature_config())]

    def _with_embeddings(self, battles: pd.DataFrame) -> pd.DataFrame:
        """``battles`` with the ``emb_*`` columns the embedding fold features read (unchanged without one)."""
        return prepare_battles(self._fold_feature_config(), battles, self.cache_dir)

    def _extractor(self, cache: bool = True) -> FeatureExtractor:
        return FeatureExtractor(
            self._groups,
            n_jobs=self.n_jobs or 1,
            cache_dir=self.cache_dir if cache else None,
            progress=self.progress,
        )

    # ----------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y: Any = None) -> ArenaPreferenceModel:
        """Fit on the battles ``X``; labels from ``y`` (see :func:`labels_of`) or, without it, from ``X``
        (winner columns, or ``label`` for parsed battles). No test rows are seen here: score them with
        :meth:`predict_proba` (``pipelines.model.run.fit_predict`` does, and writes a run's files).
        A run with a time budget calls :meth:`fit_steps` with it."""
        for _ in self.fit_steps(X, y):
            pass
        return self

    def fit_steps(
        self,
        X: pd.DataFrame,
        y: Any = None,
        *,
        budget: RunBudget = NO_BUDGET,
    ) -> Iterator[ArenaPreferenceModel]:
        """:meth:`fit`, yielding the model each time it changes (the features-only stacker fitted; a stacker
        with encoders chosen, or kept unchosen). The model is usable at each step, so a run with a time budget
        can publish before any encoder starts; after the last step the fit is complete. ``budget`` (the run's,
        :class:`pipelines.runtime.run_budget.RunBudget`): encoder folds that would overrun its deadline, with the
        scoring of its test rows reserved, are not started; without one the fit is the same as ``fit``'s."""
        started, timer = time.monotonic(), StageTimer()
        stacker = self.stacker or StackerConfig()
        check_savable(stacker.tie_handling)  # before any work: the model must be savable
        bundle_key()  # an empty signing key would refuse the save after the work
        check_calibration(self.calibration)
        encoders = [replace(e) for e in self.encoders]
        inputs, work_dir = self._start(X, y, bool(encoders), timer)
        plan = RunPlan(None, [e.resolved_name for e in encoders])  # the run sets its budget
        first = self._fit_stacker(inputs, stacker, [], timer, "stacker")
        candidates, kept = {candidate_name(first): first}, {FEATURES: first}  # kept: the stackers the bundle keeps
        self._adopt(FEATURES, first, inputs, candidates, plan, timer, started)
        yield self
        if encoders:
            assert work_dir is not None
            second, fold_models = self._encoders_then_stacker(
                inputs, encoders, stacker, work_dir, plan, timer, started, budget
            )
            if second is not None:
                kept[FULL] = second
                yield from self._second_stacker(first, second, fold_models, inputs, candidates, plan, timer, started)
            for name, enc_plan in (plan.encoder_runs or {}).items():
                enc_plan["used_in_submission"] = name in (plan.encoders_used or [])
        self._adopt(self.chosen_stacker_, kept[self.chosen_stacker_], inputs, candidates, plan, timer, started)
        with timer.stage("new-source calibration"):
            self._new_source_stage(inputs, stacker, kept)
        self.fit_report_["timings"] = {**timer.seconds, "total": round(time.monotonic() - started, 3)}
        self.fit_report_["peak_rss_mib"] = dict(timer.peak_rss_mib)

    def _start(
        self, X: pd.DataFrame, y: Any, with_encoders: bool, timer: StageTimer
    ) -> tuple[StackerInputs, Path | None]:
        """Forget any earlier fit; parse, fold and featurise the training battles; the encoders' work folder
        (a temporary one unless ``work_dir`` is set)."""
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)  # a refit starts from nothing
        work_dir = Path(self.work_dir) if self.work_dir is not None else None
        if with_encoders and work_dir is None:
            work_dir = Path(tempfile.mkdtemp(prefix="arena_pref_"))
        folds_path = None if work_dir is None else work_dir / "folds.csv"
        try:
            inputs = self.training_inputs(X, y, folds_path=folds_path, timer=timer)
        except BaseException:  # bad input: no temporary encoder folder left behind
            if work_dir is not None and self.work_dir is None:
                remove_quietly(work_dir)
            raise
        self.classes_ = np.array(CLASS_NAMES)
        self.folds_: np.ndarray | None = inputs.folds
        self.stackers_: dict[str, StackerModel] = {}
        self.stacker_oof_log_loss_: dict[str, float] = {}
        self.encoder_models_: dict = {}
        return inputs, work_dir

    def training_inputs(
        self, X: pd.DataFrame, y: Any = None, *, folds_path: Path | None = None, timer: StageTimer | None = None
    ) -> StackerInputs:
        """What :meth:`fit` trains its stackers on: parsed battles (with the embedding columns the fold features
        read), labels, folds (saved to ``folds_path``), handcrafted and extra-source columns, sources and weights.
        Public so that the experiments (tune, ablation) evaluate exactly the model a run fits; with
        :meth:`all_fold_features` it is every input ``fit_calibrated`` gets. Fits nothing, changes nothing."""
        timer = timer or StageTimer()
        with timer.stage("parse"):
            check_frame(X, "X")
            labels = None if y is None else labels_of(y, len(X))  # before any work: a wrong y fails at once
            train_b, train_parse = as_battles(X, "train", labelled=labels is None)
            if labels is not None:
                train_b["label"] = labels
            train_b = with_source_columns(train_b)  # a frame of several sources: primary rows, weights
        inputs = build_inputs(
            train_b,
            None,
            train_parse,
            None,
            self._extractor(),
            n_folds=self.n_folds,
            seed=self.seed,
            folds_path=folds_path,
            extra_sources=dict(self.extra_sources or {}),
            timer=timer,
        )
        if self.embedder:  # embedding fold features read emb_* columns of the battles (frozen: leak-free)
            with timer.stage("embeddings"):
                inputs.train = self._with_embeddings(inputs.train)
        log.info("train %d rows, %d features", len(inputs.train), inputs.X.shape[1])
        return inputs

    def _second_stacker(
        self,
        first: StackerFit,
        second: StackerFit,
        fold_models: dict,
        inputs: StackerInputs,
        candidates: dict[str, StackerFit],
        plan: RunPlan,
        timer: StageTimer,
        started: float,
    ) -> Iterator[ArenaPreferenceModel]:
        """Keep the stacker with encoders (saved, ``predict_proba(..., stacker="full")``) with the encoders'
        fold models; choose it only when its OOF log loss is better than the features-only one's and every
        encoder kept its fold models (``save_models``): the model must be able to score new battles."""
        candidates[candidate_name(second)] = second
        self.encoder_models_ = fold_models  # kept (and saved) whether chosen or not
        self._keep(FULL, second, inputs)
        predictable = all(s in fold_models or s in (self.extra_sources or {}) for s in second.sources)
        if predictable and second.log_loss(inputs.y) < first.log_loss(inputs.y):
            plan.encoders_used = list(plan.encoders_finished or [])
            self._adopt(FULL, second, inputs, candidates, plan, timer, started)
        else:
            log.warning(
                "stacker with encoders (OOF %.4f, fold models %s) is not chosen over the one without (%.4f):"
                " features only is chosen; the other is kept (predict_proba(..., stacker='full'))",
                second.log_loss(inputs.y),
                "kept" if predictable else "not kept: save_models",
                first.log_loss(inputs.y),
            )
            self.fit_report_ = self._report(inputs, candidates, first, plan, timer, started)
        yield self  # chosen or not, the model (and its bundle) changed

    def _new_source_stage(self, inputs: StackerInputs, stacker: StackerConfig, fits: dict[str, StackerFit]) -> None:
        """Each kept stacker's new-source calibrator and the shift reference sample that ``calibration="auto"``
        compares new rows with (``predict_proba`` decides per frame)."""
        report: dict[str, Any] = {}
        for key in fits:
            ns = fit_new_source(inputs, self.stackers_[key], stacker, self.seed, fold_features=self.all_fold_features())
            self.stackers_[key].new_source = ns.calibrator
            report[key] = {**ns.info, "seconds": round(ns.seconds, 3)}
        self.__dict__.pop("decisions_", None)  # a verdict on the model before this change
        fitted = any(self.stackers_[key].new_source is not None for key in fits)  # else "auto" never compares
        self.shift_reference_: ShiftReference | None = shift_reference(inputs, self.seed) if fitted else None
        self.fit_report_["calibration"]["new_source"] = report

    def _encoders_then_stacker(
        self,
        inputs: StackerInputs,
        encoders: list[EncoderConfig],
        stacker: StackerConfig,
        work_dir: Path,
        plan: RunPlan,
        timer: StageTimer,
        started: float,
        budget: RunBudget,
    ) -> tuple[StackerFit | None, dict]:
        """Fine-tune the encoders (leaving ``budget``'s room for the stacker fits and writes after them; each
        encoder's plan reserves the scoring of the budget's test rows by its fold models), then that stacker;
        (None, {}) when no encoder finished or the stacker failed: the features-only model stands."""
        from encoders.fold_models import EncoderFoldModels
        from pipelines.stages.encoder_stage import run_encoders

        one_fit = timer.seconds["stacker"] + timer.seconds["stacker calibration"]
        encoder_deadline = budget.encoder_deadline(one_fit, several_sources=inputs.source is not None)
        plan.encoder_deadline_s_from_start = None if encoder_deadline is None else round(encoder_deadline - started, 1)
        with timer.stage("encoders"):
            stage = run_encoders(
                inputs,
                encoders,
                work_dir,
                seed=self.seed,
                deadline=encoder_deadline,
                test_rows=budget.test_rows,
                progress=self.progress,
            )
        plan.encoder_runs = stage.plans
        plan.encoders_finished = list(stage.finished)
        plan.encoders_used = []
        if not stage.finished:
            return None, {}
        try:  # the features-only model is already usable: a failure here must not lose the run
            for name, (oof_path, test_path) in stage.finished.items():
                inputs.with_source(name, oof_path, test_path)
            second = self._fit_stacker(inputs, stacker, list(stage.finished), timer, "stacker (with encoders)")
            fold_models = {name: EncoderFoldModels.load(path) for name, path in stage.fold_models.items()}
        except Exception as exc:  # noqa: BLE001 - reported, and the fallback stands
            log.exception("stacker with encoder sources failed; keeping the features-only stacker")
            plan.encoder_stacker_error = f"{type(exc).__name__}: {exc}"
            return None, {}
        missing = [n for n in stage.finished if n not in fold_models]
        if missing:
            log.warning("encoder(s) %s kept no fold models (save_models): new battles need use_encoders=False", missing)
        return second, fold_models

    def _fit_stacker(
        self,
        inputs: StackerInputs,
        stacker: StackerConfig,
        encoder_sources: list[str],
        timer: StageTimer,
        stage: str,
    ) -> StackerFit:
        """Cross-fit and calibrate the stacker on the features, the extra sources and ``encoder_sources``; timed
        as ``stage`` (the cross-fit) and ``stage`` + " calibration"."""
        started = time.perf_counter()
        fit = fit_stacker(
            inputs,
            stacker,
            self.seed,
            self._groups,
            [*(self.extra_sources or {}), *encoder_sources],
            fold_features=self.all_fold_features(),
            progress=self.progress,
        )
        timer.record(stage, time.perf_counter() - started - fit.calibration_s)
        timer.record(stage + " calibration", fit.calibration_s)
        return fit

    def _adopt(
        self,
        key: str,
        fit: StackerFit,
        inputs: StackerInputs,
        candidates: dict[str, StackerFit],
        plan: RunPlan,
        timer: StageTimer,
        started: float,
    ) -> None:
        """Make ``fit`` the chosen stacker: the model predicts (and saves) with it from now on."""
        self._keep(key, fit, inputs)
        self.chosen_stacker_ = key
        self.feature_columns_ = list(fit.model.columns)
        self.encoder_names_ = [s for s in fit.sources if s not in (self.extra_sources or {})]
        self.oof_proba_ = fit.oof_cal
        self.oof_log_loss_ = fit.log_loss(inputs.y)
        self.fit_report_ = self._report(inputs, candidates, fit, plan, timer, started)

    def _keep(self, key: str, fit: StackerFit, inputs: StackerInputs) -> None:
        """Hold ``fit`` under ``key`` (predictable with ``stacker=key``, saved) without choosing it. A prior-guard
        verdict recorded by an earlier ``save`` judged the model before this change: it is dropped."""
        self.__dict__.pop("decisions_", None)
        self.stackers_[key] = fit.model
        self.stacker_oof_log_loss_[key] = fit.log_loss(inputs.y)

    def _report(
        self,
        inputs: StackerInputs,
        candidates: dict[str, StackerFit],
        chosen: StackerFit,
        plan: RunPlan,
        timer: StageTimer,
        started: float,
    ) -> dict:
        """The fit's own record (the bundle keeps part of it): rows, folds, OOF scores, the chosen stacker and
        the encoder decisions; the run report (``pipelines.model.run``) adds data, test, config and versions."""
        return {
            "rows": {"train": len(inputs.train)},
            "label_counts": {c: int((inputs.y == i).sum()) for i, c in enumerate(CLASS_NAMES)},
            "folds": {"n_folds": self.n_folds, "rows_per_fold": np.bincount(inputs.folds).tolist()},
            "features": {"groups": list(self._groups), "sources": chosen.sources, "n_columns": inputs.X.shape[1]},
            "oof": oof_metrics(inputs, candidates),
            "chosen": {"sources": chosen.sources, "oof_log_loss": chosen.log_loss(inputs.y)},
            "chosen_description": chosen.description,
            "calibration": {"kind": chosen.model.calibrator.kind, "fitted": chosen.model.calibrator.to_dict()},
            "stacker": {
                "best_iterations": chosen.model.metadata["best_iterations"],
                "params": (self.stacker or StackerConfig()).params,
            },
            "plan": plan.to_dict(),
            "timings": {**timer.seconds, "total": round(time.monotonic() - started, 3)},
            **training_sources_report(inputs, chosen),
        }

    # ----------------------------------------------------------------- predict
    def predict_proba(
        self,
        frame: pd.DataFrame,
        *,
        use_encoders: bool = True,
        sources: Mapping[str, pd.DataFrame | str | Path] | None = None,
        stacker: str | None = None,
        encoder_proba: Mapping[str, np.ndarray] | None = None,
        calibration: str | None = None,
    ) -> np.ndarray:
        """(n, 3) calibrated probabilities (A wins, B wins, tie) for any battles frame.

        ``stacker``: None (default) what the run submitted: the class prior on every row where its prior guard
        rejected the stacker (``decisions_``, as ``pipelines.predict`` and the Kaggle scoring path), else the
        chosen stacker; ``"chosen"`` the chosen stacker whatever the guard said; ``"features"`` or ``"full"``
        (with encoders, kept whenever the encoders finished) that one. ``use_encoders=False``: the features-only
        stacker. ``sources``: the probabilities of extra sources the model was trained with (frame or
        file: id + 3 columns). ``encoder_proba``: {encoder: (n, 3) array in ``frame``'s row order} computed
        elsewhere (e.g. one process per GPU, ``encoders.parallel_predict``); those encoders' fold models are
        then not run here. ``calibration``: ``"in-source"``, ``"new-source"`` or ``"auto"`` (default: the
        model's ``calibration``); what ``auto`` chose, and why, is in ``last_calibration_``.
        """
        check_is_fitted(self, "stackers_")
        key = self._stacker_key(stacker, use_encoders)
        battles, _ = as_battles(frame, "X", labelled=False)
        prior = prior_in_place_of(self, stacker, use_encoders)
        if prior is not None:  # what the run submitted: its stacker did not beat the class prior out of fold
            self.last_calibration_ = _prior_choice(check_calibration(calibration or self.calibration))
            return np.tile(prior, (len(battles), 1))
        model = self.stackers_[key]
        X = self._extractor(cache=False).transform(battles)
        given = dict(sources or {})
        computed = dict(encoder_proba or {})
        for name in model.feature_config.get("sources", []):
            if name in computed:
                proba = _proba_frame(np.asarray(computed[name], dtype=np.float64), battles, name)
            elif name in given:
                value = given[name]
                proba = value if isinstance(value, pd.DataFrame) else read_proba_file(value)
            elif name in (self.extra_sources or {}):
                raise UserError(f"the model was trained with probability source {name!r}: pass sources={{name: ...}}")
            else:
                proba = self._encoder_proba(name, battles)
            try:
                X = pd.concat([X, source_features(proba, battles["id"], name)], axis=1)
            except ValueError as exc:  # the given probabilities lack some of the battles' ids
                raise UserError(str(exc)) from None
        if model.needs_battles and self.embedder:
            battles = self._with_embeddings(battles)
        raw = model.predict_proba_uncalibrated(X, battles if model.needs_battles else None)
        reference = getattr(self, "shift_reference_", None)
        requested = calibration or self.calibration
        self.last_calibration_ = choose_calibration(requested, model, reference, X, battles, self.seed)
        return model.calibrate(raw, new_source=self.last_calibration_["calibration"] == "new-source")

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

    def decide_calibration(
        self, frame: pd.DataFrame, calibration: str | None = None, *, use_encoders: bool = True
    ) -> dict[str, Any]:
        """What ``calibration`` (default: the model's) resolves to for all of ``frame``, and why. Scoring a
        test set in slices (e.g. per GPU) should decide once on the whole set, then pass the result on."""
        check_is_fitted(self, "stackers_")
        battles, _ = as_battles(frame, "X", labelled=False)
        X = self._extractor(cache=False).transform(battles)
        model = self.stackers_[self._stacker_key(None, use_encoders)]
        reference = getattr(self, "shift_reference_", None)
        return choose_calibration(calibration or self.calibration, model, reference, X, battles, self.seed)

    def _stacker_key(self, stacker: str | None, use_encoders: bool) -> str:
        if stacker in (None, CHOSEN):
            return self.chosen_stacker_ if use_encoders else FEATURES
        if stacker not in (FEATURES, FULL):
            raise UserError(
                f"stacker={stacker!r}: use None (what the run submitted), {CHOSEN!r}, {FEATURES!r} or {FULL!r}"
            )
        if stacker == FULL and not use_encoders:
            raise UserError("stacker='full' uses the encoders: it contradicts use_encoders=False")
        if stacker not in self.stackers_:
            raise UserError(f"stacker={stacker!r}: this model has only {sorted(self.stackers_)} (no encoder finished?)")
        return stacker

    def _encoder_proba(self, name: str, battles: pd.DataFrame) -> pd.DataFrame:
        if name not in self.encoder_models_:
            raise UserError(
                f"encoder {name!r}: its fold models were not kept (save_models);"
                " use predict_proba(..., use_encoders=False)"
            )
        require_base(name, self.encoder_models_[name])
        return _proba_frame(self.encoder_models_[name].predict_proba(battles, progress=self.progress), battles, name)

    # ----------------------------------------------------------------- save / load
    def _params_json(self) -> dict:
        """``get_params()`` as JSON, less this machine's settings (:data:`LOCAL_PARAMS`): the one parameter
        list, so a new parameter is saved and loaded without a second list to keep in step."""
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in LOCAL_PARAMS}
        return {k: _encode_param(k, v, self) for k, v in params.items()}

    def save(self, directory: str | Path, *, decisions: dict | None = None, test_choice: dict | None = None) -> Path:
        """Write the bundle to ``directory`` (staged next to it, then moved into place). ``decisions``:
        what the run decided and submitted (``pipelines.model.run``: the prior guard's verdict), recorded so
        that scoring the bundle later repeats it (:func:`pipelines.bundle.decisions.submitted_prior`), as this
        model does from now on (``decisions_``); None keeps the model's own (a loaded bundle's verdict survives a
        re-save); ``test_choice``: the calibration the run's test set resolved to (``last_calibration_``), kept
        with the fit report (a loaded model's ``calibration_choice_``)."""
        check_is_fitted(self, "stackers_")
        decisions = decisions_record(getattr(self, "decisions_", None) if decisions is None else decisions, self)
        target = Path(directory)
        staged = temp_path(target)  # a killed save leaves a temporary the next run sweeps
        staged.mkdir(parents=True)
        try:
            self._write_bundle(staged, decisions, test_choice)
            replace_directory(staged, target)
        except BaseException:
            remove_quietly(staged)
            raise
        self.decisions_ = decisions
        return target

    def _write_bundle(self, staged: Path, decisions: dict, test_choice: dict | None) -> None:
        for key, model in self.stackers_.items():
            model.save(staged / f"stacker_{key}")
        encoders = {}
        if FULL in self.stackers_:  # the encoders of the with-encoders stacker, chosen or not
            for name, fold_models in self.encoder_models_.items():
                copy = fold_models.copy_to(staged / "encoders" / name)
                encoders[name] = {
                    "directory": f"encoders/{name}",
                    "base_model": copy.manifest["base_model"],
                    "lora": copy.manifest["lora"],
                    "folds": copy.folds,
                    "inputs": copy.manifest["inputs"],
                    "base_identity": base_identity(copy.manifest["base_model"]) if copy.manifest["lora"] else None,
                }
        np.savez(staged / "oof_proba.npz", oof_proba=np.asarray(self.oof_proba_, dtype=np.float64))
        reference = getattr(self, "shift_reference_", None)
        if reference is not None:
            reference.save(staged / SHIFT_REFERENCE)
        report = {
            k: v
            for k, v in self.fit_report_.items()
            if k in ("rows", "label_counts", "folds", "oof", "chosen", "calibration")
        }
        report["calibration"] = {**report["calibration"], "test_choice": test_choice}
        write_manifest(
            staged,
            {
                "classes": list(self.classes_),
                "feature_groups": list(self._groups),
                "sources": list(self.extra_sources or {}),
                "stackers": sorted(self.stackers_),
                "chosen_stacker": self.chosen_stacker_,
                "stacker_oof_log_loss": dict(getattr(self, "stacker_oof_log_loss_", {})),
                "feature_columns": self.feature_columns_,
                "encoder_names": self.encoder_names_,
                "oof_log_loss": self.oof_log_loss_,
                "encoders": encoders,
                "params": self._params_json(),
                "fit_report": report,
                "decisions": decisions,
                "feature_identity": feature_fingerprint(self._groups),
            },
        )

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        encoder_base_paths: dict[str, str] | None = None,
        require_signature: bool = False,
    ) -> ArenaPreferenceModel:
        """A fitted model from a bundle; every file is verified first (:class:`BundleError` otherwise).
        ``encoder_base_paths``: {encoder: base model folder} where the recorded paths do not exist (Kaggle);
        ``require_signature``: refuse a bundle not signed under ``ARENA_PREF_BUNDLE_KEY`` (a plain sha256
        digest anyone can recompute; ``ARENA_PREF_REQUIRE_SIGNATURE=1`` asks the same of every load)."""
        directory = Path(directory)
        manifest = read_verified(directory, require_signature=require_signature)
        try:
            params = manifest["params"]
            missing = [k for k in REQUIRED_PARAMS if k not in params]
            if missing:
                raise KeyError(missing[0])
            known = [k for k in cls().get_params(deep=False) if k in params and k not in LOCAL_PARAMS]
            model = cls(**{k: _decode_param(k, params[k]) for k in known})
            chosen, stacker_keys = manifest["chosen_stacker"], list(manifest["stackers"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{directory / 'manifest.json'}: malformed ({type(exc).__name__}: {exc})") from None
        if FEATURES not in stacker_keys or chosen not in stacker_keys:
            raise BundleError(f"{directory / 'manifest.json'}: stackers {stacker_keys}, chosen {chosen!r}")
        _check_feature_identity(directory, manifest, model._groups)
        model.stackers_ = {key: load_stacker(directory / f"stacker_{key}") for key in stacker_keys}
        for key, stacker in model.stackers_.items():
            if list(stacker.feature_config.get("groups", [])) != list(model._groups):
                raise BundleError(f"{directory / f'stacker_{key}'}: feature groups differ from the manifest's")
        if model.stackers_[chosen].columns != manifest["feature_columns"]:
            raise BundleError(f"{directory / f'stacker_{chosen}'}: columns differ from the manifest's feature_columns")
        model.encoder_models_ = _load_encoders(directory, manifest, encoder_base_paths or {})
        extra = dict(model.extra_sources or {})
        needed = [s for s in model.stackers_[chosen].feature_config.get("sources", []) if s not in extra]
        if chosen == FULL and sorted(needed) != sorted(manifest["encoder_names"]):
            raise BundleError(f"{directory / 'manifest.json'}: encoder_names do not match the stacker's sources")
        with np.load(directory / "oof_proba.npz", allow_pickle=False) as npz:
            model.oof_proba_ = npz["oof_proba"]
        model.classes_ = np.array(manifest["classes"])
        model.chosen_stacker_ = chosen
        model.feature_columns_ = list(manifest["feature_columns"])
        model.encoder_names_ = list(manifest["encoder_names"])
        model.oof_log_loss_ = float(manifest["oof_log_loss"])
        model.stacker_oof_log_loss_ = {k: float(v) for k, v in manifest.get("stacker_oof_log_loss", {}).items()}
        model.folds_ = None
        model.fit_report_ = dict(manifest.get("fit_report", {}))
        model.calibration_choice_ = model.fit_report_.get("calibration", {}).get("test_choice")
        model.shift_reference_ = _load_shift_reference(directory, model.feature_columns_)
        try:
            model.decisions_ = check_decisions(manifest.get("decisions"), stacker_keys)
        except ValueError as exc:
            raise BundleError(f"{directory / 'manifest.json'}: {exc}") from None
        return model

    # ----------------------------------------------------------------- pickle
    def __getstate__(self) -> dict:
        """A fitted model's pickle carries what its bundle's checks compare (feature fingerprint, format and
        library versions), so that unpickling in a checkout whose feature code changed is refused as ``load``
        refuses the bundle, instead of predicting other numbers silently."""
        state = dict(super().__getstate__())
        if "stackers_" in state:
            state[PICKLED_IDENTITY] = _pickle_identity(self._groups)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        identity = state.pop(PICKLED_IDENTITY, None)
        super().__setstate__(state)
        if "stackers_" in state:
            _check_pickle_identity(identity, self._groups)


def _versions() -> dict[str, Any]:
    return {"bundle format": BUNDLE_FORMAT, **library_versions()}


def _pickle_identity(groups: tuple[str, ...]) -> dict:
    return {"versions": _versions(), "features": feature_fingerprint(groups)}


def _check_pickle_identity(identity: Any, groups: tuple[str, ...]) -> None:
    """The code and libraries unpickling a fitted model are those it was pickled with (BundleError otherwise)."""
    where = "unpickled ArenaPreferenceModel"
    advice = "a pickle is for this checkout only: save() the model and load() its bundle, or retrain"
    if not isinstance(identity, dict) or not isinstance(identity.get("features"), dict):
        raise BundleError(f"{where}: it carries no feature identity (pickled by an older version); {advice}")
    saved, now = identity.get("versions") or {}, _versions()
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        name = changed[0]
        raise BundleError(f"{where}: {name} {saved.get(name)} when pickled, {now.get(name)} now; {advice}")
    difference = feature_difference(identity["features"], groups)
    if difference:
        raise BundleError(f"{where}: {difference}; {advice}")


def _prior_choice(requested: str) -> dict[str, Any]:
    """``last_calibration_`` when the class prior is returned: no calibrator was used."""
    why = "the run submitted the class prior (its prior guard rejected the stacker); stacker='chosen' scores with it"
    return {"requested": requested, "calibration": "none (class prior)", "why": why, "shift": None}


def _encode_param(name: str, value: Any, model: ArenaPreferenceModel) -> Any:
    """One ``get_params()`` value as the manifest stores it."""
    if name == "feature_groups":
        return list(model._groups)
    if name == "stacker":
        return asdict(value or StackerConfig())
    if name == "encoders":
        return [asdict(e) for e in value]
    if name == "fold_features":  # unfitted: class and parameters (the fitted ones live in the stackers)
        return [transformer_spec(t) for t in value]
    if name == "extra_sources":
        return dict(value or {})
    return value


def _decode_param(name: str, stored: Any) -> Any:
    """The inverse of :func:`_encode_param`; a malformed value raises ``KeyError``/``TypeError``/``ValueError``."""
    if name in ("n_folds", "seed", "embedder_max_length"):
        return int(stored)
    if name == "tfidf":
        return bool(stored)
    if name == "feature_groups":
        return tuple(stored)
    if name == "stacker":
        return StackerConfig.from_dict(stored)
    if name == "encoders":
        return tuple(_encoder_config(e) for e in stored)
    if name == "fold_features":
        return tuple(new_transformer(spec, "fold_features") for spec in stored)
    if name == "extra_sources":
        return dict(stored)
    if name == "calibration":
        return check_calibration(stored)
    return stored


def _load_shift_reference(directory: Path, feature_columns: list[str]) -> ShiftReference | None:
    path = directory / SHIFT_REFERENCE
    if not path.exists():
        return None
    try:
        return ShiftReference.load(path, feature_columns)
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: {exc}") from None


def _proba_frame(proba: np.ndarray, battles: pd.DataFrame, name: str) -> pd.DataFrame:
    """id + the three class columns, in ``battles``' row order."""
    if proba.shape != (len(battles), N_CLASSES):
        raise UserError(
            f"encoder {name!r}: probabilities of shape {proba.shape}, expected ({len(battles)}, {N_CLASSES})"
        )
    out = pd.DataFrame(proba, columns=list(CLASS_COLUMNS))
    out.insert(0, "id", battles["id"].astype(str).to_numpy())
    return out


def _encoder_config(stored: dict) -> EncoderConfig:
    known = {f.name for f in fields(EncoderConfig)}
    return EncoderConfig(**{k: v for k, v in stored.items() if k in known})


def _load_encoders(directory: Path, manifest: dict, base_paths: dict[str, str]) -> dict:
    unknown = sorted(set(base_paths) - set(manifest.get("encoders") or {}))
    if unknown:
        raise BundleError(
            f"encoder base path for {unknown[0]!r}: the bundle has no such encoder"
            f" (its encoders: {sorted(manifest.get('encoders') or {})})"
        )
    if not manifest.get("encoders"):
        return {}
    from encoders.fold_models import EncoderFoldModels

    out = {}
    for name, info in manifest["encoders"].items():
        where = directory / info["directory"]
        try:
            out[name] = EncoderFoldModels.load(where, base_path=base_paths.get(name))
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"{where}: {type(exc).__name__}: {exc}") from None
        if out[name].folds != list(info["folds"]):
            raise BundleError(f"{where}: fold models {out[name].folds} differ from the manifest's {info['folds']}")
        _check_base_identity(name, info, Path(out[name].config.model_path or ""))
    return out


def _check_feature_identity(directory: Path, manifest: dict, groups: tuple[str, ...]) -> None:
    """The feature code running now computes what the bundle's boosters were fitted on."""
    saved = manifest.get("feature_identity")
    if not isinstance(saved, dict):
        raise BundleError(f"{directory / 'manifest.json'}: no feature_identity")
    difference = feature_difference(saved, groups)
    if difference:
        raise BundleError(f"{directory}: {difference}; the bundle's stackers were fitted on other features: retrain")


def _check_base_identity(name: str, info: dict, base: Path) -> None:
    """A LoRA encoder's base is the one it was trained on; checked where the base is now (a missing base
    is reported when the encoder is used, so a features-only prediction still works without it)."""
    saved = info.get("base_identity")
    if not info.get("lora") or not base.is_dir():
        return
    if not isinstance(saved, dict):
        raise BundleError(f"encoder {name!r}: the manifest records no base identity")
    difference = base_difference(saved, base)
    if difference:
        raise BundleError(f"encoder {name!r}: base model {base}: {difference}; give the right one (--encoder-base)")


def require_base(name: str, fold_models: Any) -> None:
    """One line instead of a library traceback when a LoRA encoder's base is not where it is looked for."""
    base = Path(fold_models.config.model_path or "")
    if fold_models.manifest.get("lora") and not base.exists():  # a folder, or one .gguf file
        raise BundleError(
            f"encoder {name!r}: base model not found at {base}; give it with --encoder-base {name}=DIR"
            " (encoder_base_paths), or predict with the features-only stacker"
        )


def oof_metrics(inputs: StackerInputs, candidates: dict[str, StackerFit]) -> dict[str, dict]:
    """The class prior (nested) and each candidate's OOF log loss before and after calibration, over
    the scored (primary) rows: extra training sources are never scored here."""
    rows = next(iter(candidates.values())).scored_rows(len(inputs.y))
    y, folds = inputs.y[rows], inputs.folds[rows]
    out = {"class prior": summarize(y, nested_prior(y, folds), folds)}
    for name, cand in candidates.items():
        suffix = "" if len(candidates) == 1 else f" [{name}]"
        out[f"stacker (uncalibrated){suffix}"] = summarize(y, cand.oof_raw[rows], folds)
        out[f"stacker (calibrated){suffix}"] = summarize(y, cand.oof_cal[rows], folds)
    return out


def training_sources_report(inputs: StackerInputs, chosen: StackerFit) -> dict:
    """Rows per source, which are scored, the tie handling used and OOF per source (uncalibrated);
    ``{}`` for a single-source run, whose report stays as it was."""
    if chosen.per_source is None:
        return {}
    train, rows = inputs.train, chosen.scored_rows(len(inputs.y))
    return {
        "training_sources": {
            "rows": {str(k): int(v) for k, v in train.groupby("source", sort=False).size().items()},
            "scored_rows": int(rows.sum()),
            "scored_sources": sorted(str(s) for s in train.loc[rows, "source"].unique()),
            "tie_handling": chosen.tie_handling,
        },
        "oof_per_source": chosen.per_source,
    }
