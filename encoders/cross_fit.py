"""Fine-tune one model per fold: OOF probabilities for train, fold-mean probabilities for test.

Each finished fold is checkpointed (its OOF and test predictions, small files) so a rerun
skips it; a deadline stops before a fold that would not finish, and the caller decides
what to do with an incomplete run (the stacker can only use a source that covers every row).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.classifier import TransformerClassifier
from encoders.settings import EncoderConfig

log = logging.getLogger(__name__)
PROBA_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")


@dataclass
class EncoderRun:
    name: str
    folds_done: list[int]
    folds_total: int
    oof_path: Path | None
    test_path: Path | None
    seconds_per_fold: list[float]

    @property
    def complete(self) -> bool:
        return len(self.folds_done) == self.folds_total


def _proba_frame(ids: pd.Series, proba: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(proba, columns=list(PROBA_COLUMNS))
    frame.insert(0, "id", ids.astype(str).to_numpy())
    return frame


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _fingerprint(config: EncoderConfig, train: pd.DataFrame, folds: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps({k: v for k, v in config.__dict__.items() if k != "seed"}, sort_keys=True,
                                  default=str).encode())
    h.update("\x1f".join(train["id"].astype(str)).encode())
    h.update(np.asarray(folds, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _invalidate_stale_checkpoints(work: Path, config: EncoderConfig, train: pd.DataFrame, folds: np.ndarray) -> None:
    """Fold checkpoints count only for the same settings, rows and folds."""
    stamp = work / "fingerprint.json"
    current = _fingerprint(config, train, folds)
    if stamp.exists() and json.loads(stamp.read_text())["fingerprint"] != current:
        log.warning("%s: settings, rows or folds changed; discarding old fold checkpoints", work)
        for old in work.glob("fold_*"):
            old.unlink()
    if _is_main_process():
        stamp.write_text(json.dumps({"fingerprint": current, "config": config.__dict__}, indent=2, default=str))


def cross_fit_encoder(config: EncoderConfig, train: pd.DataFrame, y: np.ndarray, folds: np.ndarray,
                      test: pd.DataFrame, out_dir: str | Path, deadline: float | None = None,
                      progress: bool = True) -> EncoderRun:
    """Run (or resume) all folds; write ``oof_<name>.parquet`` / ``test_<name>.parquet`` when all are done."""
    name = config.resolved_name
    work = Path(out_dir) / f"encoder_{name}"
    work.mkdir(parents=True, exist_ok=True)
    _invalidate_stale_checkpoints(work, config, train, folds)
    fold_ids = sorted(int(k) for k in np.unique(folds))
    seconds: list[float] = []
    for k in fold_ids:
        done_file = work / f"fold_{k}.done.json"
        if done_file.exists():
            seconds.append(json.loads(done_file.read_text())["seconds"])
            log.info("encoder %s fold %d: checkpoint found, skipping", name, k)
            continue
        if deadline is not None and time.monotonic() >= deadline:
            log.warning("encoder %s: time budget spent before fold %d", name, k)
            break
        if deadline is not None and seconds:
            projected = time.monotonic() + float(np.mean(seconds)) * 1.1
            if projected > deadline:
                log.warning("encoder %s: stopping before fold %d, projected finish is past the time budget", name, k)
                break
        start = time.monotonic()
        train_mask = folds != k
        fit_rows = np.flatnonzero(train_mask)
        if config.max_train_rows is not None and len(fit_rows) > config.max_train_rows:
            fit_rows = np.sort(np.random.default_rng(config.seed + k).choice(fit_rows, config.max_train_rows,
                                                                              replace=False))
        fold_config = EncoderConfig(**{**config.__dict__, "seed": config.seed + k})
        model = TransformerClassifier(fold_config, progress=progress)
        model.fit(train.iloc[fit_rows], y[fit_rows], deadline=deadline)
        if model.stopped_early_:
            log.warning("encoder %s fold %d: training cut short by the time budget; fold not kept", name, k)
            model.release()
            break
        oof = model.predict_proba(train[~train_mask])
        test_proba = model.predict_proba(test)
        model.release()
        elapsed = time.monotonic() - start
        if _is_main_process():
            _proba_frame(train["id"][~train_mask], oof).to_parquet(work / f"fold_{k}.oof.parquet")
            _proba_frame(test["id"], test_proba).to_parquet(work / f"fold_{k}.test.parquet")
            done_file.write_text(json.dumps({"fold": k, "seconds": elapsed, "steps": model.steps_,
                                             "train_rows": int(len(fit_rows)), "train_loss": model.train_loss_}))
        seconds.append(elapsed)
        log.info("encoder %s fold %d: %.1fs, %d steps", name, k, elapsed, model.steps_)

    done = [k for k in fold_ids if (work / f"fold_{k}.done.json").exists()]
    run = EncoderRun(name, done, len(fold_ids), None, None, seconds)
    if run.complete and _is_main_process():
        oof = pd.concat([pd.read_parquet(work / f"fold_{k}.oof.parquet") for k in fold_ids])
        oof = oof.set_index("id").loc[train["id"].astype(str)].reset_index()
        tests = [pd.read_parquet(work / f"fold_{k}.test.parquet") for k in fold_ids]
        test_mean = np.mean([t[list(PROBA_COLUMNS)].to_numpy() for t in tests], axis=0)
        run.oof_path = Path(out_dir) / f"oof_{name}.parquet"
        run.test_path = Path(out_dir) / f"test_{name}.parquet"
        oof.to_parquet(run.oof_path)
        _proba_frame(test["id"], test_mean).to_parquet(run.test_path)
    return run
