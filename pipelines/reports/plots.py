"""PNG (and, where plotly is installed, HTML) figures for the tuning and ablation reports.

Headless by design (matplotlib's Agg backend): the commands run on servers and in Kaggle
notebooks. Each function takes plain numbers (the same ones written to JSON) and a path, so a
figure never shows anything the report's tables do not.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

from arena_schema import CLASS_NAMES, CLASS_TITLES, N_CLASSES

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

log = logging.getLogger(__name__)

CLASS_LABELS = dict(zip(CLASS_NAMES, CLASS_TITLES))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- Optuna


def save_optuna_plots(
    study, out_dir: Path, importances: dict[str, float] | None, baseline: float | None = None
) -> dict[str, list[Path]]:
    """Optimisation history always; parameter importances when they could be computed
    (``importances`` is None with fewer than two completed trials). HTML needs plotly; the HTML
    files share one ``plotly.min.js`` beside them, so they open offline."""
    import optuna

    written: dict[str, list[Path]] = {}
    evaluator = fixed_importances(importances) if importances else None
    plots = {"optimization_history": lambda vis: vis.plot_optimization_history(study)}
    if importances:
        plots["param_importances"] = lambda vis: vis.plot_param_importances(study, evaluator=evaluator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in plots.items():
            ax = plot(optuna.visualization.matplotlib)
            if name == "optimization_history" and baseline is not None:
                ax.axhline(baseline, color="black", ls="--", lw=1, label="baseline (default parameters)")
                ax.legend(fontsize=8)
            written[name] = [_save(ax.figure, out_dir / f"{name}.png")]
            if optuna.visualization.is_available():
                html = out_dir / f"{name}.html"
                fig = plot(optuna.visualization)
                if name == "optimization_history" and baseline is not None:
                    fig.add_hline(y=baseline, line_dash="dash", annotation_text="baseline (default parameters)")
                fig.write_html(str(html), include_plotlyjs="directory")  # offline: one plotly.min.js beside
                written[name].append(html)
    if not optuna.visualization.is_available():
        log.info("plotly is not installed: Optuna plots written as PNG only")
    return written


def fixed_importances(importances: dict[str, float]):
    """An Optuna importance evaluator that returns importances computed once, so the PNG, the
    HTML twin and the report's table show the same numbers."""
    from optuna.importance import BaseImportanceEvaluator

    class FixedImportances(BaseImportanceEvaluator):
        def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
            return dict(importances)

    return FixedImportances()


# --------------------------------------------------------------------------- ablation


def ablation_bars(rows: list[dict], path: Path) -> Path:
    """Paired per-fold difference to the full model (mean ± std over folds), drop-one beside only-this."""
    groups = [r["group"] for r in rows]
    y = np.arange(len(groups))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(groups) + 1.8), sharey=True)
    for ax, kind, title in ((axes[0], "drop", "drop this group"), (axes[1], "only", "only this group")):
        means = [r[kind]["diff_mean"] for r in rows]
        stds = [r[kind]["diff_std"] for r in rows]
        colors = ["tab:green" if (m > 0) == (kind == "drop") else "tab:red" for m in means]
        ax.barh(y, means, xerr=stds, color=colors, alpha=0.8, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{title}: Δ log loss vs full")
        ax.set_xlabel("variant − full (mean ± std over folds)")
    axes[0].set_yticks(y, groups)
    axes[0].invert_yaxis()
    return _save(fig, path)


def importance_plots(top: list[dict], by_group: dict[str, float], path_top: Path, path_groups: Path) -> list[Path]:
    """LightGBM gain (summed over fold boosters): the top features and the per-group totals."""
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(top) + 1.5))
    ax.barh([t["feature"] for t in top], [t["gain"] for t in top], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("total gain over fold boosters")
    ax.set_title(f"top {len(top)} features by gain")
    first = _save(fig, path_top)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(by_group) + 1.5))
    names = list(by_group)
    ax.barh(names, [by_group[n] for n in names], color="tab:purple")
    ax.invert_yaxis()
    ax.set_xlabel("share of total gain")
    ax.set_title("gain by feature group")
    return [first, _save(fig, path_groups)]


def reliability_diagram(reliability: dict, path: Path, min_rows: int = 10) -> Path:
    """Per class: observed frequency against mean predicted probability, before and after calibration.

    Bins with fewer than ``min_rows`` rows are left out of the figure (a bin of one row reads 0 or 1
    and hides the rest); the JSON keeps every bin.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, cls in zip(axes, CLASS_LABELS):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for stage, style in (("before", "o-"), ("after", "s-")):
            bins = [b for b in reliability[stage][cls]["bins"] if b["n"] >= min_rows]
            ax.plot(
                [b["mean_predicted"] for b in bins],
                [b["observed"] for b in bins],
                style,
                label=f"{stage} (ECE {reliability[stage][cls]['ece']:.3f})",
                ms=4,
            )
        ax.set_title(f"P({CLASS_LABELS[cls]}) (bins of ≥ {min_rows} rows)")
        ax.set_xlabel("mean predicted")
        ax.set_ylabel("observed frequency")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return _save(fig, path)


def verbosity_plot(buckets: list[dict], path: Path) -> Path:
    """Verbosity bias: predicted vs observed P(A wins) and P(tie) across length-difference buckets."""
    x = np.arange(len(buckets))
    labels = [f"{b['low']:+.2f}..{b['high']:+.2f}" for b in buckets]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, cls in zip(axes, ("a", "tie")):
        ax.plot(x, [b[f"predicted_{cls}"] for b in buckets], "o-", label="predicted (OOF, calibrated)")
        ax.plot(x, [b[f"observed_{cls}"] for b in buckets], "s--", label="observed")
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("log(1+chars A) − log(1+chars B), quantile bucket")
        ax.set_title(f"P({CLASS_LABELS[cls]}) by length difference")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return _save(fig, path)


def position_plot(position: dict, path: Path) -> Path:
    """Position bias: mean predicted P(A)/P(B) beside the observed A-win/B-win rates (95% CI)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    names = list(CLASS_TITLES)
    predicted = [position["predicted"][k] for k in CLASS_NAMES]
    observed = [position["observed"][k] for k in CLASS_NAMES]
    errors = [position["observed_ci95"][k] for k in CLASS_NAMES]
    x = np.arange(N_CLASSES)
    ax.bar(x - 0.18, predicted, width=0.36, label="mean predicted (OOF)")
    ax.bar(x + 0.18, observed, width=0.36, yerr=errors, capsize=4, label="observed rate ± 95% CI")
    ax.set_xticks(x, names)
    ax.set_ylabel("probability / rate")
    ax.set_title(
        f"position: observed A−B = {position['observed_a_minus_b']:+.3f}, swap gap {position['max_swap_gap']:.1e}",
        fontsize=10,
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def class_reliability(reliability: dict, title: str, path: Path, classes=("a", "tie"), min_rows: int = 10) -> Path:
    """One panel per class: observed frequency against mean predicted probability (bins of
    ``min_rows`` or more rows), with the ECE in the title."""
    fig, axes = plt.subplots(1, len(classes), figsize=(4.5 * len(classes), 4))
    for ax, cls in zip(np.atleast_1d(axes), classes):
        bins = [b for b in reliability[cls]["bins"] if b["n"] >= min_rows]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], "o-", ms=4)
        ax.set_title(f"{title}: P({CLASS_LABELS[cls]}), ECE {reliability[cls]['ece']:.3f}", fontsize=10)
        ax.set_xlabel("mean predicted")
        ax.set_ylabel("observed frequency")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    return _save(fig, path)
