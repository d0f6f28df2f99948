"""The analysis half of ``benchmarks/new_source_calibration.py``: candidates scored on cached predictions,
the shift detector's AUCs, the tables and the reliability diagrams."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import TIE
from pipelines.data.source_folds import source_groups
from pipelines.reports.metrics import reliability
from pipelines.reports.plots import class_reliability
from stacking.calibration import ProbabilityCalibrator
from stacking.metrics import multiclass_log_loss
from stacking.new_source import KINDS, LABEL_SHIFTS, WEIGHTINGS, NewSourceCalibrator, NewSourceProcedure
from stacking.shift_detection import ShiftDetector
from stacking.source_holdout import eligible_holdouts, source_training_rows

log = logging.getLogger("new_source_calibration")

TODAY = "in-source temperature (today)"
NONE = "none (uncalibrated)"
PROCEDURES = [NewSourceProcedure(k, w, s) for k in KINDS for w in WEIGHTINGS for s in LABEL_SHIFTS]


def scores(y: np.ndarray, proba: np.ndarray) -> dict:
    tie = y == TIE
    return {
        "log_loss": multiclass_log_loss(y, proba),
        "tie_loss": float(-np.log(np.clip(proba[tie, 2], 1e-15, 1.0)).mean()) if tie.any() else float("nan"),
        "mean_p_tie": float(proba[:, TIE].mean()),
    }


def candidate_predictions(battles: pd.DataFrame, work: Path, seed: int, holdouts: list[str]) -> dict:
    """{candidate: {held-out source: calibrated LOSO probabilities}} for one seed."""
    y = battles["label"].to_numpy()
    source = battles["source"].to_numpy().astype(str)
    primary = battles["source_has_ties"].to_numpy(dtype=bool)
    d = work / f"seed{seed}"
    with_today = all((d / f"insource_{h}.npy").exists() for h in holdouts)
    out: dict[str, dict[str, np.ndarray]] = {NONE: {}, **({TODAY: {}} if with_today else {})}
    out.update({p.name: {} for p in PROCEDURES})
    for h in holdouts:
        loso = np.load(d / f"loso_{h}.npy")
        out[NONE][h] = loso
        if with_today:
            insource = np.load(d / f"insource_{h}.npy")
            rows = ~np.isnan(insource[:, 0]) & primary
            out[TODAY][h] = ProbabilityCalibrator("temperature").fit(insource[rows], y[rows]).predict_proba(loso)
        inner = [(s, np.load(d / f"inner_{h}__{s}.npy")) for s in holdouts if s != h]
        proba = np.vstack([p for _, p in inner])
        inner_y = np.concatenate([y[source == s] for s, _ in inner])
        inner_source = np.concatenate([np.full(len(p), s) for s, p in inner])
        for procedure in PROCEDURES:
            cal = NewSourceCalibrator(procedure).fit(proba, inner_y, inner_source)
            out[procedure.name][h] = cal.predict_proba(loso)
    return out


def evaluate(battles: pd.DataFrame, work: Path, seeds: list[int]) -> tuple[dict, dict]:
    """Per seed, candidate and held-out source: scores; and the candidates' predictions of the first seed."""
    y = battles["label"].to_numpy()
    source = battles["source"].to_numpy().astype(str)
    holdouts = eligible_holdouts(source, battles["source_has_ties"].to_numpy(dtype=bool))
    per_seed: dict[int, dict] = {}
    first: dict = {}
    for seed in seeds:
        needed = [f"loso_{h}.npy" for h in holdouts] + [
            f"inner_{h}__{o}.npy" for h in holdouts for o in holdouts if o != h
        ]
        if not all((work / f"seed{seed}" / name).exists() for name in needed):
            log.warning("seed %d is not complete in %s: left out", seed, work)
            continue
        preds = candidate_predictions(battles, work, seed, holdouts)
        per_seed[seed] = {c: {h: scores(y[source == h], p[h]) for h in holdouts} for c, p in preds.items()}
        first = first or preds
    return per_seed, first


def summarise(per_seed: dict, baseline: dict | None = None, against: str = TODAY) -> list[dict]:
    """Macro over held-out sources per seed; paired deltas against ``against`` (a candidate of the same
    variant, today's in-source temperature unless named), or (``baseline``: another feature variant's
    per-seed scores) against the same candidate there."""
    rows = []
    seeds = sorted(per_seed)
    if baseline is not None:
        seeds = [s for s in seeds if s in baseline]
    ref = baseline if baseline is not None else per_seed
    for cand in per_seed[seeds[0]]:
        key = cand if baseline is not None else against
        if key not in ref[seeds[0]]:
            continue
        macro = {
            s: {
                m: float(np.mean([v[m] for v in per_seed[s][cand].values()]))
                for m in ("log_loss", "tie_loss", "mean_p_tie")
            }
            for s in seeds
        }
        today = {s: float(np.mean([v["log_loss"] for v in ref[s][key].values()])) for s in seeds}
        ref_tie = {s: float(np.mean([v["tie_loss"] for v in ref[s][key].values()])) for s in seeds}
        deltas = [macro[s]["log_loss"] - today[s] for s in seeds]
        rows.append(
            {
                "candidate": cand,
                "log_loss": [macro[s]["log_loss"] for s in seeds],
                "tie_loss": [macro[s]["tie_loss"] for s in seeds],
                "mean_p_tie": [macro[s]["mean_p_tie"] for s in seeds],
                "delta_vs_today": deltas,
                "tie_delta": [macro[s]["tie_loss"] - ref_tie[s] for s in seeds],
                "better_every_seed": bool(all(d < 0 for d in deltas)),
                "per_source": {
                    h: float(np.mean([per_seed[s][cand][h]["log_loss"] for s in seeds]))
                    for h in per_seed[seeds[0]][cand]
                },
            }
        )
    return rows


def shift_study(battles: pd.DataFrame, X: pd.DataFrame, seed: int = 0) -> dict:
    """The detector's AUC for each held-out source against the others (positives) and for a random
    half of each source's groups against the rest (negatives: the Kaggle situation)."""
    source = battles["source"].to_numpy().astype(str)
    groups = source_groups(battles)
    holdouts = eligible_holdouts(source, battles["source_has_ties"].to_numpy(dtype=bool))
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {"held_out_source": {}, "same_source_split": {}}
    for h in holdouts:
        train = source_training_rows(source, groups, [h])
        held = source == h
        det = ShiftDetector(seed=seed).fit(X[train], source[train], X[held], groups[train], groups[held])
        out["held_out_source"][h] = det.report_.to_dict()
        log.info("shift: %s held out: AUC %.3f (closest %s)", h, det.report_.auc, det.report_.closest)
    for s in holdouts:
        own = np.unique(groups[source == s])
        half = set(rng.choice(own, len(own) // 2, replace=False).tolist())
        scored = (source == s) & np.isin(groups, list(half))
        reference = ~np.isin(groups, list(half))
        det = ShiftDetector(seed=seed)
        det.fit(X[reference], source[reference], X[scored], groups[reference], groups[scored])
        out["same_source_split"][s] = det.report_.to_dict()
        log.info("shift: %s half vs rest: AUC %.3f (closest %s)", s, det.report_.auc, det.report_.closest)
    return out


def write(rows: list[dict], shift: dict | None, meta: dict, out: Path) -> Path:
    """results.json as measured, results.md with the candidates best first."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "candidates": rows, "shift": shift}, indent=2))
    rows = sorted(rows, key=lambda r: float(np.mean(r["log_loss"])))
    lines = _candidate_lines(rows, meta) + _per_source_lines(rows) + _shift_lines(shift)
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _candidate_lines(rows: list[dict], meta: dict) -> list[str]:
    """The title, how the study was run, and one row per candidate: macro log loss and its paired deltas."""
    lines = [
        "# New-source calibration: nested leave-one-source-out",
        "",
        f"Data: {meta['data']}. Held-out sources: {', '.join(meta['holdouts'])}. Fold seeds: {meta['seeds']}.",
        f"Command: `{meta['command']}`",
        "",
        "Each candidate is fitted on predictions of models that never saw the held-out source (leave-two-out),",
        "then scores that source's LOSO predictions. Macro mean over held-out sources, per seed; Δ paired per",
        f"seed against {meta['paired_against']} (tie-row Δ likewise). Lower is better.",
        "",
        "| candidate | log loss (mean) | per seed | Δ per seed | better every seed | tie-row loss | tie-row Δ per seed"
        " | mean P(tie) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['candidate']} | {np.mean(r['log_loss']):.4f} | {', '.join(f'{v:.4f}' for v in r['log_loss'])} |"
            f" {', '.join(f'{v:+.4f}' for v in r['delta_vs_today'])} | {'yes' if r['better_every_seed'] else 'no'} |"
            f" {np.mean(r['tie_loss']):.3f} | {', '.join(f'{v:+.3f}' for v in r['tie_delta'])} |"
            f" {np.mean(r['mean_p_tie']):.3f} |"
        )
    return lines


def _per_source_lines(rows: list[dict]) -> list[str]:
    """Each candidate's log loss per held-out source (mean over seeds)."""
    sources = list(rows[0]["per_source"])
    lines = ["", "Per held-out source (mean over seeds):", "", "| candidate | " + " | ".join(sources) + " |"]
    lines.append("|---|" + "---|" * len(sources))
    for r in rows:
        lines.append(f"| {r['candidate']} | " + " | ".join(f"{r['per_source'][s]:.4f}" for s in sources) + " |")
    return lines


def _shift_lines(shift: dict | None) -> list[str]:
    """The shift detector's AUC per case and source (nothing when there is no shift study)."""
    if not shift:
        return []
    lines = [
        "",
        "## Shift detector (adversarial validation)",
        "",
        "AUC of a classifier telling the scored rows from each training source (the closest source shown),",
        "with a 95% interval. Positives: each source held out against the others. Negatives: a random half",
        "of a source's prompt groups against the rest (the Kaggle situation).",
        "",
        "| case | source | closest training source | AUC | 95% interval | new source? |",
        "|---|---|---|---|---|---|",
    ]
    for case, per in shift.items():
        for s, r in per.items():
            lines.append(
                f"| {case} | {s} | {r['closest_source']} | {r['auc']:.3f} |"
                f" {r['interval_95'][0]:.3f}–{r['interval_95'][1]:.3f} | {'yes' if r['new_source'] else 'no'} |"
            )
    return lines


def analyse(
    battles: pd.DataFrame,
    X: pd.DataFrame,
    work_root: Path,
    tag: str,
    seeds: list[int],
    out: Path,
    command: str,
    baseline_tag: str = "features",
    against: str | None = None,
) -> None:
    """Score every candidate on the cached predictions of ``tag``; write results.{json,md} and PNGs.
    A variant without in-source OOF (a feature variant) is paired against ``baseline_tag``, unless
    ``against`` names a candidate of the same variant to pair every other candidate with."""
    per_seed, first = evaluate(battles, work_root / tag, seeds)
    if against is not None and against not in next(iter(per_seed.values())):
        raise ValueError(f"--against {against!r} is not a candidate; candidates: {list(first)}")
    baseline = None
    if tag != baseline_tag and against is None:  # each candidate paired against itself in the baseline variant
        baseline = evaluate(battles, work_root / baseline_tag, seeds)[0]
    rows = summarise(per_seed, baseline, against or TODAY)
    source = battles["source"].to_numpy().astype(str)
    holdouts = eligible_holdouts(source, battles["source_has_ties"].to_numpy(dtype=bool))
    lengths = battles["a_turns"].map(lambda t: len("\n".join(t))).mean()
    meta = {
        "data": f"{len(battles)} rows, {battles['source'].nunique()} sources (combined shared data),"
        f" mean answer A {lengths:.0f} chars",
        "holdouts": holdouts,
        "seeds": sorted(per_seed),
        "tag": tag,
        "command": command,
    }
    shift = _shift_of(battles, X, out, tag)
    meta["paired_against"] = (
        f"variant {baseline_tag!r}" if baseline is not None else (against or "today's in-source temperature")
    )
    out = out / tag if against is None else out / f"{tag}_vs_{against.replace('/', '_')}"
    write(rows, shift, meta, out)
    _draw_reliability(battles, first, holdouts, out)
    print((out / "results.md").read_text())


def _shift_of(battles: pd.DataFrame, X: pd.DataFrame, out: Path, tag: str) -> dict | None:
    """The shift study saved in ``out/shift.json``; run (and saved) by the features variant when missing."""
    shift_path = out / "shift.json"
    shift = json.loads(shift_path.read_text()) if shift_path.exists() else None
    if shift is None and tag == "features":
        shift = shift_study(battles, X)
        out.mkdir(parents=True, exist_ok=True)
        shift_path.write_text(json.dumps(shift, indent=2))
    return shift


def _draw_reliability(battles: pd.DataFrame, first: dict, holdouts: list[str], out: Path) -> None:
    """Reliability of the pooled held-out sources (first seed) before and after the product's procedure."""
    y = battles["label"].to_numpy()
    source = battles["source"].to_numpy().astype(str)
    chosen = NewSourceProcedure().name  # the product's procedure, drawn before and after
    for name in ([TODAY] if TODAY in first else [NONE]) + [chosen]:
        proba = np.vstack([first[name][h] for h in holdouts])
        labels = np.concatenate([y[source == h] for h in holdouts])
        slug = {TODAY: "today", NONE: "uncalibrated"}.get(name, "chosen")
        class_reliability(
            reliability(labels, proba),
            name.split(" (")[0],
            out / f"reliability_{slug}.png",
        )
