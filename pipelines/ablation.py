"""Which feature groups pay, and what biases the stacker learned: an ablation report.

    python -m pipelines.ablation [--train T.csv --test S.csv] [--out DIR] [--params best_params.json]

For every feature group (length, lexical, overlap, readability, formatting, and each extra
probability source on its own) the stacker is refitted without it (drop-one) and with it alone
(only-this), on the run's saved folds with the same seed, each scored by calibrated nested OOF
log loss. Differences to the full model are paired per fold (same rows, same seeds), so their
spread over folds says whether a group's effect is larger than fold-to-fold noise.

Also: LightGBM gain importance, reliability before/after calibration, and the two biases the
competition names: verbosity (length difference) and position (A vs B).
Writes ``DIR/ablation/ablation.{json,md,html}`` and PNGs; the JSON is a pure function of the
data, folds, seed and settings (no timings), so two runs give identical files.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from arena_schema import swap_feature_frame, swap_proba
from features.extractor import group_columns
from features.groups import GROUPS
from pipelines.cli import add_data_args, add_stacker_choice_args, apply_params_file, run_config_from_args
from pipelines.config import RunConfig
from pipelines.metrics import nested_prior, summarize
from pipelines.stacker_inputs import StackerInputs, prepare_inputs
from stacking.cross_fit import CalibratedFit, CrossFitResult, fit_calibrated
from stacking.sources import source_name_of

log = logging.getLogger("arena_pref.ablation")

CLASSES = ("a", "b", "tie")


@dataclass
class AblationConfig:
    """Report settings (the stacker's come from ``RunConfig.stacker``)."""

    reliability_bins: int = 10
    length_buckets: int = 10
    top_features: int = 30


# --------------------------------------------------------------------------- groups and variants


def feature_groups(columns: list[str]) -> dict[str, list[str]]:
    """Handcrafted groups in their canonical order, then one group per probability source.

    Groups are whole (an ``a_`` column always with its ``b_`` partner), so any variant stays
    swap-symmetric; columns of no known group go to "other" rather than being silently kept.
    """
    handcrafted = group_columns(columns)
    out = {name: handcrafted[name] for name in GROUPS if name in handcrafted}
    placed = {c for cols in out.values() for c in cols}
    for col in columns:
        source = source_name_of(col)
        if source is not None and col not in placed:
            out.setdefault(f"source:{source}", []).append(col)
            placed.add(col)
    other = [c for c in columns if c not in placed]
    if other:
        log.warning("%d column(s) belong to no known group; ablated together as 'other': %s", len(other), other[:5])
        out["other"] = other
    return out


def variant_columns(columns: list[str], groups: dict[str, list[str]]) -> dict[str, list[str]]:
    """``full``, then ``drop:<group>`` and ``only:<group>`` for every group (column order kept)."""
    variants = {"full": list(columns)}
    for name, cols in groups.items():
        members = set(cols)
        variants[f"drop:{name}"] = [c for c in columns if c not in members]
        variants[f"only:{name}"] = [c for c in columns if c in members]
    return {k: v for k, v in variants.items() if v}  # dropping the only group leaves nothing to fit


def fit_variant(inputs: StackerInputs, columns: list[str], config: RunConfig) -> CalibratedFit:
    """Cross-fitted stacker on ``columns`` plus nested calibration, exactly as ``full_run`` fits it."""
    return fit_calibrated(inputs.X[columns], inputs.y, inputs.folds, config.stacker, config.seed, groups=inputs.groups)


def score(y: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> dict:
    """Log loss overall and per fold (a list in fold order), per class and accuracy."""
    s = summarize(y, proba, folds)
    return {
        "log_loss": s["log_loss"],
        "per_fold": [s["per_fold"][k] for k in sorted(s["per_fold"])],
        "per_class": s["per_class"],
        "accuracy": s["accuracy"],
    }


def paired_difference(variant: list[float], full: list[float]) -> dict:
    """Per-fold variant − full: positive means the variant is worse on that fold."""
    diff = np.asarray(variant) - np.asarray(full)
    return {
        "per_fold": diff.tolist(),
        "mean": float(diff.mean()),
        "std": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
        "folds_worse": int((diff > 0).sum()),
        "n_folds": len(diff),
    }


# --------------------------------------------------------------------------- diagnostics of the full model


def gain_importance(result: CrossFitResult, groups: dict[str, list[str]], top: int) -> dict:
    """Gain summed over the fold boosters (each at its best iteration): top features and group shares."""
    total: dict[str, float] = {}
    for model in result.models:
        booster = model.fitted_booster()
        gains = booster.feature_importance(importance_type="gain", iteration=model.best_iteration_)
        for name, gain in zip(booster.feature_name(), gains):
            total[name] = total.get(name, 0.0) + float(gain)
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    grand = sum(total.values()) or 1.0
    by_group = {name: sum(total.get(c, 0.0) for c in cols) / grand for name, cols in groups.items()}
    return {
        "top": [{"feature": f, "gain": g} for f, g in ranked[:top]],
        "by_group": dict(sorted(by_group.items(), key=lambda kv: -kv[1])),
    }


def reliability(y: np.ndarray, proba: np.ndarray, n_bins: int) -> dict:
    """Per class: equal-width bins of predicted probability with observed frequency, and ECE."""
    out = {}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for c, name in enumerate(CLASSES):
        p, hit = proba[:, c], (y == c).astype(float)
        index = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
        bins: list[dict[str, Any]] = []
        for b in range(n_bins):
            mask = index == b
            n = int(mask.sum())
            bins.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": n,
                    "mean_predicted": float(p[mask].mean()) if n else None,
                    "observed": float(hit[mask].mean()) if n else None,
                }
            )
        ece = sum(b["n"] * abs(b["observed"] - b["mean_predicted"]) for b in bins if b["n"]) / len(y)
        out[name] = {"bins": bins, "ece": float(ece)}
    return out


def length_log_ratio(battles: pd.DataFrame) -> np.ndarray:
    """log(1 + chars of A) − log(1 + chars of B): the length group's ``logratio_chars``, computed
    from the texts so the verbosity check works whichever groups the stacker used."""
    chars_a = battles["a_turns"].map(lambda turns: len("\n\n".join(turns))).to_numpy(dtype=float)
    chars_b = battles["b_turns"].map(lambda turns: len("\n\n".join(turns))).to_numpy(dtype=float)
    return np.log1p(chars_a) - np.log1p(chars_b)


def verbosity(y: np.ndarray, proba: np.ndarray, ratio: np.ndarray, n_buckets: int) -> list[dict]:
    """Predicted beside observed class rates in quantile buckets of the length log ratio."""
    codes, edges = pd.qcut(ratio, q=n_buckets, labels=False, retbins=True, duplicates="drop")
    buckets = []
    for b in range(len(edges) - 1):
        mask = codes == b
        if not mask.any():
            continue
        row = {"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(mask.sum())}
        for c, name in enumerate(CLASSES):
            row[f"predicted_{name}"] = float(proba[mask, c].mean())
            row[f"observed_{name}"] = float((y[mask] == c).mean())
        buckets.append(row)
    return buckets


def max_swap_gap(result: CrossFitResult, inputs: StackerInputs, columns: list[str]) -> float:
    """max |p(A wins | A, B) − p(B wins | B, A)| over OOF rows: 0 up to float error by construction."""
    gap = 0.0
    for k, model in zip(result.fold_ids, result.models):
        held = inputs.folds == k
        X = inputs.X.loc[held, columns]
        direct = model.predict_proba(X)
        swapped = swap_proba(model.predict_proba(swap_feature_frame(X)))
        gap = max(gap, float(np.abs(direct - swapped).max()))
    return gap


def position(y: np.ndarray, proba: np.ndarray, swap_gap: float) -> dict:
    """Mean predicted class probabilities beside observed rates (95% CI), and the data's own
    A-vs-B position bias: the share of A wins among decided battles, with a binomial test."""
    n = len(y)
    observed = {name: float((y == c).mean()) for c, name in enumerate(CLASSES)}
    decided_a, decided = int((y == 0).sum()), int((y != 2).sum())
    share = decided_a / decided if decided else None
    return {
        "rows": n,
        "predicted": {name: float(proba[:, c].mean()) for c, name in enumerate(CLASSES)},
        "observed": observed,
        "observed_ci95": {k: float(1.96 * np.sqrt(v * (1 - v) / n)) for k, v in observed.items()},
        "predicted_a_minus_b": float(proba[:, 0].mean() - proba[:, 1].mean()),
        "observed_a_minus_b": observed["a"] - observed["b"],
        "a_share_of_decided": share,
        "a_share_p_value": float(binomtest(decided_a, decided, 0.5).pvalue) if decided else None,
        "max_swap_gap": swap_gap,
    }


# --------------------------------------------------------------------------- the run


def run_ablation(config: RunConfig, settings: AblationConfig | None = None) -> dict:
    """Fit every variant, compute the diagnostics, write JSON, Markdown, HTML and PNGs."""
    settings = settings or AblationConfig()
    start = time.perf_counter()
    out = config.out / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(config)
    columns = list(inputs.X.columns)
    groups = feature_groups(columns)
    y, folds = inputs.y, inputs.folds
    prior = score(y, nested_prior(y, folds), folds)

    variants: dict[str, dict] = {}
    full = None
    for name, cols in variant_columns(columns, groups).items():
        log.info("ablation variant %s: %d column(s)", name, len(cols))
        fit = fit_variant(inputs, cols, config)
        result, calibrated = fit.raw, fit.oof_cal
        variants[name] = {
            "n_columns": len(cols),
            **score(y, calibrated, folds),
            "log_loss_uncalibrated": summarize(y, result.oof, folds)["log_loss"],
        }
        if name == "full":
            full = (result, calibrated)
    for v in variants.values():
        v["diff_vs_full"] = paired_difference(v["per_fold"], variants["full"]["per_fold"])

    assert full is not None  # variant_columns always has 'full'
    result, calibrated = full
    report = {
        "config": {
            "train": str(config.train_path),
            "rows": len(y),
            "n_folds": len(np.unique(folds)),
            "seed": config.seed,
            "calibration": config.stacker.calibration,
            "params": config.stacker.params,
            "stacker": {  # num_threads changes speed, never results: left out so the JSON is machine-independent
                k: v for k, v in asdict(config.stacker).items() if k not in ("params", "calibration", "num_threads")
            },
            "feature_groups": list(config.features.groups),
            "sources": list(config.extra_sources),
            "settings": asdict(settings),
        },
        "folds": sorted(int(k) for k in np.unique(folds)),
        "groups": groups,
        "prior": prior,
        "variants": variants,
        "importance": gain_importance(result, groups, settings.top_features),
        "reliability": {
            "before": reliability(y, result.oof, settings.reliability_bins),
            "after": reliability(y, calibrated, settings.reliability_bins),
        },
        "verbosity": verbosity(y, calibrated, length_log_ratio(inputs.train), settings.length_buckets),
        "position": position(y, calibrated, max_swap_gap(result, inputs, columns)),
    }
    write_outputs(report, out, time.perf_counter() - start)
    return report


def group_rows(report: dict) -> list[dict]:
    """One row per group, sorted by how much dropping it hurts (the groups that pay first)."""
    rows = []
    for name in report["groups"]:
        row = {"group": name, "n_columns": len(report["groups"][name])}
        for kind in ("drop", "only"):
            v = report["variants"].get(f"{kind}:{name}")
            d = v["diff_vs_full"] if v else {"mean": float("nan"), "std": float("nan"), "folds_worse": 0, "n_folds": 0}
            row[kind] = {
                "log_loss": v["log_loss"] if v else float("nan"),
                "diff_mean": d["mean"],
                "diff_std": d["std"],
                "folds_worse": d["folds_worse"],
                "n_folds": d["n_folds"],
            }
        rows.append(row)
    return sorted(rows, key=lambda r: -np.nan_to_num(r["drop"]["diff_mean"], nan=-np.inf))


# --------------------------------------------------------------------------- rendering (one content, two formats)


def report_blocks(report: dict, images: dict[str, str], wall_s: float) -> list[tuple]:
    """The report as blocks — ("h1"|"h2"|"p", text), ("table", header, rows), ("img", file, alt) —
    so the Markdown and the HTML show the same tables."""
    full = report["variants"]["full"]
    cfg = report["config"]
    rows = group_rows(report)
    blocks: list[tuple] = [
        ("h1", "arena-pref ablation report"),
        (
            "p",
            (
                f"train {cfg['train']} ({cfg['rows']} rows), {cfg['n_folds']} grouped folds, seed {cfg['seed']}, "
                f"calibration {cfg['calibration']}, stacker overrides {cfg['params'] or 'none'}; "
                f"wall time {wall_s:.0f} s."
            ),
        ),
        (
            "p",
            (
                f"Full model calibrated OOF log loss {full['log_loss']:.4f} (uncalibrated "
                f"{full['log_loss_uncalibrated']:.4f}); class prior {report['prior']['log_loss']:.4f}. "
                "Every number is out-of-fold, each variant on the same folds with the same seed."
            ),
        ),
        ("h2", "Feature groups"),
        (
            "p",
            (
                "Δ = variant − full, paired per fold (mean ± std over folds). Drop-one Δ > 0: the group pays "
                "(removing it hurts); 'folds worse' counts folds where the variant lost to the full model."
            ),
        ),
        (
            "table",
            ["group", "columns", "drop-one log loss", "drop-one Δ", "folds worse", "only-this log loss", "only-this Δ"],
            [
                [
                    r["group"],
                    r["n_columns"],
                    f"{r['drop']['log_loss']:.4f}",
                    f"{r['drop']['diff_mean']:+.4f} ± {r['drop']['diff_std']:.4f}",
                    f"{r['drop']['folds_worse']}/{r['drop']['n_folds']}",
                    f"{r['only']['log_loss']:.4f}",
                    f"{r['only']['diff_mean']:+.4f} ± {r['only']['diff_std']:.4f}",
                ]
                for r in rows
            ],
        ),
        (
            "table",
            ["model", *[f"fold {k}" for k in report["folds"]], "overall"],
            [
                [name, *[f"{x:.4f}" for x in v["per_fold"]], f"{v['log_loss']:.4f}"]
                for name, v in [("class prior", report["prior"]), *report["variants"].items()]
            ],
        ),
        ("img", images["ablation"], "ablation: paired differences"),
        ("h2", "LightGBM gain importance (full model, summed over fold boosters)"),
        ("table", ["group", "share of gain"], [[g, f"{s:.3f}"] for g, s in report["importance"]["by_group"].items()]),
        ("img", images["importance_groups"], "gain by group"),
        ("table", ["feature", "gain"], [[t["feature"], f"{t['gain']:.1f}"] for t in report["importance"]["top"]]),
        ("img", images["importance_top"], "top features by gain"),
        ("h2", "Calibration (reliability, OOF)"),
        (
            "table",
            ["class", "ECE before", "ECE after"],
            [
                [
                    c,
                    f"{report['reliability']['before'][c]['ece']:.4f}",
                    f"{report['reliability']['after'][c]['ece']:.4f}",
                ]
                for c in CLASSES
            ],
        ),
        ("img", images["reliability"], "reliability diagram"),
        ("h2", "Verbosity bias: outcome by length difference"),
        ("p", "Buckets are quantiles of log(1+chars A) − log(1+chars B); predicted = calibrated OOF mean."),
        (
            "table",
            ["length log ratio", "rows", "pred P(A)", "obs A", "pred P(B)", "obs B", "pred P(tie)", "obs tie"],
            [
                [
                    f"{b['low']:+.2f} .. {b['high']:+.2f}",
                    b["n"],
                    *[f"{b[f'{k}_{c}']:.3f}" for c in CLASSES for k in ("predicted", "observed")],
                ]
                for b in report["verbosity"]
            ],
        ),
        ("img", images["verbosity"], "verbosity"),
        ("h2", "Position bias and swap consistency"),
    ]
    pos = report["position"]
    share = pos["a_share_of_decided"]
    blocks += [
        (
            "p",
            f"The stacker is swap-symmetric: max |p(A|A,B) − p(B|B,A)| over OOF rows = {pos['max_swap_gap']:.2e}. "
            f"In the data, A won {share:.3f} of decided battles (binomial test vs 0.5: p = "
            f"{pos['a_share_p_value']:.3g})."
            if share is not None
            else f"max swap gap {pos['max_swap_gap']:.2e}; no decided battles.",
        ),
        (
            "table",
            ["", "A wins", "B wins", "tie", "A − B"],
            [
                [
                    "mean predicted (OOF)",
                    *[f"{pos['predicted'][c]:.4f}" for c in CLASSES],
                    f"{pos['predicted_a_minus_b']:+.4f}",
                ],
                [
                    "observed (± 95% CI)",
                    *[f"{pos['observed'][c]:.4f} ± {pos['observed_ci95'][c]:.4f}" for c in CLASSES],
                    f"{pos['observed_a_minus_b']:+.4f}",
                ],
            ],
        ),
        ("img", images["position"], "position"),
    ]
    return blocks


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += [("# " if kind == "h1" else "## ") + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            header, rows = block[1], block[2]
            lines += ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def render_html(blocks: list[tuple]) -> str:
    e = html.escape
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{e(block[1])}</{kind}>")
        elif kind == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f'<p><img src="{e(block[1])}" alt="{e(block[2])}" style="max-width:100%"></p>')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>arena-pref ablation</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_outputs(report: dict, out: Path, wall_s: float) -> dict[str, Path]:
    from pipelines import plots

    images = {
        "ablation": "ablation.png",
        "importance_top": "importance_top.png",
        "importance_groups": "importance_groups.png",
        "reliability": "reliability.png",
        "verbosity": "verbosity.png",
        "position": "position.png",
    }
    plots.ablation_bars(group_rows(report), out / images["ablation"])
    plots.importance_plots(
        report["importance"]["top"],
        report["importance"]["by_group"],
        out / images["importance_top"],
        out / images["importance_groups"],
    )
    plots.reliability_diagram(report["reliability"], out / images["reliability"])
    plots.verbosity_plot(report["verbosity"], out / images["verbosity"])
    plots.position_plot(report["position"], out / images["position"])
    blocks = report_blocks(report, images, wall_s)
    paths = {"json": out / "ablation.json", "md": out / "ablation.md", "html": out / "ablation.html"}
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["md"].write_text(render_markdown(blocks))
    paths["html"].write_text(render_html(blocks))
    log.info("ablation: full OOF log loss %.4f; wrote %s", report["variants"]["full"]["log_loss"], paths["md"])
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_args(p)
    add_stacker_choice_args(p)
    p.add_argument("--top-features", type=int, default=AblationConfig.top_features)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    config = run_config_from_args(args)
    apply_params_file(config, args)
    from pipelines.preflight import check_run

    check_run(config)
    run_ablation(config, AblationConfig(top_features=args.top_features))
    return 0


if __name__ == "__main__":
    from pipelines.errors import run_command

    sys.exit(run_command(main))
