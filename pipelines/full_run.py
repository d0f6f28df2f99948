"""Train on train.csv, predict test.csv, write a calibrated submission.csv and a report.

python -m pipelines.full_run                       # Kaggle data if present, else the bundled sample
python -m pipelines.full_run --train T.csv --test S.csv --out DIR [--encoder MODEL_DIR] [--params best.json]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from arena_schema import CLASS_COLUMNS
from pipelines.cli import add_data_args, run_config_from_data_args
from pipelines.config import EncoderConfig, RunConfig, load_params_file
from pipelines.metrics import multiclass_log_loss, nested_prior, summarize
from pipelines.report import StageTimer, write_report
from pipelines.stacker_inputs import StackerInputs, prepare_inputs
from pipelines.submission import write_submission
from stacking.calibration import cross_calibrate
from stacking.lgbm import cross_fit
from stacking.model import StackerModel, library_versions

log = logging.getLogger("arena_pref")
KAGGLE_TIME_BUDGET_HOURS = 8.5


@dataclass
class StackerFit:
    """One fitted stacker: uncalibrated and calibrated OOF, calibrated test probabilities, the model."""

    oof_raw: np.ndarray
    oof_cal: np.ndarray
    test: np.ndarray
    model: StackerModel
    sources: list[str]

    def log_loss(self, y: np.ndarray) -> float:
        return multiclass_log_loss(y, self.oof_cal)


def fit_stacker(inputs: StackerInputs, config: RunConfig, sources: list[str]) -> StackerFit:
    """Cross-fitted stacker followed by nested calibration."""
    sc = config.stacker
    bar = tqdm(total=len(np.unique(inputs.folds)), desc="stacker folds", disable=not config.progress)
    result = cross_fit(
        inputs.X,
        inputs.y,
        inputs.folds,
        inputs.groups,
        inputs.X_test,
        params=sc.params,
        seed=config.seed,
        swap_augment=sc.swap_augment,
        progress=bar,
        num_boost_round=sc.num_boost_round,
        early_stopping_rounds=sc.early_stopping_rounds,
        inner_valid_fraction=sc.inner_valid_fraction,
    )
    bar.close()
    oof_cal, calibrator = cross_calibrate(result.oof, inputs.y, inputs.folds, sc.calibration)
    model = StackerModel.from_fold_models(
        result.models,
        calibrator,
        feature_config={"groups": list(config.features.groups), "sources": list(sources)},
        metadata={"best_iterations": [m.best_iteration_ for m in result.models], "seed": config.seed},
    )
    return StackerFit(result.oof, oof_cal, calibrator.predict_proba(result.test), model, list(sources))


def write_outputs(fit: StackerFit, inputs: StackerInputs, out: Path, submission_path: Path) -> None:
    """Submission (validated), model directory and OOF predictions of one fitted stacker."""
    write_submission(inputs.test["id"], fit.test, submission_path)
    fit.model.save(out / "model")
    save_predictions(
        inputs.train["id"], fit.oof_cal, out / "oof_stacker.csv", {"fold": inputs.folds, "label": inputs.y}
    )
    log.info(
        "wrote %s (stacker over %s)",
        submission_path,
        "features + " + ", ".join(fit.sources) if fit.sources else "features only",
    )


def save_predictions(ids: pd.Series, proba: np.ndarray, path: Path, extra: dict | None = None) -> None:
    frame = pd.DataFrame(proba, columns=list(CLASS_COLUMNS))
    frame.insert(0, "id", ids.astype(str).to_numpy())
    for key, values in (extra or {}).items():
        frame[key] = values
    frame.to_csv(path, index=False)


def evaluate_test_labels(labels_path: Path, ids: pd.Series, proba: dict[str, np.ndarray]) -> dict:
    """Score test predictions against a labels file (sample_submission schema), read only now."""
    answers, _ = load_battles_labels(labels_path)
    order = answers.set_index("id").reindex(ids.astype(str))
    if order["label"].isna().any():
        raise ValueError(f"{labels_path}: no label for some test ids")
    y = order["label"].to_numpy(dtype=int)
    single_fold = np.zeros(len(y), dtype=int)
    return {name: summarize(y, p, single_fold) for name, p in proba.items()}


def load_battles_labels(path: Path) -> tuple[pd.DataFrame, None]:
    frame = pd.read_csv(path, dtype={"id": str})
    missing = [c for c in ("id", *CLASS_COLUMNS) if c not in frame]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    values = frame[list(CLASS_COLUMNS)].to_numpy()
    if not np.isin(values, [0, 1]).all() or (values.sum(axis=1) != 1).any():
        bad = int(np.flatnonzero(~np.isin(values, [0, 1]).all(axis=1) | (values.sum(axis=1) != 1))[0])
        raise ValueError(f"{path}: row {bad + 1}: labels are not one-hot")
    return pd.DataFrame({"id": frame["id"], "label": values.argmax(axis=1)}), None


def run(config: RunConfig, submission_path: Path | None = None, test_labels: Path | None = None) -> dict:
    started = time.monotonic()
    deadline = None if config.time_budget_hours is None else started + config.time_budget_hours * 3600
    timer = StageTimer()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    submission_path = submission_path or Path(config.submission_path or out / "submission.csv")
    inputs = prepare_inputs(config, timer)
    log.info("train %d rows, test %d rows, %d features", len(inputs.train), len(inputs.test), inputs.X.shape[1])

    # first a submission from what is cheap; an encoder run replaces it only if it is better
    with timer.stage("stacker"):
        fit = fit_stacker(inputs, config, list(config.extra_sources))
    with timer.stage("write"):
        write_outputs(fit, inputs, out, submission_path)
    candidates = {"features" + ("+" + "+".join(fit.sources) if fit.sources else ""): fit}
    chosen = fit

    plan = {
        "time_budget_hours": config.time_budget_hours,
        "encoders": [e.resolved_name for e in config.encoders],
        "submission_writes": [
            {
                "sources": fit.sources,
                "oof_log_loss": round(fit.log_loss(inputs.y), 5),
                "at_s": round(time.monotonic() - started, 1),
            }
        ],
    }
    if config.encoders:
        from pipelines.encoder_stage import run_encoders

        # keep room after the encoders for a second stacker fit and the writes
        reserve = 2 * (timer.seconds["stacker"] + timer.seconds["write"]) + 60
        encoder_deadline = None if deadline is None else deadline - reserve
        plan["encoder_deadline_s_from_start"] = None if deadline is None else round(encoder_deadline - started, 1)
        with timer.stage("encoders"):
            stage = run_encoders(inputs, config, encoder_deadline)
        finished = stage.finished
        plan["encoder_runs"] = stage.plans
        plan["encoders_finished"] = list(finished)
        plan["encoders_used"] = []
        with_enc = None
        if finished:
            try:  # the features-only submission is already on disk: a failure here must not lose the run
                for name, (oof_path, test_path) in finished.items():
                    inputs.with_source(name, oof_path, test_path)
                with timer.stage("stacker (with encoders)"):
                    with_enc = fit_stacker(inputs, config, [*config.extra_sources, *finished])
            except Exception as exc:  # noqa: BLE001 - reported, and the fallback stands
                log.exception("stacker with encoder sources failed; keeping the features-only submission")
                plan["encoder_stacker_error"] = f"{type(exc).__name__}: {exc}"
        if with_enc is not None:
            candidates["features+" + "+".join(with_enc.sources)] = with_enc
            if with_enc.log_loss(inputs.y) < fit.log_loss(inputs.y):
                with timer.stage("write"):
                    write_outputs(with_enc, inputs, out, submission_path)
                chosen = with_enc
                plan["encoders_used"] = list(finished)
                plan["submission_writes"].append(
                    {
                        "sources": with_enc.sources,
                        "oof_log_loss": round(with_enc.log_loss(inputs.y), 5),
                        "at_s": round(time.monotonic() - started, 1),
                    }
                )
            else:
                log.warning(
                    "stacker with encoders (OOF %.4f) is not better than without (%.4f): keeping the "
                    "features-only submission",
                    with_enc.log_loss(inputs.y),
                    fit.log_loss(inputs.y),
                )
        for name, enc_plan in stage.plans.items():
            enc_plan["used_in_submission"] = name in plan["encoders_used"]
    if deadline is not None:
        plan["seconds_left_at_end"] = round(deadline - time.monotonic(), 1)
    prior = nested_prior(inputs.y, inputs.folds)

    oof_metrics = {"class prior": summarize(inputs.y, prior, inputs.folds)}
    for name, cand in candidates.items():
        suffix = "" if len(candidates) == 1 else f" [{name}]"
        oof_metrics[f"stacker (uncalibrated){suffix}"] = summarize(inputs.y, cand.oof_raw, inputs.folds)
        oof_metrics[f"stacker (calibrated){suffix}"] = summarize(inputs.y, cand.oof_cal, inputs.folds)
    report = {
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
        "oof": oof_metrics,
        "chosen": {"sources": chosen.sources, "oof_log_loss": chosen.log_loss(inputs.y)},
        "calibration": {"kind": config.stacker.calibration, "fitted": chosen.model.calibrator.to_dict()},
        "stacker": {"best_iterations": chosen.model.metadata["best_iterations"], "params": config.stacker.params},
        "plan": plan,
        "submission": str(submission_path),
        "config": config.to_dict(),
        "timings": {**timer.seconds, "total": round(time.monotonic() - started, 3)},
        "versions": library_versions(),
    }
    if test_labels is not None:
        counts = np.bincount(inputs.y, minlength=3) + 1.0
        report["holdout"] = evaluate_test_labels(
            test_labels,
            inputs.test["id"],
            {
                "class prior (train)": np.tile(counts / counts.sum(), (len(inputs.test), 1)),
                "stacker (calibrated)": chosen.test,
            },
        )
    json_path, md_path = write_report(report, out)
    log.info(
        "OOF log loss: prior %.4f, chosen stacker %.4f (%s)",
        oof_metrics["class prior"]["log_loss"],
        chosen.log_loss(inputs.y),
        "features + " + ", ".join(chosen.sources) if chosen.sources else "features only",
    )
    log.info("wrote %s, %s", json_path, md_path)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.full_run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_args(p)
    p.add_argument(
        "--submission", help="submission path (default <out>/submission.csv; /kaggle/working/submission.csv)"
    )
    p.add_argument("--params", help="best-params JSON from pipelines.tune")
    p.add_argument("--calibration", choices=["none", "temperature", "vector"])
    p.add_argument(
        "--encoder",
        action="append",
        default=[],
        metavar="MODEL_DIR",
        help="fine-tune this local Hugging Face model in the same folds (repeatable)",
    )
    p.add_argument("--encoder-max-length", type=int)
    p.add_argument("--encoder-epochs", type=float)
    p.add_argument("--encoder-batch-size", type=int)
    p.add_argument("--encoder-max-steps", type=int)
    p.add_argument("--encoder-max-train-rows", type=int)
    p.add_argument(
        "--encoder-probe-steps",
        type=int,
        help="with a time budget: training steps timed before fold 0 to plan max_length (0: off)",
    )
    p.add_argument(
        "--encoder-min-max-length",
        type=int,
        help="with a time budget: max_length is never shortened below this (default 128)",
    )
    p.add_argument(
        "--test-labels", help="labels for test (sample_submission schema): scored after prediction, for evaluation only"
    )
    p.add_argument(
        "--time-budget-hours",
        type=float,
        help="budget for the whole run (default: none; 8.5 on Kaggle): the features-only submission is "
        "written first; encoders are planned against the rest (shorter max_length, fewer folds "
        "scoring test, or left out) and replace it only when better",
    )
    return p


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, Path]:
    config, paths = run_config_from_data_args(args)
    config.time_budget_hours = (
        args.time_budget_hours
        if args.time_budget_hours is not None
        else (KAGGLE_TIME_BUDGET_HOURS if paths.on_kaggle else None)
    )
    if args.params:
        best = load_params_file(args.params)
        config.stacker.params = best["params"]
        config.stacker.calibration = best.get("calibration", config.stacker.calibration)
    if args.calibration:
        config.stacker.calibration = args.calibration
    for model_dir in args.encoder:
        enc = EncoderConfig(model_path=model_dir)
        for field_name, value in (
            ("max_length", args.encoder_max_length),
            ("epochs", args.encoder_epochs),
            ("batch_size", args.encoder_batch_size),
            ("max_steps", args.encoder_max_steps),
            ("max_train_rows", args.encoder_max_train_rows),
            ("probe_steps", args.encoder_probe_steps),
            ("min_max_length", args.encoder_min_max_length),
        ):
            if value is not None:
                setattr(enc, field_name, value)
        config.encoders.append(enc)
    submission = Path(args.submission) if args.submission else paths.submission
    return config, submission


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    config, submission = config_from_args(args)
    run(config, submission, Path(args.test_labels) if args.test_labels else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
