"""A whole run in stages: load/featurise -> first stacker -> encoders -> second stacker -> choose -> report.

The features-only submission is written first; a stacker with encoder probabilities replaces it
only when its OOF log loss is better, so a failing or slow encoder never loses the run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.config import RunConfig
from pipelines.holdout import evaluate_test_labels
from pipelines.metrics import nested_prior, summarize
from pipelines.report import StageTimer, write_report
from pipelines.run_plan import RunPlan
from pipelines.stacker_inputs import StackerInputs, prepare_inputs
from pipelines.stacker_stage import StackerFit, fit_stacker, write_outputs
from stacking.model import library_versions

log = logging.getLogger("arena_pref")


@dataclass
class RunContext:
    """What every stage shares: settings, clock, stage timer and where files go."""

    config: RunConfig
    submission_path: Path
    started: float
    timer: StageTimer

    @property
    def deadline(self) -> float | None:
        hours = self.config.time_budget_hours
        return None if hours is None else self.started + hours * 3600

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def candidate_name(fit: StackerFit) -> str:
    return "features" + ("+" + "+".join(fit.sources) if fit.sources else "")


def first_stacker(ctx: RunContext, inputs: StackerInputs, plan: RunPlan) -> StackerFit:
    """The cheap submission: features (and any extra sources), written at once."""
    with ctx.timer.stage("stacker"):
        fit = fit_stacker(inputs, ctx.config, list(ctx.config.extra_sources))
    with ctx.timer.stage("write"):
        write_outputs(fit, inputs, ctx.config.out, ctx.submission_path)
    plan.record_write(fit, inputs.y, ctx.elapsed())
    return fit


def encoder_stage(ctx: RunContext, inputs: StackerInputs, plan: RunPlan) -> dict[str, tuple[Path, Path]]:
    """Fine-tune the encoders in the run's folds, leaving room for a second stacker fit and the writes."""
    from pipelines.encoder_stage import run_encoders

    reserve = 2 * (ctx.timer.seconds["stacker"] + ctx.timer.seconds["write"]) + 60
    encoder_deadline = None if ctx.deadline is None else ctx.deadline - reserve
    plan.encoder_deadline_s_from_start = None if encoder_deadline is None else round(encoder_deadline - ctx.started, 1)
    with ctx.timer.stage("encoders"):
        stage = run_encoders(inputs, ctx.config, encoder_deadline)
    plan.encoder_runs = stage.plans
    plan.encoders_finished = list(stage.finished)
    plan.encoders_used = []
    return stage.finished


def second_stacker(
    ctx: RunContext, inputs: StackerInputs, finished: dict[str, tuple[Path, Path]], plan: RunPlan
) -> StackerFit | None:
    """The stacker with the finished encoders' probabilities; None when there are none or it fails."""
    if not finished:
        return None
    try:  # the features-only submission is already on disk: a failure here must not lose the run
        for name, (oof_path, test_path) in finished.items():
            inputs.with_source(name, oof_path, test_path)
        with ctx.timer.stage("stacker (with encoders)"):
            return fit_stacker(inputs, ctx.config, [*ctx.config.extra_sources, *finished])
    except Exception as exc:  # noqa: BLE001 - reported, and the fallback stands
        log.exception("stacker with encoder sources failed; keeping the features-only submission")
        plan.encoder_stacker_error = f"{type(exc).__name__}: {exc}"
        return None


def choose(ctx: RunContext, inputs: StackerInputs, first: StackerFit, second: StackerFit, plan: RunPlan) -> StackerFit:
    """The second stacker replaces the written submission only when its OOF log loss is better."""
    if second.log_loss(inputs.y) >= first.log_loss(inputs.y):
        log.warning(
            "stacker with encoders (OOF %.4f) is not better than without (%.4f): keeping the features-only submission",
            second.log_loss(inputs.y),
            first.log_loss(inputs.y),
        )
        return first
    with ctx.timer.stage("write"):
        write_outputs(second, inputs, ctx.config.out, ctx.submission_path)
    plan.encoders_used = list(plan.encoders_finished or [])
    plan.record_write(second, inputs.y, ctx.elapsed())
    return second


def oof_metrics(inputs: StackerInputs, candidates: dict[str, StackerFit]) -> dict[str, dict]:
    """The class prior (nested) and each candidate's OOF log loss before and after calibration."""
    out = {"class prior": summarize(inputs.y, nested_prior(inputs.y, inputs.folds), inputs.folds)}
    for name, cand in candidates.items():
        suffix = "" if len(candidates) == 1 else f" [{name}]"
        out[f"stacker (uncalibrated){suffix}"] = summarize(inputs.y, cand.oof_raw, inputs.folds)
        out[f"stacker (calibrated){suffix}"] = summarize(inputs.y, cand.oof_cal, inputs.folds)
    return out


def build_report(
    ctx: RunContext, inputs: StackerInputs, candidates: dict[str, StackerFit], chosen: StackerFit, plan: RunPlan
) -> dict:
    config = ctx.config
    return {
        "data": {
            "train": {
                "path": str(config.train_path),
                "rows": len(inputs.train),
                "parse": inputs.train_parse.as_dict(),
                "label_counts": {c: int((inputs.y == i).sum()) for i, c in enumerate(("a", "b", "tie"))},
            },
            "test": {"path": str(config.test_path), "rows": len(inputs.test), "parse": inputs.test_parse.as_dict()},
        },
        "folds": {"n_folds": config.n_folds, "rows_per_fold": np.bincount(inputs.folds).tolist()},
        "features": {"groups": list(config.features.groups), "sources": chosen.sources, "n_columns": inputs.X.shape[1]},
        "oof": oof_metrics(inputs, candidates),
        "chosen": {"sources": chosen.sources, "oof_log_loss": chosen.log_loss(inputs.y)},
        "calibration": {"kind": config.stacker.calibration, "fitted": chosen.model.calibrator.to_dict()},
        "stacker": {"best_iterations": chosen.model.metadata["best_iterations"], "params": config.stacker.params},
        "plan": plan.to_dict(),
        "submission": str(ctx.submission_path),
        "config": config.to_dict(),
        "timings": {**ctx.timer.seconds, "total": round(ctx.elapsed(), 3)},
        "versions": library_versions(),
    }


def holdout_scores(inputs: StackerInputs, chosen: StackerFit, test_labels: Path) -> dict:
    counts = np.bincount(inputs.y, minlength=3) + 1.0
    return evaluate_test_labels(
        test_labels,
        inputs.test["id"],
        {
            "class prior (train)": np.tile(counts / counts.sum(), (len(inputs.test), 1)),
            "stacker (calibrated)": chosen.test,
        },
    )


def run(config: RunConfig, submission_path: Path | None = None, test_labels: Path | None = None) -> dict:
    """Train on ``config.train_path``, predict ``config.test_path``; write submission, model and report."""
    config.out.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        config,
        submission_path or Path(config.submission_path or config.out / "submission.csv"),
        time.monotonic(),
        StageTimer(),
    )
    inputs = prepare_inputs(config, ctx.timer)
    log.info("train %d rows, test %d rows, %d features", len(inputs.train), len(inputs.test), inputs.X.shape[1])
    plan = RunPlan(config.time_budget_hours, [e.resolved_name for e in config.encoders])
    first = first_stacker(ctx, inputs, plan)
    candidates, chosen = {candidate_name(first): first}, first
    if config.encoders:
        second = second_stacker(ctx, inputs, encoder_stage(ctx, inputs, plan), plan)
        if second is not None:
            candidates[candidate_name(second)] = second
            chosen = choose(ctx, inputs, first, second, plan)
        for name, enc_plan in (plan.encoder_runs or {}).items():
            enc_plan["used_in_submission"] = name in (plan.encoders_used or [])
    if ctx.deadline is not None:
        plan.seconds_left_at_end = round(ctx.deadline - time.monotonic(), 1)
    report = build_report(ctx, inputs, candidates, chosen, plan)
    if test_labels is not None:
        report["holdout"] = holdout_scores(inputs, chosen, test_labels)
    json_path, md_path = write_report(report, config.out)
    log.info(
        "OOF log loss: prior %.4f, chosen stacker %.4f (%s)",
        report["oof"]["class prior"]["log_loss"],
        chosen.log_loss(inputs.y),
        chosen.description,
    )
    log.info("wrote %s, %s", json_path, md_path)
    return report
