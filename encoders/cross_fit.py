"""Fine-tune one model per fold: OOF probabilities for train, fold-mean probabilities for test.

Each finished fold is checkpointed (its OOF and test predictions, small files) so a rerun
skips it. With a deadline the run is planned against it (arithmetic in ``encoders.budget``):

* before fold 0, a short timing probe may shorten ``max_length`` for *all* folds (never between
  folds: the OOF predictions must come from one kind of input);
* between folds, the measured fold times project the rest; test inference is cut first (the
  test probabilities then average only the folds that scored test), and when even training
  the remaining folds would not fit, the run stops and the caller leaves it out (the stacker
  can only use a source that covers every row).

The decisions, projections and measured seconds are returned as ``EncoderRun.plan`` and
written to ``encoder_<name>/plan.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_COLUMNS
from encoders.budget import (
    SAFETY,
    FoldTiming,
    ProbeTiming,
    next_max_length,
    project_fold_seconds,
    should_score_test,
    should_start_fold,
    total_steps,
)
from encoders.classifier import TransformerClassifier
from encoders.settings import EncoderConfig

log = logging.getLogger(__name__)
LENGTH_PLAN = "max_length_plan.json"


@dataclass
class EncoderRun:
    name: str
    folds_done: list[int]
    folds_total: int
    oof_path: Path | None
    test_path: Path | None
    seconds_per_fold: list[float]
    test_folds: list[int] = field(default_factory=list)  # the folds whose models scored test
    plan: dict = field(default_factory=dict)  # decisions, projected and actual seconds

    @property
    def complete(self) -> bool:
        return len(self.folds_done) == self.folds_total and bool(self.test_folds)


def _proba_frame(ids: pd.Series, proba: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(proba, columns=list(CLASS_COLUMNS))
    frame.insert(0, "id", ids.astype(str).to_numpy())
    return frame


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _agree(value):
    """Under data parallelism every process must take the same decision: rank 0's wins.

    Before the first fold the process group may not exist yet (accelerate starts it with the first
    model); the only decision then is "is the budget already spent", which the ranks, started
    together with the same whole-second budget, take alike.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return value
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def _fingerprint(config: EncoderConfig, train: pd.DataFrame, folds: np.ndarray) -> str:
    settings = {k: v for k, v in config.__dict__.items() if k not in EncoderConfig.PLANNING_FIELDS}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update("\x1f".join(train["id"].astype(str)).encode())
    h.update(np.asarray(folds, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _invalidate_stale_checkpoints(work: Path, config: EncoderConfig, train: pd.DataFrame, folds: np.ndarray) -> None:
    """Fold checkpoints (and the max-length plan they were trained with) count only for the same
    settings, rows and folds."""
    stamp = work / "fingerprint.json"
    current = _fingerprint(config, train, folds)
    if stamp.exists() and json.loads(stamp.read_text())["fingerprint"] != current:
        log.warning("%s: settings, rows or folds changed; discarding old fold checkpoints", work)
        for old in [*work.glob("fold_*"), work / LENGTH_PLAN]:
            old.unlink(missing_ok=True)
    if _is_main_process():
        stamp.write_text(json.dumps({"fingerprint": current, "config": config.__dict__}, indent=2, default=str))


def _fit_rows(config: EncoderConfig, folds: np.ndarray, k: int) -> np.ndarray:
    fit_rows = np.flatnonzero(folds != k)
    if config.max_train_rows is not None and len(fit_rows) > config.max_train_rows:
        fit_rows = np.sort(
            np.random.default_rng(config.seed + k).choice(fit_rows, config.max_train_rows, replace=False)
        )
    return fit_rows


def _probe(
    config: EncoderConfig,
    max_length: int,
    train: pd.DataFrame,
    y: np.ndarray,
    fit_rows: np.ndarray,
) -> tuple[ProbeTiming, int]:
    """Train ``probe_steps`` steps at ``max_length`` on a sample of fold 0's rows; the measured timing."""
    per_step = config.batch_size * config.grad_accum
    n = min(len(fit_rows), config.probe_steps * per_step)
    rows = np.sort(np.random.default_rng(config.seed).choice(fit_rows, n, replace=False))
    probe_config = replace(config, max_length=max_length, max_steps=config.probe_steps, epochs=max(config.epochs, 1.0))
    clf = TransformerClassifier(probe_config, progress=False)
    clf.fit(train.iloc[rows], y[rows])
    timing = clf.timing_
    seconds_per_step = clf.seconds_per_step() or 0.0
    clf.release()
    return ProbeTiming(
        max_length, timing["load_s"], timing["encode_s"] / max(timing["n_sequences"], 1), seconds_per_step, per_step
    ), int(timing.get("num_processes", 1))


def _plan_max_length(
    config: EncoderConfig,
    train: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    fold_ids: list[int],
    test: pd.DataFrame,
    work: Path,
    deadline: float | None,
    resumed: bool,
    clock: Callable[[], float],
) -> dict:
    """The max_length for every fold, decided once before fold 0 (and kept on resume)."""
    path = work / LENGTH_PLAN
    info: dict = {
        "configured": config.max_length,
        "used": config.max_length,
        "floor": config.min_max_length,
        "probes": [],
    }
    if resumed:
        if path.exists():
            info.update(json.loads(path.read_text()))
            info["decision"] = f"resumed: keeping max_length {info['used']} of the finished folds"
        else:
            info["decision"] = "resumed: folds were trained at the configured max_length"
        return info
    if deadline is None:
        info["decision"] = "no time budget: configured max_length"
        return info
    if config.probe_steps <= 0 or config.max_length <= config.min_max_length:
        info["decision"] = "no probe (probe_steps 0 or max_length at the floor): configured max_length"
        return info
    mult = 2 if config.swap_augment else 1
    k0 = fold_ids[0]
    fit_rows = _fit_rows(config, folds, k0)
    n_train_seq, n_oof_seq, n_test_seq = len(fit_rows) * mult, int((folds == k0).sum()) * mult, len(test) * mult
    length = config.max_length
    while _agree(clock() < deadline):
        probe, n_proc = _probe(config, length, train, y, fit_rows)
        steps = -(
            -total_steps(n_train_seq, config.batch_size, config.grad_accum, config.epochs, config.max_steps) // n_proc
        )
        fold = project_fold_seconds(probe, n_train_seq, steps, n_oof_seq, n_test_seq)
        # all folds trained and OOF-predicted, and test scored by at least one of them
        need = (len(fold_ids) * fold["fit_s"] + fold["test_s"]) * SAFETY
        left = deadline - clock()
        fits = bool(_agree(need <= left))
        info["probes"].append(
            {
                "max_length": length,
                "seconds_per_step": round(probe.seconds_per_step, 4),
                "steps_per_fold": steps,
                "projected_fold_fit_s": round(fold["fit_s"], 1),
                "projected_fold_test_s": round(fold["test_s"], 1),
                "projected_total_s": round(need, 1),
                "seconds_left": round(left, 1),
                "fits": fits,
            }
        )
        if fits:
            break
        shorter = next_max_length(length, config.min_max_length)
        if shorter is None:
            log.warning(
                "encoder %s: even at max_length %d the folds are projected to need ~%.0fs (%.0fs left)",
                config.resolved_name,
                length,
                need,
                left,
            )
            break
        log.warning(
            "encoder %s: all folds at max_length %d are projected to need ~%.0fs, %.0fs left: "
            "max_length %d for every fold",
            config.resolved_name,
            length,
            need,
            left,
            shorter,
        )
        length = shorter
    info["used"] = length
    if not info["probes"]:
        info["decision"] = "no probe (time budget spent): configured max_length"
        return info
    fits = info["probes"][-1]["fits"]
    info["decision"] = (
        f"max_length {length}"
        + (" (shortened to fit the time budget)" if length != config.max_length else "")
        + ("" if fits else ": projected not to fit even so")
    )
    if _is_main_process():
        path.write_text(json.dumps(info, indent=2))
    return info


def _fold_record(work: Path, k: int) -> dict:
    record = json.loads((work / f"fold_{k}.done.json").read_text())
    if "test_scored" not in record:  # checkpoints from before test inference could be cut
        record["test_scored"] = (work / f"fold_{k}.test.parquet").exists()
    return record


def cross_fit_encoder(
    config: EncoderConfig,
    train: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    test: pd.DataFrame,
    out_dir: str | Path,
    deadline: float | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> EncoderRun:
    """Run (or resume) all folds; write ``oof_<name>.parquet`` / ``test_<name>.parquet`` when all are done.

    ``deadline`` and ``clock`` are in the same seconds (``time.monotonic`` unless a test fakes it).
    """
    name = config.resolved_name
    work = Path(out_dir) / f"encoder_{name}"
    work.mkdir(parents=True, exist_ok=True)
    _invalidate_stale_checkpoints(work, config, train, folds)
    fold_ids = sorted(int(k) for k in np.unique(folds))
    started = clock()
    is_done = {k: (work / f"fold_{k}.done.json").exists() for k in fold_ids}
    plan: dict = {
        "seconds_left_at_start": None if deadline is None else round(deadline - started, 1),
        "safety_factor": SAFETY,
        "folds": [],
        "stopped": None,
    }
    plan["max_length"] = _plan_max_length(
        config, train, y, folds, fold_ids, test, work, deadline, any(is_done.values()), clock
    )
    run_config = replace(config, max_length=plan["max_length"]["used"])

    seconds: list[float] = []
    timings: list[FoldTiming] = []
    for i, k in enumerate(fold_ids):
        done_file = work / f"fold_{k}.done.json"
        if is_done[k]:
            record = _fold_record(work, k)
            seconds.append(record["seconds"])
            timings.append(FoldTiming.from_record(record))
            plan["folds"].append(
                {
                    "fold": k,
                    "decision": "checkpoint",
                    "test_scored": record["test_scored"],
                    "actual_s": round(record["seconds"], 1),
                }
            )
            log.info("encoder %s fold %d: checkpoint found, skipping", name, k)
            continue
        folds_left = sum(not is_done[j] for j in fold_ids[i:])
        start, projection = should_start_fold(clock(), deadline, timings, folds_left)
        if not _agree(start):
            reason = projection.get("reason", "projected finish is past the time budget")
            plan["stopped"] = {"before_fold": k, **projection, "reason": reason}
            log.warning("encoder %s: stopping before fold %d: %s", name, k, reason)
            break
        t0 = clock()
        train_mask = folds != k
        fit_rows = _fit_rows(config, folds, k)
        fold_config = replace(run_config, seed=config.seed + k)
        model = TransformerClassifier(fold_config, progress=progress)
        model.fit(train.iloc[fit_rows], y[fit_rows], deadline=deadline)
        if model.stopped_early_:
            log.warning("encoder %s fold %d: training cut short by the time budget; fold not kept", name, k)
            model.release()
            plan["stopped"] = {
                "in_fold": k,
                "reason": "training cut short by the time budget; fold not kept",
                "after_s": round(clock() - t0, 1),
            }
            break
        t1 = clock()
        oof = model.predict_proba(train[~train_mask])
        t2 = clock()
        folds_after = sum(not is_done[j] for j in fold_ids[i + 1 :])
        score_test, test_projection = should_score_test(t2, deadline, timings, folds_after, t2 - t0)
        score_test = bool(_agree(score_test))
        test_proba = None
        if score_test:
            test_proba = model.predict_proba(test)
        else:
            log.warning("encoder %s fold %d: test inference cut: %s", name, k, test_projection.get("reason"))
        t3 = clock()
        model.release()
        elapsed = t3 - t0
        record = {
            "fold": k,
            "seconds": elapsed,
            "train_s": t1 - t0,
            "oof_s": t2 - t1,
            "test_s": (t3 - t2) if score_test else None,
            "test_scored": score_test,
            "max_length": run_config.max_length,
            "steps": model.steps_,
            "train_rows": len(fit_rows),
            "train_loss": model.train_loss_,
        }
        if _is_main_process():
            _proba_frame(train["id"][~train_mask], oof).to_parquet(work / f"fold_{k}.oof.parquet")
            test_file = work / f"fold_{k}.test.parquet"
            if score_test:
                _proba_frame(test["id"], test_proba).to_parquet(test_file)
            else:
                test_file.unlink(missing_ok=True)
            done_file.write_text(json.dumps(record))
        seconds.append(elapsed)
        timings.append(FoldTiming(t2 - t0, record["test_s"]))
        plan["folds"].append(
            {
                "fold": k,
                "decision": "train + OOF + test" if score_test else "train + OOF (test cut)",
                "projected_before": projection,
                "test_projection": test_projection,
                "actual_s": {
                    key: None if record[key] is None else round(record[key], 2)
                    for key in ("train_s", "oof_s", "test_s", "seconds")
                },
            }
        )
        log.info(
            "encoder %s fold %d: %.1fs (train %.1fs, OOF %.1fs, test %s), %d steps",
            name,
            k,
            elapsed,
            t1 - t0,
            t2 - t1,
            f"{t3 - t2:.1f}s" if score_test else "cut",
            model.steps_,
        )

    done = [k for k in fold_ids if (work / f"fold_{k}.done.json").exists()]
    test_folds = [
        k for k in done if _fold_record(work, k)["test_scored"] and (work / f"fold_{k}.test.parquet").exists()
    ]
    run = EncoderRun(name, done, len(fold_ids), None, None, seconds, test_folds, plan)
    plan.update(folds_done=done, test_folds=test_folds, complete=run.complete, actual_s=round(clock() - started, 1))
    if run.complete and _is_main_process():
        oof = pd.concat([pd.read_parquet(work / f"fold_{k}.oof.parquet") for k in fold_ids])
        oof = oof.set_index("id").loc[train["id"].astype(str)].reset_index()
        tests = [pd.read_parquet(work / f"fold_{k}.test.parquet") for k in test_folds]
        test_mean = np.mean([t[list(CLASS_COLUMNS)].to_numpy() for t in tests], axis=0)
        run.oof_path = Path(out_dir) / f"oof_{name}.parquet"
        run.test_path = Path(out_dir) / f"test_{name}.parquet"
        oof.to_parquet(run.oof_path)
        _proba_frame(test["id"], test_mean).to_parquet(run.test_path)
        if len(test_folds) < len(fold_ids):
            log.warning(
                "encoder %s: test probabilities average folds %s only (test inference cut for the others)",
                name,
                test_folds,
            )
    if _is_main_process():
        (work / "plan.json").write_text(json.dumps(plan, indent=2, default=str))
    return run
