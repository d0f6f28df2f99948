"""A whole run (:func:`fit_predict`): fit :class:`pipelines.model.estimator.ArenaPreferenceModel` on the
training battles, score the test battles, write submission, model bundle and report as one set swapped in
at the end (:class:`Publisher`). The estimator only fits; the test set, the time budget, the run
directory and the report are this module's.

Every argument and input is checked before the fit (the command's ``pipelines.preflight``, the loaders, the test
labels matched to the test ids, :func:`check_new_source_possible`), so a run fails before its work or not at all; a
failure while writing leaves the previous run's set as it was. With a time budget (Kaggle) the set is also published
as soon as the features-only stacker is fitted (each step of ``ArenaPreferenceModel.fit_steps``) and again whenever
a better stacker replaces it, so a failing or slow encoder never loses the run. The fit is told how many test rows
will be scored (``test_rows``) so that the encoders' plan reserves that time; as a safety net, an encoder's fold
models score the test rows only if a timed probe projects that they fit the time left
(``pipelines.model.scoring.score``, as ``predict`` and the notebook score a bundle), else the set already published
stays: the run publishes the last model whose test scoring fit, and its report says why (``plan`` ->
``not_published``).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.bundle.decisions import CHOSEN, prior_submission, submitted_stacker
from pipelines.config.run_config import RunConfig
from pipelines.data.battles import ParseReport, load_battles
from pipelines.data.run_sources import load_run_train, new_source_holdouts, scored_mask
from pipelines.data.tables import read_labels
from pipelines.model.battles_input import as_battles
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.model.prior_guard import decide, prior_probabilities
from pipelines.model.scoring import EncoderScoring, score
from pipelines.reports.holdout import evaluate_test_labels, labels_for
from pipelines.reports.report import write_report
from pipelines.runtime.errors import UserError
from pipelines.runtime.run_budget import NO_BUDGET, RunBudget
from pipelines.runtime.run_dir import atomic_write_text, staged_outputs
from pipelines.runtime.stage_timer import StageTimer
from pipelines.runtime.submission import save_predictions, write_submission
from pipelines.stages.fold_feature_kinds import setting_names
from pipelines.stages.stacker_inputs import cache_dir_of
from stacking.model import library_versions
from stacking.source_holdout import MIN_SOURCE_ROWS

log = logging.getLogger("arena_pref")


def estimator_of(config: RunConfig) -> ArenaPreferenceModel:
    """The estimator a run config describes (its files and output paths stay with the run)."""
    return ArenaPreferenceModel(
        n_folds=config.n_folds,
        seed=config.seed,
        feature_groups=tuple(config.features.groups),
        **{name: getattr(config.features, name) for name in setting_names()},  # every fold-feature kind's settings
        stacker=config.stacker,
        encoders=tuple(config.encoders),
        extra_sources=dict(config.extra_sources),
        n_jobs=config.features.n_jobs,
        cache_dir=cache_dir_of(config),
        work_dir=config.out,
        progress=config.progress,
        test_calibration=config.test_calibration,
    )


class Publisher:
    """Writes a run's submission, model bundle, OOF predictions and report as one set: staged next to
    their targets, then swapped in together (``pipelines.runtime.run_dir.staged_outputs``), so the run directory
    never holds a submission of one model beside the bundle or report of another. The test rows are
    scored here, with the model as it is now; the submission is what the prior guard decided, and the
    bundle records that decision (``decisions``).

    With a ``budget`` deadline (on its clock), once a set is published, an encoder's fold models score the test rows
    only if a timed probe projects that they fit the time left; when they do not, the model is not published:
    the set already written stays (the last model whose test scoring fit) and its report says why."""

    def __init__(
        self,
        config: RunConfig,
        train: pd.DataFrame,
        test: pd.DataFrame,
        submission_path: Path,
        report_of: Callable[[ArenaPreferenceModel, np.ndarray, dict], dict],
        timer: StageTimer,
        *,
        budget: RunBudget = NO_BUDGET,
        run_plan: dict | None = None,
    ):
        self.config, self.train, self.test, self.submission_path = config, train, test, submission_path
        self.report_of, self.timer, self.budget = report_of, timer, budget
        self.run_plan = run_plan if run_plan is not None else {}
        # one fit's fold models score the test rows once; under the deadline each encoder's probe-and-project record
        self.encoders = EncoderScoring(clock=budget.clock, progress=config.progress)
        self.test_scoring: dict[str, dict] = self.encoders.records
        self.published: dict | None = None  # the report of the set now in the run directory

    def targets(self) -> dict[str, Path]:
        out = self.config.out
        return {
            "submission": self.submission_path,
            "model": out / "model",
            "oof_stacker.csv": out / "oof_stacker.csv",
            "report.json": out / "report.json",
            "report.md": out / "report.md",
        }

    def test_proba(self, model: ArenaPreferenceModel) -> tuple[np.ndarray, dict] | None:
        """The chosen stacker's probabilities for the test rows, and the test calibration they resolved to
        (recorded in the report and the bundle); None when an encoder's test scoring does not fit the deadline.
        The prior guard is decided on these afterwards: "chosen", never an earlier verdict. Under a deadline, once
        a set is published to fall back on, each encoder is probed and projected first."""
        deadline = self.budget.deadline if self.published is not None else None
        with self.timer.stage("predict"):
            proba, decision = score(
                model,
                self.test,
                stacker=CHOSEN,
                test_calibration=self.config.test_calibration,
                deadline=deadline,
                sources=test_sources(self.config),
                encoders=self.encoders,
            )
        return None if proba is None else (proba, dict(decision["test_choice"]))

    def publish(self, model: ArenaPreferenceModel) -> dict:
        scored = self.test_proba(model)
        if scored is None:
            return self._keep_published(model)
        test_proba, test_choice = scored
        report = self.report_of(model, test_proba, test_choice)
        guard = decide(
            model.oof_log_loss_, report["oof"]["class prior"]["log_loss"], self.config.allow_worse_than_prior
        )
        report["prior_guard"] = guard.as_dict()
        # a stacker worse than knowing nothing must not reach the leaderboard
        proba = scored_prior(self.train, len(self.test)) if guard.use_prior else None
        submitted = submitted_stacker(model) if proba is None else prior_submission(proba[0])
        report["submitted"] = submitted
        with self.timer.stage("write"), staged_outputs(self.config.out, self.targets()) as stage:
            write_submission(self.test["id"], test_proba if proba is None else proba, stage.path("submission"))
            decisions = {"prior_guard": guard.as_dict(), "submitted": submitted}
            model.save(stage.path("model"), decisions=decisions, test_choice=test_choice)
            save_predictions(
                self.train["id"],
                model.oof_proba_,
                stage.path("oof_stacker.csv"),
                {"fold": model.folds_, "label": self.train["label"]},
            )
            write_report(report, stage.path("report.json").parent, names=stage)
        log.info("wrote %s, model and report (%s)", self.submission_path, submitted["description"])
        self.published = report
        return report

    def _keep_published(self, model: ArenaPreferenceModel) -> dict:
        """``model``'s test scoring does not fit the time left: the published set (submission, bundle, OOF of the
        last model whose test scoring fit) stays; its report gains the encoder runs and why ``model`` was not
        published (``plan`` -> ``not_published``, ``test_scoring``), and is rewritten."""
        assert self.published is not None  # only under a deadline once a set is written (test_proba)
        unscored = [n for n in model.encoder_names_ if n not in self.encoders.proba]
        reason = "; ".join(f"{n}: {self.test_scoring[n]['decision']}" for n in unscored)
        fit_plan = copy.deepcopy(model.fit_report_.plan)
        for name, enc_plan in (fit_plan.get("encoder_runs") or {}).items():
            enc_plan["used_in_submission"] = name in self.published["chosen"]["sources"]
        fit_plan["encoders_used"] = [s for s in self.published["chosen"]["sources"] if s in model.encoder_models_]
        if self.run_plan.get("submission_writes"):
            self.run_plan["submission_writes"][-1]["written"] = False  # the entry the run made for ``model``
        not_published = {
            "stacker": model.chosen_stacker_,
            "sources": model.fit_report_.chosen["sources"],
            "oof_log_loss": round(model.oof_log_loss_, 5),
            "reason": f"scoring the {len(self.test)} test rows would not fit the time left ({reason})",
        }
        report = {**self.published, "plan": {**self.published["plan"], **fit_plan, **self.run_plan}}
        report["plan"]["not_published"] = not_published
        with self.timer.stage("write"), staged_outputs(self.config.out, self.targets()) as stage:
            write_report(report, stage.path("report.json").parent, names=stage)
        log.warning(
            "model with %s not published: %s; the submission of %s stays",
            not_published["sources"],
            not_published["reason"],
            self.published["submitted"]["description"],
        )
        self.published = report
        return report


def test_sources(config: RunConfig) -> dict[str, str]:
    """{extra source: its test probabilities file} (``--source NAME=OOF,TEST``): the model reads them to
    score the test rows, as it read the OOF files to fit."""
    return {name: files.test for name, files in config.extra_sources.items()}


def build_report(
    config: RunConfig,
    model: ArenaPreferenceModel,
    test_rows: int,
    parses: tuple[ParseReport, ParseReport],
    submission_path: Path,
    timer: StageTimer,
    started: float,
    plan: dict,
    test_choice: dict,
) -> dict:
    """``report.json``: the fit's record (:class:`pipelines.bundle.fit_record.FitRecord`) with the run's data,
    test calibration, plan, config, timings and versions around it."""
    fit = model.fit_report_
    several = {"training_sources": fit.training_sources, "oof_per_source": fit.oof_per_source}
    return {
        "data": {
            "train": {
                "path": str(config.train_path),
                "rows": fit.rows["train"],
                "parse": parses[0].as_dict(),
                "label_counts": fit.label_counts,
            },
            "test": {"path": str(config.test_path), "rows": test_rows, "parse": parses[1].as_dict()},
        },
        "folds": fit.folds,
        "features": fit.features,
        "oof": fit.oof,
        "chosen": fit.chosen,
        "calibration": {
            "kind": config.stacker.calibration,
            "fitted": fit.calibration["fitted"],
            "new_source": fit.calibration.get("new_source"),
            "test_choice": test_choice,
        },
        "stacker": fit.stacker,
        "plan": {**fit.plan, **plan},
        "submission": str(submission_path),
        "config": config.to_dict(),
        "timings": {**timer.seconds, **fit.timings, "total": round(time.monotonic() - started, 3)},
        # the process's high-water mark at the end of each stage (not the stage's own use); feature workers excluded
        "peak_rss_mib": {**timer.peak_rss_mib, **(fit.peak_rss_mib or {})},
        "versions": library_versions(),
        **{k: v for k, v in several.items() if v is not None},  # several training sources only
    }


def scored_prior(train: pd.DataFrame, n_rows: int) -> np.ndarray:
    """The class prior of the scored (primary) rows, the one the prior guard compares with: tie-less
    extra sources only train, and their missing ties must not pull the fallback's P(tie) down."""
    return prior_probabilities(train["label"].to_numpy()[scored_mask(train)], n_rows)


def holdout_scores(train: pd.DataFrame, test_proba: np.ndarray, test_y: np.ndarray) -> dict:
    return evaluate_test_labels(
        test_y,
        {
            "class prior (train)": scored_prior(train, len(test_proba)),
            "stacker (calibrated)": test_proba,
        },
    )


def fit_predict(
    train: pd.DataFrame,
    test: pd.DataFrame,
    config: RunConfig,
    *,
    submission_path: Path | None = None,
    parses: tuple[ParseReport, ParseReport] | None = None,
    test_y: np.ndarray | None = None,
    started: float | None = None,
    timer: StageTimer | None = None,
) -> dict:
    """Fit ``config``'s estimator on ``train`` (it never sees ``test``), score ``test``, and write submission,
    model bundle, OOF predictions and report into ``config.out``; the report.

    Battles frames, parsed or in Kaggle's schema. With a time budget (Kaggle) the set is also published each
    time the model changes (the features-only stacker first), so a run stopped by the platform still leaves a
    consistent set. ``test_y``: evaluation only, scored after prediction (``report["holdout"]``)."""
    started = time.monotonic() if started is None else started
    timer = timer or StageTimer()
    config.out.mkdir(parents=True, exist_ok=True)
    submission_path = submission_path or Path(config.submission_path or config.out / "submission.csv")
    (train, train_parse), (test, test_parse) = as_battles(train, "train", True), as_battles(test, "test", False)
    parses = parses or (train_parse, test_parse)
    hours = config.time_budget_hours
    budget = RunBudget.from_hours(hours, started, test_rows=len(test), clock=time.monotonic)
    plan: dict = {"time_budget_hours": hours, "submission_writes": []}

    def report_of(model: ArenaPreferenceModel, test_proba: np.ndarray, test_choice: dict) -> dict:
        report = build_report(config, model, len(test), parses, submission_path, timer, started, plan, test_choice)
        if test_y is not None:
            report["holdout"] = holdout_scores(train, test_proba, test_y)
        return report

    publish = Publisher(config, train, test, submission_path, report_of, timer, budget=budget, run_plan=plan)
    if budget.deadline is not None:
        plan["test_scoring"] = publish.test_scoring  # each encoder's probe-and-project record
    model, chosen = estimator_of(config), None
    steps = model.fit_steps(train, budget=budget)
    for step in steps:
        if step.chosen_stacker_ != chosen:  # a new submission: when, and how good
            chosen = step.chosen_stacker_
            write = {"sources": step.fit_report_.chosen["sources"], "oof_log_loss": round(step.oof_log_loss_, 5)}
            plan["submission_writes"].append({**write, "at_s": round(time.monotonic() - started, 1)})
        if budget.deadline is not None:
            publish.publish(step)
    if budget.deadline is not None:
        plan["seconds_left_at_end"] = round(budget.deadline - budget.clock(), 1)
    report = publish.publish(model)
    write_timings(config.out / "timings.json", report, timer)
    log.info(
        "OOF log loss: prior %.4f, chosen stacker %.4f (%s)",
        report["oof"]["class prior"]["log_loss"],
        report["chosen"]["oof_log_loss"],
        report["submitted"]["description"],
    )
    return report


def write_timings(path: Path, report: dict, timer: StageTimer) -> None:
    """Every stage's seconds and peak memory, the last write included (the report is written inside that
    stage, so it cannot hold its own time): ``DIR/timings.json``."""
    stages = {**report["timings"], "write": timer.seconds.get("write", 0.0)}
    stages.pop("total", None)
    memory = {**report.get("peak_rss_mib", {}), "write": timer.peak_rss_mib.get("write")}
    body = {"seconds": stages, "peak_rss_mib": memory, "total_s": round(sum(stages.values()), 3)}
    atomic_write_text(path, json.dumps(body, indent=2) + "\n")


class NewSourceCalibrationError(UserError, ValueError):
    """``test_calibration="new-source"`` on training rows no new-source calibrator can be fitted from; ``reason``
    says why (the command puts its flag before it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"test_calibration='new-source': {reason}")
        self.reason = reason


def check_new_source_possible(test_calibration: str, train: pd.DataFrame) -> None:
    """``new-source`` asks for a calibrator the fit makes only from two or more tie-bearing training sources of
    >= ``MIN_SOURCE_ROWS`` rows: refused on the loaded training rows, before the fit."""
    if test_calibration != "new-source":
        return
    holdouts = new_source_holdouts(train)
    if len(holdouts) < 2:
        raise NewSourceCalibrationError(
            f"no new-source calibrator can be fitted: it needs two or more training sources with ties and"
            f" >= {MIN_SOURCE_ROWS} rows each, these files have {len(holdouts)} {holdouts}; use auto or in-source"
        )


def run(config: RunConfig, submission_path: Path | None = None, test_labels: Path | None = None) -> dict:
    """Train on ``config.train_path``, predict ``config.test_path`` (:func:`fit_predict`); the report.

    Every file is read and checked before the fit, so a bad file stops the run before its work."""
    started, timer = time.monotonic(), StageTimer()
    with timer.stage("load"):
        train, train_parse = load_run_train(config.train_path, config.sources)
        test, test_parse = load_battles(config.test_path, labelled=False)
        # evaluation only, never seen by the fit; read now so that a bad file stops the run before the work
        test_y = None if test_labels is None else labels_for(read_labels(test_labels), test["id"], test_labels)
    check_new_source_possible(config.test_calibration, train)  # on the rows just read, before any feature
    return fit_predict(
        train,
        test,
        config,
        submission_path=submission_path,
        parses=(train_parse, test_parse),
        test_y=test_y,
        started=started,
        timer=timer,
    )
