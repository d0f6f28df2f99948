"""Ablation with ``--tfidf`` and a short tune, with fold features refitted in every variant / trial (before) and
fitted once per fold (after, ``stacking.fold_feature_cache``).

    python benchmarks/fold_feature_cache.py [--train T.csv --test S.csv] [--trials 5] [--repeats 2]

Both modes run the engines the commands run (``run_ablation``, ``tune``) on the same data, folds and seed; the
handcrafted features are extracted once beforehand (their disk cache is warm for every timed run), so the times
differ only in the stacker fits and the fold features. Runs alternate (before, after, before, ...) so that load
from other processes falls on both. Checks that the two modes give identical results, counts the TF-IDF fits
(``TfidfDiffTransformer.fit`` calls, the one fit on all rows that names the ablation's columns included) and
prints rows, source and mean lengths. Writes ``benchmarks/results/fold_feature_cache.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.text_vectors import TfidfDiffTransformer
from pipelines import ablation, tune
from pipelines.cli import run_config_from_args
from pipelines.data.battles import load_battles
from pipelines.experiments import ablation as ablation_engine
from pipelines.experiments import tune as tune_engine
from pipelines.model.model_inputs import model_inputs
from pipelines.runtime.paths import SAMPLE_DIR

MODES = {"before (refit per variant / trial)": False, "after (fitted once per fold)": True}


class FitCounter:
    """Counts ``TfidfDiffTransformer.fit`` calls while installed (the class's own fit, wrapped)."""

    def __init__(self) -> None:
        self.calls = 0
        self._fit = TfidfDiffTransformer.fit

    def __enter__(self) -> FitCounter:
        original, counter = self._fit, self

        def counted(transformer, battles, y=None):
            counter.calls += 1
            return original(transformer, battles, y)

        TfidfDiffTransformer.fit = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc) -> None:
        TfidfDiffTransformer.fit = self._fit  # type: ignore[method-assign]


def describe_data(train: str) -> dict:
    """Rows, source and mean lengths (characters of the prompt and of each answer, all turns joined)."""
    battles, _ = load_battles(train, labelled=True)

    def mean_chars(column: str) -> float:
        return float(battles[column].map(lambda turns: len("\n\n".join(turns))).mean())

    path = Path(train).resolve()
    return {
        "train": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else train,
        "source": "bundled sample (pipelines/sample_data)" if Path(train).parent == SAMPLE_DIR else "given file",
        "rows": int(len(battles)),
        "mean_chars_prompt": round(mean_chars("prompt_turns"), 1),
        "mean_chars_answer": round((mean_chars("a_turns") + mean_chars("b_turns")) / 2, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data = describe_data(args.train)
    print(
        f"data: {data['train']} ({data['source']}): {data['rows']} rows, mean chars: prompt "
        f"{data['mean_chars_prompt']}, answer {data['mean_chars_answer']}"
    )
    flags = ["--train", args.train, "--test", args.test, "--tfidf", "--no-progress", "--n-jobs", "1"]
    flags += ["--num-threads", args.num_threads, "--seed", "0"]
    runs, results = time_modes(flags, args.repeats, args.trials)
    identical = {engine: results[engine][True] == results[engine][False] for engine in results}
    print(f"identical results with and without the cache: {identical}")
    summary = {
        engine: {
            label: statistics.median(r["seconds"] for r in runs if r["engine"] == engine and r["mode"] == label)
            for label in MODES
        }
        for engine in ("ablation", "tune")
    }
    for engine, times in summary.items():
        before, after = times.values()
        print(f"{engine}: median {before:.1f} s -> {after:.1f} s ({before / after:.1f}x)")
    payload = {
        "data": data,
        "settings": {"tfidf": True, "trials": args.trials, "repeats": args.repeats, "num_threads": args.num_threads},
        "identical_results": identical,
        "median_seconds": summary,
        "runs": runs,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default=str(SAMPLE_DIR / "train.csv"))
    p.add_argument("--test", default=str(SAMPLE_DIR / "test.csv"))
    p.add_argument("--trials", type=int, default=5, help="tune trials per study (plus the baseline fit)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per mode and engine")
    p.add_argument("--num-threads", default="1", help="LightGBM threads (1: the machine is shared)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fold_feature_cache.json"))
    return p


def time_modes(flags: list[str], repeats: int, trials: int) -> tuple[list[dict], dict[str, dict[bool, object]]]:
    """Both engines in both modes, alternating, ``repeats`` times, after one untimed run fills the feature
    cache: each run's seconds and TF-IDF fits, and each engine's results per mode (to check they match)."""
    runs: list[dict] = []
    results: dict[str, dict[bool, object]] = {"ablation": {}, "tune": {}}
    with tempfile.TemporaryDirectory() as tmp:
        warm = run_config_from_args(ablation.build_parser().parse_args([*flags, "--out", f"{tmp}/warm"]))
        model_inputs(warm)  # features into the shared disk cache (tmp/.cache): no timed run pays for them
        for repeat in range(repeats):
            for label, use in MODES.items():
                for engine in ("ablation", "tune"):
                    out = f"{tmp}/{engine}-{use}-{repeat}"
                    parser = ablation.build_parser() if engine == "ablation" else tune.build_parser()
                    config = run_config_from_args(parser.parse_args([*flags, "--out", out]))
                    with FitCounter() as counter:
                        start = time.perf_counter()
                        results[engine][use], work = run_engine(engine, config, use, trials, warm.n_folds)
                        seconds = time.perf_counter() - start
                    runs.append({"engine": engine, "mode": label, "repeat": repeat, "seconds": round(seconds, 2)})
                    runs[-1].update(tfidf_fits=counter.calls, work=work)
                    shown = f"{seconds:6.1f} s, {counter.calls} TF-IDF fits ({work})"
                    print(f"{engine:8s} {label:36s} repeat {repeat}: {shown}")
    return runs, results


def run_engine(engine: str, config, fold_cache: bool, trials: int, n_folds: int) -> tuple[object, str]:
    """One ablation or tune run: what the cache must not change, and the work it did, in words."""
    if engine == "ablation":
        report = ablation_engine.run_ablation(config, fold_cache=fold_cache)
        work = f"{len(report['variants'])} variants x {report['config']['n_folds']} folds"
        return (report["variants"], report["position"]), work
    study = tune_engine.tune(config, tune_engine.TuneConfig(n_trials=trials), fold_cache=fold_cache)
    done = study["study"].trials
    return [(t.params, t.value, t.user_attrs) for t in done], f"baseline + {len(done)} trials x {n_folds} folds"


if __name__ == "__main__":
    sys.exit(main())
