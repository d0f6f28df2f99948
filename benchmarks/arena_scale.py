"""The CPU part of the competition's run at its size: features-only ``full_run`` from 5k to 57k training rows
with 25k test rows, then ``predict`` of the 25k rows with the saved bundle.

    python benchmarks/arena_scale.py [--data ../shared/data] [--out benchmarks/results/arena_scale]
    python benchmarks/arena_scale.py --sizes 2000,4000 --test-rows 2000      # a quick look

Data: an arena-shaped set built from the real rows of ``--data`` (never ``../shared/holdout``), since the
arena's 55k set cannot be had here. Each built battle is a real battle (its prompt, its two answers, its human
vote), drawn with replacement with length-tilted weights so that the answers average ~1,400 characters and the
prompts ~370 as in the arena data: six in seven a single-turn battle, one in seven a two-turn battle made of two
real battles (turn 1 and turn 2, the vote of turn 2); half have A and B swapped (the vote swapped with them).
Texts repeat (the real pool holds ~29k battles): the printed figures say how often. Prints the figures of what it built.

For each training size: one ``python -m pipelines.full_run`` in a fresh run directory (no feature cache), its
peak resident memory over the whole process tree (feature workers included, sampled by psutil) and each stage's
seconds and high-water memory from ``DIR/timings.json``; then the fitted growth exponent per stage (the slope of
log seconds on log rows). Writes ``OUT.json``, ``OUT.md`` and ``OUT.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_schema import CLASS_COLUMNS, swap_labels  # noqa: E402
from benchmarks.features import PeakRSS, mib  # noqa: E402
from pipelines.data.battles import load_battles_frame  # noqa: E402
from pipelines.data.training_sets import combined_shared_data  # noqa: E402
from pipelines.runtime.command_setup import setup_logging  # noqa: E402

log = logging.getLogger("benchmarks.arena_scale")

ARENA_TRAIN_ROWS, ARENA_TEST_ROWS = 57_477, 25_000
TARGET_RESPONSE_CHARS, TARGET_PROMPT_CHARS = 1400.0, 370.0  # arena means (approx.): answers ~1.4k, prompts ~370
MULTI_TURN_SHARE = 1 / 7
SIZES = (5_000, 10_000, 20_000, ARENA_TRAIN_ROWS)
TARGETS = {"cpu_minutes": 10.0, "peak_gib": 8.0, "growth_exponent": 1.15, "predict_minutes": 2.0}
STAGES = ("load", "features", "folds", "stacker", "stacker calibration", "new-source calibration", "predict", "write")
FIT_STAGES = STAGES[1:6]  # the ones that grow with the training rows (load and predict also read/score the test)


def _chars(turns: list[str]) -> int:
    return len("\n\n".join(turns))  # as the features see a side (TextView joins turns with a blank line)


def real_pool(data: Path) -> pd.DataFrame:
    """Every real battle of ``data`` parsed as the pipeline parses battles, with its side lengths."""
    frame = combined_shared_data(data)
    battles, _ = load_battles_frame(frame, str(data), labelled=True)
    battles["source"] = frame["source"].to_numpy()
    battles["answer_chars"] = [(_chars(a) + _chars(b)) / 2 for a, b in zip(battles["a_turns"], battles["b_turns"])]
    battles["prompt_chars"] = battles["prompt_turns"].map(_chars)
    return battles.reset_index(drop=True)


def _weights(pool: pd.DataFrame, la: float, lp: float) -> np.ndarray:
    """Sampling weights exp(la * answer chars / 1k + lp * prompt chars / 1k), normalised."""
    z = la * pool["answer_chars"].to_numpy() / 1000 + lp * pool["prompt_chars"].to_numpy() / 1000
    w = np.exp(z - z.max())
    return w / w.sum()


def _single_turn(pool: pd.DataFrame) -> pd.DataFrame:
    return pool[pool["prompt_turns"].map(len) == 1].reset_index(drop=True)


def _expected(pool: pd.DataFrame, la: float, lp: float) -> tuple[float, float]:
    """Mean answer and prompt chars of a built set under tilts (la, lp): single-turn rows drawn from the
    single-turn battles, two-turn rows from two battles of the whole pool (plus the blank line between turns)."""
    single, every = _single_turn(pool), pool
    ws, we = _weights(single, la, lp), _weights(every, la, lp)
    out = []
    for col in ("answer_chars", "prompt_chars"):
        one, two = float(ws @ single[col].to_numpy()), 2 * float(we @ every[col].to_numpy()) + 2
        out.append((1 - MULTI_TURN_SHARE) * one + MULTI_TURN_SHARE * two)
    return out[0], out[1]


def fit_tilts(pool: pd.DataFrame) -> tuple[float, float]:
    """Tilts that put the expected mean answer and prompt lengths on the arena's (coordinate bisection)."""
    la = lp = 0.0
    for _ in range(6):
        for which in ("a", "p"):
            lo, hi = -5.0, 20.0
            for _ in range(50):
                mid = (lo + hi) / 2
                answer, prompt = _expected(pool, mid, lp) if which == "a" else _expected(pool, la, mid)
                value, target = (answer, TARGET_RESPONSE_CHARS) if which == "a" else (prompt, TARGET_PROMPT_CHARS)
                lo, hi = (mid, hi) if value < target else (lo, mid)
            la, lp = (lo, lp) if which == "a" else (la, lo)
    return la, lp


def build_battles(pool: pd.DataFrame, n: int, la: float, lp: float, seed: int, start_id: int) -> pd.DataFrame:
    """``n`` arena-shaped battles in the Kaggle schema (labelled; drop the winner columns for a test file):
    single-turn battles, and one in seven a two-turn battle of two real battles (the vote of the second)."""
    rng = np.random.default_rng(seed)
    single = _single_turn(pool)
    two_turn = rng.random(n) < MULTI_TURN_SHARE
    swapped = rng.random(n) < 0.5
    one = rng.choice(len(single), size=n, p=_weights(single, la, lp))
    first, second = (rng.choice(len(pool), size=n, p=_weights(pool, la, lp)) for _ in range(2))
    rows = []
    for i in range(n):
        if two_turn[i]:
            r1, r2 = pool.iloc[first[i]], pool.iloc[second[i]]
            prompt = [*r1["prompt_turns"], *r2["prompt_turns"]]
            a, b = [*r1["a_turns"], *r2["a_turns"]], [*r1["b_turns"], *r2["b_turns"]]
            label, origin = int(r2["label"]), f"p{first[i]}|p{second[i]}"  # the vote of the last turn
        else:
            r1 = single.iloc[one[i]]
            prompt, a, b, label, origin = list(r1["prompt_turns"]), list(r1["a_turns"]), list(r1["b_turns"]), \
                int(r1["label"]), f"s{one[i]}"  # fmt: skip
        if swapped[i]:
            a, b, label = b, a, int(swap_labels(np.array([label]))[0])
        row = {
            "id": start_id + i,
            "model_a": "unknown",
            "model_b": "unknown",
            "prompt": json.dumps(prompt),
            "response_a": json.dumps(a),
            "response_b": json.dumps(b),
        }
        row.update({c: int(j == label) for j, c in enumerate(CLASS_COLUMNS)})
        row["_origin"] = f"{origin}|{int(swapped[i])}"
        row["_source"] = r1["source"]
        rows.append(row)
    return pd.DataFrame(rows)


def figures(frame: pd.DataFrame) -> dict:
    """What was built: rows, lengths (per side, as the features see them), turns, ties, repeats, sources."""
    turns = {c: frame[c].map(json.loads) for c in ("prompt", "response_a", "response_b")}
    answers = pd.concat([turns["response_a"].map(_chars), turns["response_b"].map(_chars)])
    prompts = turns["prompt"].map(_chars)
    out = {
        "rows": len(frame),
        "mean_response_chars": round(float(answers.mean()), 1),
        "median_response_chars": float(answers.median()),
        "p90_response_chars": float(answers.quantile(0.9)),
        "mean_prompt_chars": round(float(prompts.mean()), 1),
        "median_prompt_chars": float(prompts.median()),
        "multi_turn_share": round(float((turns["prompt"].map(len) > 1).mean()), 4),
        "distinct_battles_share": round(float(frame["_origin"].nunique() / len(frame)), 4),
        "distinct_answer_texts_share": round(float(answers.map(hash).nunique() / len(answers)), 4),
        "source_shares": {k: round(v, 4) for k, v in frame["_source"].value_counts(normalize=True).items()},
    }
    if CLASS_COLUMNS[0] in frame:
        out["class_shares"] = {c: round(float(frame[c].mean()), 4) for c in CLASS_COLUMNS}
    return out


def build(data: Path, work: Path, n_train: int, n_test: int, seed: int) -> dict:
    """Write ``work/train.csv`` (``n_train`` rows) and ``work/test.csv`` (``n_test``); their figures."""
    pool = real_pool(data)
    la, lp = fit_tilts(pool)
    log.info("pool: %d real battles; tilts answer %.3f, prompt %.3f per 1k chars", len(pool), la, lp)
    train = build_battles(pool, n_train, la, lp, seed, 1_000_000)
    test = build_battles(pool, n_test, la, lp, seed + 1, 9_000_000)
    work.mkdir(parents=True, exist_ok=True)
    train.drop(columns=["_origin", "_source"]).to_csv(work / "train.csv", index=False)
    test_cols = ["id", "prompt", "response_a", "response_b"]
    test[test_cols].to_csv(work / "test.csv", index=False)
    built = {
        "pool": {"rows": len(pool), "source": str(data), "sources": pool["source"].value_counts().to_dict()},
        "tilts_per_1k_chars": {"answer": round(la, 4), "prompt": round(lp, 4)},
        "train": figures(train),
        "test": figures(test.drop(columns=list(CLASS_COLUMNS))),
    }
    (work / "built.json").write_text(json.dumps(built, indent=2) + "\n")
    print(json.dumps(built, indent=2), flush=True)
    return built


def timed_command(cmd: list[str], log_path: Path) -> dict:
    """Run ``cmd``; wall seconds, exit code and the peak RSS of its whole process tree."""
    started = time.perf_counter()
    with log_path.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=err, stderr=subprocess.STDOUT)
        with PeakRSS(pid=proc.pid) as mem:
            rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {rc}; see {log_path}")
    return {"wall_s": round(time.perf_counter() - started, 2), "peak_tree_mib": mib(mem.peak), "cpu_s": mem.cpu_s}


def run_size(work: Path, n: int) -> dict:
    """features-only ``full_run`` on the first ``n`` training rows and all test rows."""
    train = work / f"train_{n}.csv"
    pd.read_csv(work / "train.csv", nrows=n).to_csv(train, index=False)
    out = work / f"run_{n}"
    cmd = [sys.executable, "-m", "pipelines.full_run", "--train", str(train), "--test", str(work / "test.csv")]
    cmd += ["--out", str(out), "--no-progress"]
    log.info("full_run on %d training rows", n)
    result = timed_command(cmd, work / f"run_{n}.log")
    timings = json.loads((out / "timings.json").read_text())
    report = json.loads((out / "report.json").read_text())
    result.update(
        rows=n,
        stage_s=timings["seconds"],
        stage_peak_mib=timings["peak_rss_mib"],
        oof_log_loss=round(report["chosen"]["oof_log_loss"], 5),
        features=report["features"]["n_columns"],
    )
    log.info("%d rows: %.0f s wall, peak %.0f MiB", n, result["wall_s"], result["peak_tree_mib"])
    return result


def _seconds(run: dict, stage: str) -> float:
    if stage == "wall_s":
        return run["wall_s"]
    if stage == "fit":
        return sum(run["stage_s"].get(s, 0.0) for s in FIT_STAGES)
    return run["stage_s"].get(stage, 0.0)


def growth(runs: list[dict]) -> dict[str, float]:
    """Per stage, the slope of log seconds on log training rows (1.0: linear)."""
    rows = np.log([r["rows"] for r in runs])
    out = {}
    for stage in [*STAGES, "fit", "wall_s"]:
        secs = [_seconds(r, stage) for r in runs]
        if min(secs) > 0.05:  # a stage that takes no time has no meaningful exponent
            out[stage] = round(float(np.polyfit(rows, np.log(secs), 1)[0]), 3)
    return out


def markdown(res: dict) -> str:
    t = res["data"]["train"]
    lines = [
        "# Arena-scale CPU run (features only)",
        "",
        f"Data: {t['rows']:,} training rows built from {res['data']['pool']['rows']:,} real battles of"
        f" `{res['data']['pool']['source']}` (answers mean {t['mean_response_chars']:.0f} / median"
        f" {t['median_response_chars']:.0f} chars, prompts mean {t['mean_prompt_chars']:.0f},"
        f" {t['multi_turn_share']:.1%} two-turn, {t['distinct_battles_share']:.1%} distinct battles);"
        f" {res['data']['test']['rows']:,} test rows built the same way. Machine: {res['machine']}.",
        "",
        "| training rows | wall s | peak MiB (tree) | " + " | ".join(STAGES) + " | OOF log loss |",
        "|---" * (4 + len(STAGES)) + "|",
    ]
    for r in res["runs"]:
        stages = " | ".join(f"{r['stage_s'].get(s, 0.0):.1f}" for s in STAGES)
        lines.append(
            f"| {r['rows']:,} | {r['wall_s']:.0f} | {r['peak_tree_mib']:.0f} | {stages} | {r['oof_log_loss']} |"
        )
    lines += [
        "",
        "Growth exponent (slope of log seconds on log training rows; `fit` = features + folds + stacker +"
        " calibration + new-source calibration): " + json.dumps(res["growth_exponent"]),
        "",
    ]
    if "predict" in res:
        p = res["predict"]
        lines.append(f"`predict` of {p['rows']:,} test rows with the {p['model_rows']:,}-row bundle:"
                     f" {p['wall_s']:.0f} s, peak {p['peak_tree_mib']:.0f} MiB.")  # fmt: skip
    lines += ["", "Targets: " + json.dumps(res["targets"]), "Verdicts: " + json.dumps(res["verdicts"]), ""]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r["rows"] for r in res["runs"]]
    for stage in [*STAGES, "fit", "wall_s"]:
        secs = [_seconds(r, stage) for r in res["runs"]]
        if max(secs) > 0.5:
            label = {"wall_s": "whole run (wall)", "fit": "fit stages (grow with training rows)"}.get(stage, stage)
            ax.loglog(rows, secs, marker="o", label=label)
    ax.set_xlabel("training rows (25k test rows in every run)")
    ax.set_ylabel("seconds")
    ax.set_title("features-only full_run, arena-shaped data, " + res["machine"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if "holdout" in args.data.resolve().parts:
        raise SystemExit("arena_scale: --data must not be the holdout")
    import os

    machine = f"{os.cpu_count()} CPUs, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"
    built = args.work / "built.json"
    if args.reuse and built.exists():
        data = json.loads(built.read_text())
        if data["train"]["rows"] < max(sizes) or data["test"]["rows"] != args.test_rows:
            raise SystemExit(f"{built}: built for other sizes; run without --reuse")
    else:
        data = build(args.data, args.work, max(sizes), args.test_rows, args.seed)
    if args.build_only:
        return 0
    runs = [run_size(args.work, n) for n in sizes]
    res: dict = {"command": "python benchmarks/arena_scale.py " + " ".join(argv or sys.argv[1:]), "machine": machine}
    res.update(data=data, runs=runs, growth_exponent=growth(runs) if len(runs) > 1 else {})
    res["predict"] = time_predict(args.work, runs[-1]["rows"], args.test_rows)
    res["targets"] = TARGETS
    res["verdicts"] = verdicts(res, runs[-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(res))
    plot(res, args.out.with_suffix(".png"))
    print(markdown(res))
    print(f"wrote {args.out}.json/.md/.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "arena_scale")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "arena_scale")
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    p.add_argument("--test-rows", type=int, default=ARENA_TEST_ROWS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-only", action="store_true", help="build the data set (and its figures), run nothing")
    p.add_argument("--reuse", action="store_true", help="use the data set an earlier call built in --work")
    return p


def time_predict(work: Path, model_rows: int, test_rows: int) -> dict:
    """``pipelines.predict`` with the biggest run's model on the test rows: time and peak memory."""
    model = work / f"run_{model_rows}" / "model"
    cmd = [sys.executable, "-m", "pipelines.predict", "--model", str(model), "--test", str(work / "test.csv")]
    cmd += ["--out", str(work / "predict_submission.csv")]
    return {**timed_command(cmd, work / "predict.log"), "rows": test_rows, "model_rows": model_rows}


def verdicts(res: dict, biggest: dict) -> dict:
    """Each target met or not, judged on the biggest run and the growth between sizes."""
    cpu_part = biggest["wall_s"] / 60
    return {
        "cpu_minutes": round(cpu_part, 2),
        "cpu_minutes_ok": cpu_part <= TARGETS["cpu_minutes"],
        "peak_gib": round(biggest["peak_tree_mib"] / 1024, 2),
        "peak_ok": biggest["peak_tree_mib"] / 1024 <= TARGETS["peak_gib"],
        # judged on the stages that grow with the training rows: the whole run's slope is flattered by the fixed
        # 25k test rows every run scores
        "growth_exponent_fit_stages": res["growth_exponent"].get("fit"),
        "growth_exponent_whole_run": res["growth_exponent"].get("wall_s"),
        "growth_ok": res["growth_exponent"].get("fit", 0.0) <= TARGETS["growth_exponent"],
        "predict_minutes": round(res["predict"]["wall_s"] / 60, 2),
        "predict_ok": res["predict"]["wall_s"] / 60 <= TARGETS["predict_minutes"],
    }


if __name__ == "__main__":
    sys.exit(main())
