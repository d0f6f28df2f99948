"""Fine-tune one model per fold: OOF probabilities for train, fold-mean probabilities for test.

The test rows are either scored inside the folds (``test`` given: ``pipelines.train_encoder --test``) or,
as a run does, after the fit by every kept fold model (``test`` None: the fit never sees them, and only
their count, ``test_rows``, is known here so that the plan reserves the time to score them).

Each finished fold is checkpointed (its OOF and test predictions, small files) so a rerun
skips it. With a deadline the run is planned against it (arithmetic in ``encoders.budget``):

* before fold 0, a short timing probe may shorten ``max_length`` for *all* folds (never between
  folds: the OOF predictions must come from one kind of input); the projection includes the test
  scoring (after the fit: every fold model loads again and scores ``test_rows`` rows);
* between folds, the measured fold times project the rest. Test scored after the fit: a fold starts
  only if training the remaining folds and scoring the test rows with every fold model (projected
  from the OOF prediction rate) fit. Test scored inside the folds: test inference is cut first (the
  test probabilities then average only the folds that scored test). When the remaining folds do not
  fit, the run stops and the caller leaves it out (the stacker can only use a source that covers
  every row).

The decisions, projections and measured seconds are returned as ``EncoderRun.plan`` and
written to ``encoder_<name>/plan.json``.

Each finished fold's model is also kept (``encoder_<name>/fold_<k>/``, as ``save_models`` says) so
new battles can be scored later without retraining (``encoders.fold_models.EncoderFoldModels``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
    project_probe_total,
    scoring_calls,
    should_score_test,
    should_start_fold,
    total_steps,
)
from encoders.classifier import TransformerClassifier
from encoders.fold_models import MANIFEST, TOKENIZER_DIR, fold_dir, fold_is_lora, saved_folds, write_manifest
from encoders.gguf import resolve_model_path
from encoders.model import is_decoder, is_lora
from encoders.settings import EncoderConfig

log = logging.getLogger(__name__)
LENGTH_PLAN = "max_length_plan.json"
# settings that do not change what a fold computes: changing them keeps the fold checkpoints
# a fold finished by one worker count is a finished fold for another: a resume keeps it
PROBE_SHARE = 0.1  # of the seconds left, the most one max-length probe may train for
NOT_FINGERPRINTED = (*EncoderConfig.PLANNING_FIELDS, "save_models", "workers")


@dataclass
class EncoderRun:
    name: str
    folds_done: list[int]
    folds_total: int
    oof_path: Path | None
    test_path: Path | None  # None also when the test rows are scored after the fit
    seconds_per_fold: list[float]
    test_folds: list[int] = field(default_factory=list)  # the folds whose models scored test
    plan: dict = field(default_factory=dict)  # decisions, projected and actual seconds
    test_in_folds: bool = True  # False: the test rows are scored after the fit (no test_path)

    @property
    def complete(self) -> bool:
        return len(self.folds_done) == self.folds_total and (bool(self.test_folds) or not self.test_in_folds)


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
    settings = {k: v for k, v in config.__dict__.items() if k not in NOT_FINGERPRINTED}
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
        for old in [*work.glob("fold_*"), work / LENGTH_PLAN, work / MANIFEST, work / TOKENIZER_DIR]:
            if old.is_dir():
                shutil.rmtree(old)
            else:
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
    seconds: float | None = None,
) -> tuple[ProbeTiming, int]:
    """Train ``probe_steps`` steps at ``max_length`` on a sample of fold 0's rows, or fewer when ``seconds``
    (wall) run out first (at least one step is always timed); the measured timing."""
    per_step = config.batch_size * config.grad_accum
    n = min(len(fit_rows), config.probe_steps * per_step)
    rows = np.sort(np.random.default_rng(config.seed).choice(fit_rows, n, replace=False))
    probe_config = replace(config, max_length=max_length, max_steps=config.probe_steps, epochs=max(config.epochs, 1.0))
    clf = TransformerClassifier(probe_config, progress=False)
    clf.fit(train.iloc[rows], y[rows], deadline=None if seconds is None else time.monotonic() + seconds)
    timing = clf.timing_
    seconds_per_step = clf.seconds_per_step() or 0.0
    clf.release()
    return ProbeTiming(
        max_length, timing["load_s"], timing["encode_s"] / max(timing["n_sequences"], 1), seconds_per_step, per_step
    ), int(timing.get("num_processes", 1))


@dataclass
class LengthProbe:
    """One timing probe of the max-length plan: the projection at ``max_length`` and whether it fits."""

    max_length: int
    seconds_per_step: float
    steps_per_fold: int
    projected_fold_fit_s: float
    projected_fold_test_s: float
    projected_test_scoring_s: float  # all of it, SAFETY included (after the fit: every fold model)
    projected_total_s: float
    seconds_left: float
    fits: bool


def _plan_max_length(ctx: FoldContext, fold_ids: list[int], resumed: bool) -> dict:
    """The max_length for every fold, decided once before fold 0 (and kept on resume)."""
    config, deadline = ctx.config, ctx.deadline
    path = ctx.work / LENGTH_PLAN
    info: dict = {
        "configured": config.max_length,
        "used": config.max_length,
        "floor": config.min_max_length,
        "probes": [],
    }
    skip = _no_probe_decision(config, deadline, resumed, path, info)
    if skip is not None:
        info["decision"] = skip
        return info
    assert deadline is not None  # _no_probe_decision returns a reason when there is no budget
    probes, length = _probe_until_fits(ctx, fold_ids, deadline)
    info["probes"] = [asdict(p) for p in probes]
    info["used"] = length
    if not probes:
        info["decision"] = "no probe (time budget spent): configured max_length"
        return info
    info["decision"] = (
        f"max_length {length}"
        + (" (shortened to fit the time budget)" if length != config.max_length else "")
        + ("" if probes[-1].fits else ": projected not to fit even so")
    )
    if _is_main_process():
        path.write_text(json.dumps(info, indent=2))
    return info


def _no_probe_decision(
    config: EncoderConfig, deadline: float | None, resumed: bool, path: Path, info: dict
) -> str | None:
    """Why the configured (or, on resume, the saved) max_length stands without a probe; None: probe."""
    if resumed:
        if not path.exists():
            return "resumed: folds were trained at the configured max_length"
        info.update(json.loads(path.read_text()))
        return f"resumed: keeping max_length {info['used']} of the finished folds"
    if deadline is None:
        return "no time budget: configured max_length"
    if config.probe_steps <= 0 or config.max_length <= config.min_max_length:
        return "no probe (probe_steps 0 or max_length at the floor): configured max_length"
    return None


def _probe_until_fits(ctx: FoldContext, fold_ids: list[int], deadline: float) -> tuple[list[LengthProbe], int]:
    """Probe at the configured length, halving it (not below the floor) while all folds would not fit.

    Returns the probes and the length to use (shorter than the last probe's when the budget ran out
    before the shorter length could be probed)."""
    config, train, y, folds, clock = ctx.config, ctx.train, ctx.y, ctx.folds, ctx.clock
    mult = 2 if config.swap_augment else 1
    k0 = fold_ids[0]
    fit_rows = _fit_rows(config, folds, k0)
    n_train_seq, n_oof_seq, n_test_seq = len(fit_rows) * mult, int((folds == k0).sum()) * mult, ctx.n_test * mult
    probes: list[LengthProbe] = []
    length = config.max_length
    while _agree(clock() < deadline):
        # a probe may spend a share of the time left: with minutes left and slow steps, a full probe would
        # itself overrun the budget it is planning for
        probe, n_proc = _probe(config, length, train, y, fit_rows, PROBE_SHARE * max(deadline - clock(), 0.0))
        steps = -(
            -total_steps(n_train_seq, config.batch_size, config.grad_accum, config.epochs, config.max_steps) // n_proc
        )
        fold = project_fold_seconds(probe, n_train_seq, steps, n_oof_seq, n_test_seq)
        # all folds trained and OOF-predicted; test scored by every fold model after the fit, or in-fold by one
        after = ctx.test is None
        loads = scoring_calls(ctx.n_test) if after else 1
        total = project_probe_total(fold, len(fold_ids), probe.load_s, test_after_fit=after, loads=loads)
        need = total["total_s"]
        left = deadline - clock()
        fits = bool(_agree(need <= left))
        probes.append(
            LengthProbe(
                max_length=length,
                seconds_per_step=round(probe.seconds_per_step, 4),
                steps_per_fold=steps,
                projected_fold_fit_s=round(fold["fit_s"], 1),
                projected_fold_test_s=round(fold["test_s"], 1),
                projected_test_scoring_s=total["test_scoring_s"],
                projected_total_s=round(need, 1),
                seconds_left=round(left, 1),
                fits=fits,
            )
        )
        shorter = None if fits else next_max_length(length, config.min_max_length)
        if shorter is None:
            if not fits:
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
    return probes, length


def _fold_record(work: Path, k: int) -> dict:
    record = json.loads((work / f"fold_{k}.done.json").read_text())
    if "test_scored" not in record:  # checkpoints from before test inference could be cut
        record["test_scored"] = (work / f"fold_{k}.test.parquet").exists()
    return record


@dataclass
class FoldContext:
    """What every fold of one cross-fit shares."""

    config: EncoderConfig  # as given (seeds, row subsampling)
    run_config: EncoderConfig  # with the planned max_length: what each fold trains on
    train: pd.DataFrame
    y: np.ndarray
    folds: np.ndarray
    test: pd.DataFrame | None  # None: the test rows are scored after the fit
    work: Path
    deadline: float | None
    progress: bool
    clock: Callable[[], float]
    test_rows: int = 0  # rows scored after the fit (test None): the plan reserves their time

    @property
    def name(self) -> str:
        return self.config.resolved_name

    @property
    def n_test(self) -> int:
        """Test rows to plan for: scored inside the folds, or after the fit."""
        return len(self.test) if self.test is not None else self.test_rows

    def timing(self, record: dict, k: int) -> FoldTiming:
        """A finished fold's measured times, with its OOF row count (the post-fit test projection's rate)."""
        return FoldTiming.from_record(record, oof_rows=int((self.folds == k).sum()))


@dataclass
class FoldResult:
    """One finished fold, as its checkpoint (``fold_<k>.done.json``) records it."""

    fold: int
    seconds: float
    train_s: float
    oof_s: float
    test_s: float | None
    test_scored: bool
    max_length: int
    steps: int
    train_rows: int
    train_loss: float
    load_s: float = 0.0  # model load, within train_s
    processes: int = 1  # processes that shared training and OOF prediction


@dataclass
class FoldStop:
    """Why the cross-fit stopped before or during a fold (recorded in the plan)."""

    details: dict


def cross_fit_encoder(
    config: EncoderConfig,
    train: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    test: pd.DataFrame | None,
    out_dir: str | Path,
    deadline: float | None = None,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    *,
    test_rows: int = 0,
) -> EncoderRun:
    """Run (or resume) all folds; write ``oof_<name>.parquet`` (and, with ``test``, ``test_<name>.parquet``)
    when all are done.

    ``test`` None: no test rows are scored here; ``test_rows`` rows will be scored after the fit by every
    fold model, and the time budget reserves that time. ``deadline`` and ``clock`` are in the same seconds
    (``time.monotonic`` unless a test fakes it). Fold models are kept under ``encoder_<name>/fold_<k>/`` as
    ``config.save_models`` says (``encoders.fold_models.EncoderFoldModels`` loads them).
    """
    if test is not None and test_rows:
        raise ValueError("cross_fit_encoder: give the test rows (scored in the folds) or their count, not both")
    work = Path(out_dir) / f"encoder_{config.resolved_name}"
    work.mkdir(parents=True, exist_ok=True)
    _invalidate_stale_checkpoints(work, config, train, folds)
    fold_ids = sorted(int(k) for k in np.unique(folds))
    started = clock()
    is_done = {k: (work / f"fold_{k}.done.json").exists() for k in fold_ids}
    plan: dict = {
        "seconds_left_at_start": None if deadline is None else round(deadline - started, 1),
        "safety_factor": SAFETY,
        "test_scoring": "in the folds" if test is not None else f"after the fit: {test_rows} rows, every fold model",
        "folds": [],
        "stopped": None,
    }
    ctx = FoldContext(config, config, train, y, folds, test, work, deadline, progress, clock, test_rows)
    plan["max_length"] = _plan_max_length(ctx, fold_ids, resumed=any(is_done.values()))
    ctx.run_config = replace(config, max_length=plan["max_length"]["used"])
    unfit = _projected_unfit(config, plan["max_length"])
    if unfit:
        plan["stopped"] = {"before_fold": fold_ids[0], "reason": unfit}
        log.warning("encoder %s: left out: %s", ctx.name, unfit)
        seconds: list[float] = []
    else:
        seconds = _run_folds(ctx, fold_ids, is_done, plan)
    done = [k for k in fold_ids if (work / f"fold_{k}.done.json").exists()]
    test_folds = [
        k
        for k in done
        if test is not None and _fold_record(work, k)["test_scored"] and (work / f"fold_{k}.test.parquet").exists()
    ]
    run = EncoderRun(ctx.name, done, len(fold_ids), None, None, seconds, test_folds, plan, test is not None)
    plan.update(folds_done=done, test_folds=test_folds, complete=run.complete, actual_s=round(clock() - started, 1))
    if _is_main_process():
        _prune_fold_models(work, config.save_models, keep=done)
        if run.complete:
            run.oof_path, run.test_path = _write_run_probabilities(ctx, Path(out_dir), fold_ids, test_folds)
        (work / "plan.json").write_text(json.dumps(plan, indent=2, default=str))
    return run


def _projected_unfit(config: EncoderConfig, length_plan: dict) -> str | None:
    """Why the encoder is left out before fold 0 (``skip_unless_fits``: the last probe does not fit), else None."""
    probes = length_plan.get("probes") or []
    if not probes or probes[-1]["fits"]:
        return None
    skip = config.skip_unless_fits
    if skip is None:
        from transformers import AutoConfig

        base = resolve_model_path(config.require_model_path())
        skip = is_decoder(AutoConfig.from_pretrained(str(base), local_files_only=True))
    if not skip:
        return None
    last = probes[-1]
    return (
        f"the probe projects ~{last['projected_total_s']:.0f}s for all folds at max_length {last['max_length']}, "
        f"{last['seconds_left']:.0f}s left (skip_unless_fits)"
    )


def _run_folds(ctx: FoldContext, fold_ids: list[int], is_done: dict[int, bool], plan: dict) -> list[float]:
    """Each fold in turn: from its checkpoint, or trained when the time budget allows; seconds per fold."""
    seconds: list[float] = []
    timings: list[FoldTiming] = []
    for i, k in enumerate(fold_ids):
        if is_done[k]:
            record = _fold_record(ctx.work, k)
            seconds.append(record["seconds"])
            timings.append(ctx.timing(record, k))
            plan["folds"].append(
                {
                    "fold": k,
                    "decision": "checkpoint",
                    "test_scored": record["test_scored"],
                    "actual_s": round(record["seconds"], 1),
                }
            )
            log.info("encoder %s fold %d: checkpoint found, skipping", ctx.name, k)
            continue
        folds_left = sum(not is_done[j] for j in fold_ids[i:])
        start, projection = should_start_fold(
            ctx.clock(), ctx.deadline, timings, folds_left, test_rows=ctx.test_rows, n_folds=len(fold_ids)
        )
        if not _agree(start):
            reason = projection.get("reason", "projected finish is past the time budget")
            plan["stopped"] = {"before_fold": k, **projection, "reason": reason}
            log.warning("encoder %s: stopping before fold %d: %s", ctx.name, k, reason)
            break
        folds_after = sum(not is_done[j] for j in fold_ids[i + 1 :])
        outcome = _train_fold(ctx, k, timings, folds_after)
        if isinstance(outcome, FoldStop):
            plan["stopped"] = outcome.details
            break
        result, test_projection = outcome
        seconds.append(result.seconds)
        timings.append(ctx.timing(asdict(result), k))
        plan["folds"].append(
            {
                "fold": k,
                "decision": _fold_decision(ctx, result),
                "projected_before": projection,
                "test_projection": test_projection,
                "actual_s": {
                    key: None if getattr(result, key) is None else round(getattr(result, key), 2)
                    for key in ("train_s", "oof_s", "test_s", "seconds")
                },
            }
        )
    return seconds


def _fold_decision(ctx: FoldContext, result: FoldResult) -> str:
    if ctx.test is None:
        return "train + OOF (test scored after the fit)"
    return "train + OOF + test" if result.test_scored else "train + OOF (test cut)"


def _train_fold(
    ctx: FoldContext, k: int, timings: list[FoldTiming], folds_after: int
) -> tuple[FoldResult, dict] | FoldStop:
    """Train fold ``k``, predict its OOF rows and (budget allowing) test; checkpoint and keep its model."""
    clock = ctx.clock
    t0 = clock()
    held_out = ctx.folds == k
    fit_rows = _fit_rows(ctx.config, ctx.folds, k)
    model = TransformerClassifier(replace(ctx.run_config, seed=ctx.config.seed + k), progress=ctx.progress)
    model.fit(ctx.train.iloc[fit_rows], ctx.y[fit_rows], deadline=ctx.deadline)
    if model.stopped_early_:
        log.warning("encoder %s fold %d: training cut short by the time budget; fold not kept", ctx.name, k)
        model.release()
        return FoldStop(
            {
                "in_fold": k,
                "reason": "training cut short by the time budget; fold not kept",
                "after_s": round(clock() - t0, 1),
            }
        )
    t1 = clock()
    oof = model.predict_proba(ctx.train[held_out])
    t2 = clock()
    test_proba: np.ndarray | None = None
    test_projection: dict = {}
    if ctx.test is not None:
        score_test, test_projection = should_score_test(t2, ctx.deadline, timings, folds_after, t2 - t0)
        test_proba = model.predict_proba(ctx.test) if _agree(score_test) else None
        if test_proba is None:
            log.warning("encoder %s fold %d: test inference cut: %s", ctx.name, k, test_projection.get("reason"))
    score_test = test_proba is not None
    t3 = clock()
    result = FoldResult(
        fold=k,
        seconds=t3 - t0,
        train_s=t1 - t0,
        oof_s=t2 - t1,
        test_s=(t3 - t2) if score_test else None,
        test_scored=score_test,
        max_length=ctx.run_config.max_length,
        steps=model.steps_,
        train_rows=len(fit_rows),
        train_loss=model.train_loss_,
        load_s=float(model.timing_.get("load_s", 0.0)),
        processes=int(model.timing_.get("num_processes", 1)),
    )
    if _is_main_process():
        _save_fold_model(ctx, model, k)  # before the checkpoint: a done fold has its model
        _write_fold_checkpoint(ctx, result, oof, test_proba)
    model.release()
    log.info(
        "encoder %s fold %d: %.1fs (train %.1fs, OOF %.1fs, test %s), %d steps",
        ctx.name,
        k,
        result.seconds,
        result.train_s,
        result.oof_s,
        "cut" if result.test_s is None else f"{result.test_s:.1f}s",
        result.steps,
    )
    return result, test_projection


def _keeps_model(save_models: str, lora: bool) -> bool:
    return save_models == "all" or (save_models == "lora" and lora)


def _save_fold_model(ctx: FoldContext, model: TransformerClassifier, k: int) -> None:
    """``fold_<k>/`` (safetensors; LoRA: adapter + head), one tokenizer per encoder, and ``encoder.json``."""
    if getattr(model, "model_", None) is None or not _keeps_model(ctx.config.save_models, is_lora(model.model_)):
        return  # nothing to keep (a stand-in without weights), or not asked to
    target = fold_dir(ctx.work, k)
    if target.exists():
        shutil.rmtree(target)
    model.save(target, with_tokenizer=False)
    tokenizer_dir = ctx.work / TOKENIZER_DIR
    if not tokenizer_dir.exists():
        model.save_tokenizer(tokenizer_dir)
    write_manifest(ctx.work, ctx.run_config, ctx.config.max_length)


def _prune_fold_models(work: Path, save_models: str, keep: list[int]) -> None:
    """Free disk as ``save_models`` says (a rerun may have changed it) and drop models of unfinished folds."""
    saved = saved_folds(work)
    dropped = [k for k in saved if k not in keep or not _keeps_model(save_models, fold_is_lora(fold_dir(work, k)))]
    for k in dropped:
        shutil.rmtree(fold_dir(work, k))
    if dropped and not saved_folds(work):
        shutil.rmtree(work / TOKENIZER_DIR, ignore_errors=True)
        (work / MANIFEST).unlink(missing_ok=True)
    elif dropped:
        manifest = json.loads((work / MANIFEST).read_text())
        manifest["folds"] = saved_folds(work)
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))


def _write_fold_checkpoint(
    ctx: FoldContext, result: FoldResult, oof: np.ndarray, test_proba: np.ndarray | None
) -> None:
    k = result.fold
    _proba_frame(ctx.train["id"][ctx.folds == k], oof).to_parquet(ctx.work / f"fold_{k}.oof.parquet")
    test_file = ctx.work / f"fold_{k}.test.parquet"
    if test_proba is not None and ctx.test is not None:
        _proba_frame(ctx.test["id"], test_proba).to_parquet(test_file)
    else:
        test_file.unlink(missing_ok=True)
    (ctx.work / f"fold_{k}.done.json").write_text(json.dumps(asdict(result)))


def _write_run_probabilities(
    ctx: FoldContext, out_dir: Path, fold_ids: list[int], test_folds: list[int]
) -> tuple[Path, Path | None]:
    """``oof_<name>.parquet`` (train rows in order) and ``test_<name>.parquet`` (mean of the test-scoring folds;
    None, and an older file removed, when the test rows are scored after the fit)."""
    work, name = ctx.work, ctx.name
    oof = pd.concat([pd.read_parquet(work / f"fold_{k}.oof.parquet") for k in fold_ids])
    oof = oof.set_index("id").loc[ctx.train["id"].astype(str)].reset_index()
    oof_path, test_path = out_dir / f"oof_{name}.parquet", out_dir / f"test_{name}.parquet"
    oof.to_parquet(oof_path)
    if ctx.test is None:
        test_path.unlink(missing_ok=True)
        return oof_path, None
    tests = [pd.read_parquet(work / f"fold_{k}.test.parquet") for k in test_folds]
    test_mean = np.mean([t[list(CLASS_COLUMNS)].to_numpy() for t in tests], axis=0)
    _proba_frame(ctx.test["id"], test_mean).to_parquet(test_path)
    if len(test_folds) < len(fold_ids):
        log.warning(
            "encoder %s: test probabilities average folds %s only (test inference cut for the others)", name, test_folds
        )
    return oof_path, test_path
