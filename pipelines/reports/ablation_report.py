"""The ablation report (``pipelines.ablation``): the group table with paired per-fold deltas, gain
importance, reliability, the verbosity and position biases, rendered once as Markdown and HTML with PNG plots.
The fits are ``pipelines.experiments.ablation``'s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from arena_schema import CLASS_NAMES
from pipelines.reports.report_blocks import render_html, render_markdown

log = logging.getLogger("arena_pref.ablation")


def group_rows(report: dict) -> list[dict]:
    """One row per group, sorted by how much dropping it hurts (the groups that pay first)."""
    rows = []
    for name in report["groups"]:
        row = {"group": name, "n_columns": len(report["groups"][name])}
        for kind in ("drop", "only"):
            v = report["variants"].get(f"{kind}:{name}")
            nan = float("nan")
            d = (
                v["diff_vs_full"]
                if v
                else {"mean": nan, "std": nan, "folds_worse": 0, "folds_improved": 0, "n_folds": 0}
            )
            row[kind] = {
                "log_loss": v["log_loss"] if v else nan,
                "diff_mean": d["mean"],
                "diff_std": d["std"],
                "folds_worse": d["folds_worse"],
                "folds_improved": d["folds_improved"],
                "n_folds": d["n_folds"],
            }
        rows.append(row)
    return sorted(rows, key=lambda r: -np.nan_to_num(r["drop"]["diff_mean"], nan=-np.inf))


# --------------------------------------------------------------------------- rendering (one content, two formats)


def delta_note(fold_seeds: int) -> str:
    """How the Δ column was computed (one seed: spread over folds; several: over the seeds)."""
    if fold_seeds <= 1:
        spread = "mean ± std over folds"
    else:
        spread = (
            f"paired per fold within each of {fold_seeds} fold seeds; mean ± std over the seeds of the per-seed mean Δ"
        )
    return (
        f"Δ = variant − full ({spread}). Drop-one Δ > 0: the group pays (removing it hurts); 'folds worse' / "
        "'folds improved' count folds (all seeds) where the variant lost to / beat the full model. "
        "Log loss columns are the run's own folds."
    )


def report_blocks(report: dict, images: dict[str, str], wall_s: float) -> list[tuple]:
    """The report as blocks — ("h1"|"h2"|"p", text), ("table", header, rows), ("img", file, alt) —
    so the Markdown and the HTML show the same tables."""
    return [
        *_summary_blocks(report, wall_s),
        *_group_blocks(report, images),
        *_importance_blocks(report, images),
        *_calibration_blocks(report, images),
        *_verbosity_blocks(report, images),
        *_position_blocks(report, images),
    ]


def _summary_blocks(report: dict, wall_s: float) -> list[tuple]:
    """Title, the run's settings and the full model's log loss: what every table below is measured against."""
    full = report["variants"]["full"]
    cfg = report["config"]
    return [
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
    ]


def _group_blocks(report: dict, images: dict[str, str]) -> list[tuple]:
    """The drop-one / only-this table with paired deltas, then every variant's per-fold log loss."""
    return [
        ("h2", "Feature groups"),
        ("p", delta_note(report["config"].get("fold_seeds", 1))),
        (
            "table",
            [
                "group",
                "columns",
                "drop-one log loss",
                "drop-one Δ",
                "folds worse",
                "folds improved",
                "only-this log loss",
                "only-this Δ",
            ],
            [
                [
                    r["group"],
                    r["n_columns"],
                    f"{r['drop']['log_loss']:.4f}",
                    f"{r['drop']['diff_mean']:+.4f} ± {r['drop']['diff_std']:.4f}",
                    f"{r['drop']['folds_worse']}/{r['drop']['n_folds']}",
                    f"{r['drop']['folds_improved']}/{r['drop']['n_folds']}",
                    f"{r['only']['log_loss']:.4f}",
                    f"{r['only']['diff_mean']:+.4f} ± {r['only']['diff_std']:.4f}",
                ]
                for r in group_rows(report)
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
    ]


def _importance_blocks(report: dict, images: dict[str, str]) -> list[tuple]:
    """Gain importance by group and for the top columns (the full model's fold boosters summed)."""
    importance = report["importance"]
    return [
        ("h2", "LightGBM gain importance (full model, summed over fold boosters)"),
        ("table", ["group", "share of gain"], [[g, f"{s:.3f}"] for g, s in importance["by_group"].items()]),
        ("img", images["importance_groups"], "gain by group"),
        ("table", ["feature", "gain"], [[t["feature"], f"{t['gain']:.1f}"] for t in importance["top"]]),
        ("img", images["importance_top"], "top features by gain"),
    ]


def _calibration_blocks(report: dict, images: dict[str, str]) -> list[tuple]:
    """Expected calibration error per class before and after the calibrator."""
    before, after = report["reliability"]["before"], report["reliability"]["after"]
    return [
        ("h2", "Calibration (reliability, OOF)"),
        (
            "table",
            ["class", "ECE before", "ECE after"],
            [[c, f"{before[c]['ece']:.4f}", f"{after[c]['ece']:.4f}"] for c in CLASS_NAMES],
        ),
        ("img", images["reliability"], "reliability diagram"),
    ]


def _verbosity_blocks(report: dict, images: dict[str, str]) -> list[tuple]:
    """Predicted against observed outcome per length-ratio bucket: does the model follow the verbosity bias."""
    return [
        ("h2", "Verbosity bias: outcome by length difference"),
        ("p", "Buckets are quantiles of log(1+chars A) − log(1+chars B); predicted = calibrated OOF mean."),
        (
            "table",
            ["length log ratio", "rows", "pred P(A)", "obs A", "pred P(B)", "obs B", "pred P(tie)", "obs tie"],
            [
                [
                    f"{b['low']:+.2f} .. {b['high']:+.2f}",
                    b["n"],
                    *[f"{b[f'{k}_{c}']:.3f}" for c in CLASS_NAMES for k in ("predicted", "observed")],
                ]
                for b in report["verbosity"]
            ],
        ),
        ("img", images["verbosity"], "verbosity"),
    ]


def _position_blocks(report: dict, images: dict[str, str]) -> list[tuple]:
    """The stacker's swap gap and the data's A-share: a position bias would show in either."""
    pos = report["position"]
    share = pos["a_share_of_decided"]
    return [
        ("h2", "Position bias and swap consistency"),
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
                    *[f"{pos['predicted'][c]:.4f}" for c in CLASS_NAMES],
                    f"{pos['predicted_a_minus_b']:+.4f}",
                ],
                [
                    "observed (± 95% CI)",
                    *[f"{pos['observed'][c]:.4f} ± {pos['observed_ci95'][c]:.4f}" for c in CLASS_NAMES],
                    f"{pos['observed_a_minus_b']:+.4f}",
                ],
            ],
        ),
        ("img", images["position"], "position"),
    ]


def write_outputs(report: dict, out: Path, wall_s: float) -> dict[str, Path]:
    from pipelines.reports import plots

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
    paths["html"].write_text(render_html(blocks, "arena-pref ablation"))
    log.info("ablation: full OOF log loss %.4f; wrote %s", report["variants"]["full"]["log_loss"], paths["md"])
    return paths
