"""One stacker fold fit on a quiet machine and on a busy one: 2 LightGBM threads vs the chosen count.

    python benchmarks/stacker_load.py [--train T.csv] [--burners N] [--rounds 200] [--timeout 90]

"Busy" runs N CPU-burning processes alongside (default: as many as the available cores). The
chosen count is :func:`pipelines.runtime.resources.lightgbm_threads`, taken in the same conditions. Each
fit runs in a child process and is stopped after ``--timeout`` seconds (reported as ``>T``).
Prints rows, data source and seconds; writes ``benchmarks/results/stacker_load.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from features.extractor import FeatureExtractor
from pipelines.data.battles import load_battles
from pipelines.runtime.paths import SAMPLE_DIR
from pipelines.runtime.resources import available_cpus, busy_cpus, lightgbm_threads


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def _fit(X, y, threads: int, rounds: int, queue) -> None:
    from stacking.lgbm import LGBMStacker

    start = time.perf_counter()
    LGBMStacker({"num_threads": threads}, num_boost_round=rounds, early_stopping_rounds=rounds, seed=0).fit(X, y)
    queue.put(time.perf_counter() - start)


def timed_fit(X, y, threads: int, rounds: int, timeout: float) -> float | None:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fit, args=(X, y, threads, rounds, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return None
    return queue.get()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", default=str(SAMPLE_DIR / "train.csv"))
    p.add_argument("--burners", type=int, help="CPU-burning processes in the busy case (default: available cores)")
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stacker_load.json"))
    args = p.parse_args(argv)

    battles, _ = load_battles(args.train, labelled=True)
    X = FeatureExtractor(n_jobs=1, progress=False).transform(battles)
    fold = battles.index % 5 != 0  # one fold's training rows
    X, y = X[fold].reset_index(drop=True), battles.loc[fold, "label"].to_numpy()
    cpus, burners = available_cpus(), args.burners or available_cpus()
    print(f"data: {args.train} ({len(y)} training rows of one fold, {X.shape[1]} features); available cores {cpus}")

    results = []
    for condition in ("quiet", "busy"):
        results += time_condition(condition, burners if condition == "busy" else 0, X, y, args)
    payload = {
        "data": args.train,
        "rows": int(len(y)),
        "features": int(X.shape[1]),
        "rounds": args.rounds,
        "available_cpus": cpus,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 0


def time_condition(condition: str, n_burners: int, X, y, args: argparse.Namespace) -> list[dict]:
    """The old default (2 threads) and the load-aware choice, timed while ``n_burners`` processes burn CPU."""
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    procs = [ctx.Process(target=_burn, args=(stop,), daemon=True) for _ in range(n_burners)]
    for proc in procs:
        proc.start()
    time.sleep(1.0 if procs else 0.0)
    results = []
    try:
        busy, chosen = busy_cpus(0.5), lightgbm_threads(0.5)
        for label, threads in (("2 threads (old default)", 2), (f"chosen ({chosen})", chosen)):
            seconds = timed_fit(X, y, threads, args.rounds, args.timeout)
            shown = f"{seconds:7.2f} s" if seconds is not None else f">{args.timeout:.0f} s (stopped)"
            print(f"{condition:5s} (busy cores {busy:.1f}, {len(procs)} burners)  {label:24s} {shown}")
            results.append(
                {
                    "condition": condition,
                    "burners": len(procs),
                    "busy_cpus_measured": round(busy, 2),
                    "threads": threads,
                    "choice": label,
                    "seconds": seconds,
                    "timeout": args.timeout,
                }
            )
    finally:
        stop.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    return results


if __name__ == "__main__":
    sys.exit(main())
