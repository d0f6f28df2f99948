"""The estimator's fit, step by step: parse, fold and featurise the training battles; the features-only stacker;
the encoders in the same folds, then a stacker with their probabilities, chosen only when its OOF log loss is
better; the new-source calibrators; the fit's record (``fit_report_``).

Why a module of its own: the estimator keeps its parameters and says what ``fit`` does; the order of the
stages, the budget arithmetic and the choice between the candidates are the fit's. :func:`fit_steps` writes the
fitted attributes onto the model as it goes (each yield leaves a usable model, so a run can publish it).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from arena_schema import CLASS_NAMES
from encoders.settings import EncoderConfig
from pipelines.bundle.decisions import FEATURES, FULL
from pipelines.bundle.fit_record import FitRecord
from pipelines.bundle.model_bundle import feature_groups_of
from pipelines.bundle.store import bundle_key
from pipelines.data.run_sources import with_source_columns
from pipelines.model.battles_input import as_battles, check_frame, labels_of
from pipelines.model.model_features import extractor_of, fold_features_of, with_fold_feature_columns
from pipelines.model.run_plan import RunPlan
from pipelines.reports.metrics import nested_prior, summarize
from pipelines.runtime.run_budget import RunBudget
from pipelines.runtime.run_dir import remove_quietly
from pipelines.runtime.stage_timer import StageTimer
from pipelines.stages.new_source_stage import fit_new_source, shift_reference
from pipelines.stages.stacker_inputs import StackerInputs, build_inputs
from pipelines.stages.stacker_stage import StackerFit, fit_stacker
from stacking.calibration_choice import validate_test_calibration
from stacking.config import StackerConfig
from stacking.model import check_savable_tie_handling

log = logging.getLogger("arena_pref")


def training_inputs(
    model: Any, X: Any, y: Any = None, *, folds_path: Path | None = None, timer: StageTimer | None = None
) -> StackerInputs:
    """What ``model``'s fit trains its stackers on: parsed battles (with the columns the fold features read),
    labels, folds (saved to ``folds_path``), handcrafted and extra-source columns, sources and weights."""
    timer = timer or StageTimer()
    with timer.stage("parse"):
        check_frame(X, "X")
        labels = None if y is None else labels_of(y, len(X))  # before any work: a wrong y fails at once
        train, _ = as_battles(X, "train", labelled=labels is None)
        if labels is not None:
            train["label"] = labels
        train = with_source_columns(train)  # a frame of several sources: primary rows, weights
    inputs = build_inputs(
        train,
        extractor_of(model),
        n_folds=model.n_folds,
        seed=model.seed,
        folds_path=folds_path,
        extra_sources=model.extra_sources,
        timer=timer,
    )
    if model.embedder:  # embedding fold features read emb_* columns of the battles (frozen: leak-free)
        with timer.stage("embeddings"):
            inputs.train = with_fold_feature_columns(model, inputs.train)
    log.info("train %d rows, %d features", len(inputs.train), inputs.X.shape[1])
    return inputs


def fit_steps(model: Any, X: Any, y: Any, budget: RunBudget) -> Iterator[Any]:
    """``model.fit_steps``: the fitted attributes written onto ``model``, which is yielded each time it changes."""
    started, timer = time.monotonic(), StageTimer()
    stacker = model.stacker or StackerConfig()
    check_savable_tie_handling(stacker.tie_handling)  # before any work: the model must be savable
    bundle_key()  # an empty signing key would refuse the save after the work
    validate_test_calibration(model.test_calibration)
    encoders = [replace(e) for e in model.encoders]
    for attr in [a for a in vars(model) if a.endswith("_") and not a.startswith("_")]:
        delattr(model, attr)  # a refit starts from nothing
    work = _WorkDir(model.work_dir, temporary=bool(encoders))
    try:
        inputs = training_inputs(model, X, y, folds_path=work.folds_path, timer=timer)
    except BaseException:  # bad input: no temporary encoder folder left behind
        work.remove()
        raise
    fit = _Fit(model, inputs, stacker, RunPlan(None, [e.resolved_name for e in encoders]), timer, started)
    try:
        yield from fit.steps(encoders, work, budget)
    finally:
        work.release(model)


class _WorkDir:
    """The encoders' work folder: ``work_dir``, or a temporary one that never outlives the fitted model."""

    def __init__(self, work_dir: str | Path | None, temporary: bool) -> None:
        self.own = work_dir is None and temporary  # a folder this fit made, and must remove
        self.path: Path | None = Path(work_dir) if work_dir is not None else None
        if self.own:
            self.path = Path(tempfile.mkdtemp(prefix="arena_pref_"))

    @property
    def folds_path(self) -> Path | None:
        return None if self.path is None else self.path / "folds.csv"

    def remove(self) -> None:
        if self.own and self.path is not None:
            remove_quietly(self.path)

    def release(self, model: Any) -> None:
        """A temporary folder goes now, or with ``model`` where its encoders' fold models are read from it."""
        if not self.own or self.path is None:
            return
        if getattr(model, "encoder_models_", None):
            weakref.finalize(model, shutil.rmtree, str(self.path), True)
        else:
            self.remove()


class _Fit:
    """One fit's state: its inputs, the candidates scored, the stackers kept, the plan and the clock."""

    def __init__(
        self,
        model: Any,
        inputs: StackerInputs,
        stacker: StackerConfig,
        plan: RunPlan,
        timer: StageTimer,
        started: float,
    ) -> None:
        self.model, self.inputs, self.stacker, self.plan = model, inputs, stacker, plan
        self.timer, self.started = timer, started
        self.candidates: dict[str, StackerFit] = {}  # every stacker fitted, by the sources it used
        self.kept: dict[str, StackerFit] = {}  # the stackers the bundle keeps: FEATURES, and FULL when fitted
        model.classes_ = np.array(CLASS_NAMES)
        model.folds_ = inputs.folds
        model.stackers_, model.stacker_oof_log_loss_, model.encoder_models_ = {}, {}, {}

    def steps(self, encoders: list[EncoderConfig], work: _WorkDir, budget: RunBudget) -> Iterator[Any]:
        model, plan = self.model, self.plan
        first = self.stacker_fit([], "stacker")
        self.candidates[candidate_name(first)] = first
        self.adopt(FEATURES, first)
        yield model
        if encoders:
            assert work.path is not None
            second, fold_models = self.encoders_then_stacker(encoders, work.path, budget)
            if second is not None:
                yield from self.second_stacker(first, second, fold_models)
            for name, enc_plan in (plan.encoder_runs or {}).items():
                enc_plan["used_in_submission"] = name in (plan.encoders_used or [])
        self.adopt(model.chosen_stacker_, self.kept[model.chosen_stacker_])
        with self.timer.stage("new-source calibration"):
            self.new_source()
        model.fit_report_.timings = {**self.timer.seconds, "total": round(time.monotonic() - self.started, 3)}
        model.fit_report_.peak_rss_mib = dict(self.timer.peak_rss_mib)

    def stacker_fit(self, encoder_sources: list[str], stage: str) -> StackerFit:
        """Cross-fit and calibrate the stacker on the features, the extra sources and ``encoder_sources``; timed
        as ``stage`` (the cross-fit) and ``stage`` + " calibration"."""
        started, model = time.perf_counter(), self.model
        fit = fit_stacker(
            self.inputs,
            self.stacker,
            model.seed,
            feature_groups_of(model),
            [*(model.extra_sources or {}), *encoder_sources],
            fold_features=fold_features_of(model),
            progress=model.progress,
        )
        self.timer.record(stage, time.perf_counter() - started - fit.calibration_s)
        self.timer.record(stage + " calibration", fit.calibration_s)
        return fit

    def keep(self, key: str, fit: StackerFit) -> None:
        """Hold ``fit`` under ``key`` (predictable with ``stacker=key``, saved) without choosing it. A prior-guard
        verdict recorded by an earlier ``save`` judged the model before this change: it is dropped."""
        self.model.__dict__.pop("decisions_", None)
        self.kept[key] = fit
        self.model.stackers_[key] = fit.model
        self.model.stacker_oof_log_loss_[key] = fit.log_loss(self.inputs.y)

    def adopt(self, key: str, fit: StackerFit) -> None:
        """Make ``fit`` the chosen stacker: the model predicts (and saves) with it from now on."""
        model = self.model
        self.keep(key, fit)
        model.chosen_stacker_ = key
        model.feature_columns_ = list(fit.model.columns)
        model.encoder_names_ = [s for s in fit.sources if s not in (model.extra_sources or {})]
        model.oof_proba_ = fit.oof_cal
        model.oof_log_loss_ = fit.log_loss(self.inputs.y)
        model.fit_report_ = self.record(fit)

    def second_stacker(self, first: StackerFit, second: StackerFit, fold_models: dict) -> Iterator[Any]:
        """Keep the stacker with encoders (saved, ``predict_proba(..., stacker="full")``) with the encoders'
        fold models; choose it only when its OOF log loss is better than the features-only one's and every
        encoder kept its fold models (``save_models``): the model must be able to score new battles."""
        model, y = self.model, self.inputs.y
        self.candidates[candidate_name(second)] = second
        model.encoder_models_ = fold_models  # kept (and saved) whether chosen or not
        self.keep(FULL, second)
        predictable = all(s in fold_models or s in (model.extra_sources or {}) for s in second.sources)
        if predictable and second.log_loss(y) < first.log_loss(y):
            self.plan.encoders_used = list(self.plan.encoders_finished or [])
            self.adopt(FULL, second)
        else:
            log.warning(
                "stacker with encoders (OOF %.4f, fold models %s) is not chosen over the one without (%.4f):"
                " features only is chosen; the other is kept (predict_proba(..., stacker='full'))",
                second.log_loss(y),
                "kept" if predictable else "not kept: save_models",
                first.log_loss(y),
            )
            model.fit_report_ = self.record(first)
        yield model  # chosen or not, the model (and its bundle) changed

    def encoders_then_stacker(
        self, encoders: list[EncoderConfig], work_dir: Path, budget: RunBudget
    ) -> tuple[StackerFit | None, dict]:
        """Fine-tune the encoders (leaving ``budget``'s room for the stacker fits and writes after them; each
        encoder's plan reserves the scoring of the budget's test rows by its fold models), then that stacker;
        (None, {}) when no encoder finished or the stacker failed: the features-only model stands."""
        from encoders.fold_models import EncoderFoldModels
        from pipelines.stages.encoder_stage import run_encoders

        inputs, plan, timer = self.inputs, self.plan, self.timer
        one_fit = timer.seconds["stacker"] + timer.seconds["stacker calibration"]
        deadline = budget.encoder_deadline(one_fit, several_sources=inputs.source is not None)
        plan.encoder_deadline_s_from_start = None if deadline is None else round(deadline - self.started, 1)
        with timer.stage("encoders"):
            stage = run_encoders(
                inputs,
                encoders,
                work_dir,
                seed=self.model.seed,
                deadline=deadline,
                test_rows=budget.test_rows,
                progress=self.model.progress,
            )
        plan.encoder_runs, plan.encoders_finished, plan.encoders_used = stage.plans, list(stage.finished), []
        if not stage.finished:
            return None, {}
        try:  # the features-only model is already usable: a failure here must not lose the run
            for name, oof_path in stage.finished.items():
                inputs.with_source(name, oof_path)
            second = self.stacker_fit(list(stage.finished), "stacker (with encoders)")
            fold_models = {name: EncoderFoldModels.load(path) for name, path in stage.fold_models.items()}
        except Exception as exc:  # noqa: BLE001 - reported, and the fallback stands
            log.exception("stacker with encoder sources failed; keeping the features-only stacker")
            plan.encoder_stacker_error = f"{type(exc).__name__}: {exc}"
            return None, {}
        missing = [n for n in stage.finished if n not in fold_models]
        if missing:
            log.warning("encoder(s) %s kept no fold models (save_models): new battles need use_encoders=False", missing)
        return second, fold_models

    def new_source(self) -> None:
        """Each kept stacker's new-source calibrator and the shift reference sample that ``test_calibration="auto"``
        compares new rows with (scoring decides per test set)."""
        model, report = self.model, {}
        for key in self.kept:
            ns = fit_new_source(
                self.inputs, model.stackers_[key], self.stacker, model.seed, fold_features=fold_features_of(model)
            )
            model.stackers_[key].new_source = ns.calibrator
            report[key] = {**ns.info, "seconds": round(ns.seconds, 3)}
        model.__dict__.pop("decisions_", None)  # a verdict on the model before this change
        fitted = any(model.stackers_[key].new_source is not None for key in self.kept)  # else "auto" never compares
        model.shift_reference_ = shift_reference(self.inputs, model.seed) if fitted else None
        model.fit_report_.calibration["new_source"] = report

    def record(self, chosen: StackerFit) -> FitRecord:
        """The fit's own record (the bundle keeps part of it): rows, folds, OOF scores, the chosen stacker and
        the encoder decisions; the run report (``pipelines.model.run.build_report``) puts data, test, config and
        versions around it. Built here because only the fit holds every candidate's OOF and its plan."""
        inputs, model = self.inputs, self.model
        return FitRecord(
            rows={"train": len(inputs.train)},
            label_counts={c: int((inputs.y == i).sum()) for i, c in enumerate(CLASS_NAMES)},
            folds={"n_folds": model.n_folds, "rows_per_fold": np.bincount(inputs.folds).tolist()},
            features={
                "groups": list(feature_groups_of(model)),
                "sources": chosen.sources,
                "n_columns": inputs.X.shape[1],
            },
            oof=oof_metrics(inputs, self.candidates),
            chosen={"sources": chosen.sources, "oof_log_loss": chosen.log_loss(inputs.y)},
            chosen_description=chosen.description,
            calibration={"kind": chosen.model.calibrator.kind, "fitted": chosen.model.calibrator.to_dict()},
            stacker={"best_iterations": chosen.model.metadata["best_iterations"], "params": self.stacker.params},
            plan=self.plan.to_dict(),
            timings={**self.timer.seconds, "total": round(time.monotonic() - self.started, 3)},
            **training_sources_report(inputs, chosen),
        )


def candidate_name(fit: StackerFit) -> str:
    return "features" + ("+" + "+".join(fit.sources) if fit.sources else "")


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
