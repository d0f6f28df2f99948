"""A whole run: load the files -> fit :class:`pipelines.model.estimator.ArenaPreferenceModel` -> write
submission, model bundle and report, as one set swapped in at the end (:class:`Publisher`).

Every argument and input is checked before the fit (``pipelines.stages.preflight``, the loaders, the test
labels matched to the test ids), so a run fails before its work or not at all; a failure while writing
leaves the previous run's set as it was. With a time budget (Kaggle) the set is also published as soon
as the features-only stacker is fitted (the estimator's ``on_stacker`` hook) and again whenever a better
stacker replaces it, so a failing or slow encoder never loses the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.battles import ParseReport, load_battles
from pipelines.data.run_sources import load_run_train, scored_mask
from pipelines.data.tables import read_labels
from pipelines.model.bundle_decisions import prior_submission
from pipelines.model.estimator import ArenaPreferenceModel
from pipelines.reports.holdout import evaluate_test_labels, labels_for
from pipelines.reports.report import StageTimer, write_report
from pipelines.runtime.run_dir import staged_outputs
from pipelines.runtime.submission import save_predictions, write_submission
from pipelines.stages.config import RunConfig
from pipelines.stages.prior_guard import decide, prior_probabilities
from pipelines.stages.stacker_inputs import cache_dir_of
from stacking.model import library_versions

log = logging.getLogger("arena_pref")


def estimator_of(config: RunConfig) -> ArenaPreferenceModel:
    """The estimator a run config describes (its files and output paths stay with the run)."""
    return ArenaPreferenceModel(
        n_folds=config.n_folds,
        seed=config.seed,
        feature_groups=tuple(config.features.groups),
        tfidf=config.features.tfidf,
        embedder=config.features.embedder,
        embedder_max_length=config.features.embedder_max_length,
        stacker=config.stacker,
        encoders=tuple(config.encoders),
        extra_sources=dict(config.extra_sources),
        n_jobs=config.features.n_jobs,
        cache_dir=cache_dir_of(config),
        work_dir=config.out,
        time_budget_hours=config.time_budget_hours,
        progress=config.progress,
        calibration=config.test_calibration,
    )


class Publisher:
    """Writes a run's submission, model bundle, OOF predictions and report as one set: staged next to
    their targets, then swapped in together (``pipelines.runtime.run_dir.staged_outputs``), so the run directory
    never holds a submission of one model beside the bundle or report of another. The submission is what
    the prior guard decided, and the bundle records that decision (``decisions``)."""

    def __init__(
        self,
        config: RunConfig,
        train: pd.DataFrame,
        test: pd.DataFrame,
        submission_path: Path,
        report_of: Callable[[ArenaPreferenceModel], dict],
    ):
        self.config, self.train, self.test, self.submission_path = config, train, test, submission_path
        self.report_of = report_of

    def targets(self) -> dict[str, Path]:
        out = self.config.out
        return {
            "submission": self.submission_path,
            "model": out / "model",
            "oof_stacker.csv": out / "oof_stacker.csv",
            "report.json": out / "report.json",
            "report.md": out / "report.md",
        }

    def __call__(self, model: ArenaPreferenceModel) -> None:
        self.publish(model)

    def publish(self, model: ArenaPreferenceModel) -> dict:
        assert model.test_proba_ is not None  # fitted with this test frame
        report = self.report_of(model)
        guard = decide(
            model.oof_log_loss_, report["oof"]["class prior"]["log_loss"], self.config.allow_worse_than_prior
        )
        report["prior_guard"] = guard.as_dict()
        # a stacker worse than knowing nothing must not reach the leaderboard
        proba = scored_prior(self.train, len(self.test)) if guard.use_prior else None
        submitted = submitted_record(None if proba is None else proba[0], model)
        report["submitted"] = submitted
        with staged_outputs(self.config.out, self.targets()) as stage:
            write_submission(self.test["id"], model.test_proba_ if proba is None else proba, stage.path("submission"))
            model.save(stage.path("model"), decisions={"prior_guard": guard.as_dict(), "submitted": submitted})
            save_predictions(
                self.train["id"],
                model.oof_proba_,
                stage.path("oof_stacker.csv"),
                {"fold": model.folds_, "label": self.train["label"]},
            )
            write_report(report, stage.path("report.json").parent, names=stage)
        log.info("wrote %s, model and report (%s)", self.submission_path, submitted["description"])
        return report


def submitted_record(prior: np.ndarray | None, model: ArenaPreferenceModel) -> dict:
    """What the run submitted, as the bundle and the report record it: ``predict`` repeats it."""
    if prior is not None:
        return prior_submission(prior)
    return {
        "kind": "stacker",
        "stacker": model.chosen_stacker_,
        "description": f"stacker over {model.fit_report_['chosen_description']}",
    }


def build_report(
    config: RunConfig,
    model: ArenaPreferenceModel,
    parses: tuple[ParseReport, ParseReport],
    submission_path: Path,
    timer: StageTimer,
    started: float,
) -> dict:
    fit = model.fit_report_
    return {
        "data": {
            "train": {
                "path": str(config.train_path),
                "rows": fit["rows"]["train"],
                "parse": parses[0].as_dict(),
                "label_counts": fit["label_counts"],
            },
            "test": {"path": str(config.test_path), "rows": fit["rows"]["test"], "parse": parses[1].as_dict()},
        },
        "folds": fit["folds"],
        "features": fit["features"],
        "oof": fit["oof"],
        "chosen": fit["chosen"],
        "calibration": {
            "kind": config.stacker.calibration,
            "fitted": fit["calibration"]["fitted"],
            "new_source": fit["calibration"].get("new_source"),
            "test_choice": fit["calibration"].get("test_choice"),
        },
        "stacker": fit["stacker"],
        "plan": fit["plan"],
        "submission": str(submission_path),
        "config": config.to_dict(),
        "timings": {**timer.seconds, **fit["timings"], "total": round(time.monotonic() - started, 3)},
        "versions": library_versions(),
        **{k: fit[k] for k in ("training_sources", "oof_per_source") if k in fit},
    }


def scored_prior(train: pd.DataFrame, n_rows: int) -> np.ndarray:
    """The class prior of the scored (primary) rows, the one the prior guard compares with: tie-less
    extra sources only train, and their missing ties must not pull the fallback's P(tie) down."""
    return prior_probabilities(train["label"].to_numpy()[scored_mask(train)], n_rows)


def holdout_scores(train: pd.DataFrame, test: pd.DataFrame, model: ArenaPreferenceModel, test_y: np.ndarray) -> dict:
    assert model.test_proba_ is not None
    return evaluate_test_labels(
        test_y,
        {
            "class prior (train)": scored_prior(train, len(test)),
            "stacker (calibrated)": model.test_proba_,
        },
    )


def run(config: RunConfig, submission_path: Path | None = None, test_labels: Path | None = None) -> dict:
    """Train on ``config.train_path``, predict ``config.test_path``; write submission, model and report.

    They are published together once, at the end; with a time budget (Kaggle) also each time the chosen
    stacker changes, so a run stopped by the platform still leaves a consistent features-only set."""
    started = time.monotonic()
    config.out.mkdir(parents=True, exist_ok=True)
    submission_path = submission_path or Path(config.submission_path or config.out / "submission.csv")
    timer = StageTimer()
    with timer.stage("load"):
        train, train_parse = load_run_train(config.train_path, config.sources)
        test, test_parse = load_battles(config.test_path, labelled=False)
        # evaluation only, never seen by the fit; read now so that a bad file stops the run before the work
        test_y = None if test_labels is None else labels_for(read_labels(test_labels), test["id"], test_labels)

    def report_of(model: ArenaPreferenceModel) -> dict:
        report = build_report(config, model, (train_parse, test_parse), submission_path, timer, started)
        if test_y is not None:
            report["holdout"] = holdout_scores(train, test, model, test_y)
        return report

    publish = Publisher(config, train, test, submission_path, report_of)
    early = publish if config.time_budget_hours is not None else None
    model = estimator_of(config).fit(
        train, test=test, on_stacker=early, data_paths=(str(config.train_path), str(config.test_path))
    )
    report = publish.publish(model)
    log.info(
        "OOF log loss: prior %.4f, chosen stacker %.4f (%s)",
        report["oof"]["class prior"]["log_loss"],
        model.oof_log_loss_,
        model.fit_report_["chosen_description"],
    )
    return report
