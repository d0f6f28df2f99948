"""The data report's figures (matplotlib, Agg): each draws numbers that the report's tables also show.

Small on purpose (about 7 x 3.2 inches at 90 dpi): they are committed with the report.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from arena_schema import CLASS_NAMES
from pipelines.reports.plots import CLASS_LABELS

DPI = 90
COLOURS = {"a": "#4c72b0", "b": "#dd8452", "tie": "#8c8c8c"}


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path.name


def class_shares(shares: dict[str, dict], path: Path, title: str) -> str:
    """One horizontal stacked bar per group (overall first, then sources): A wins / B wins / tie."""
    names = list(shares)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    left = np.zeros(len(names))
    for cls in CLASS_NAMES:
        values = np.array([shares[n][cls] for n in names])
        ax.barh(names, values, left=left, color=COLOURS[cls], label=CLASS_LABELS[cls])
        left += values
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of rows")
    ax.set_yticks(range(len(names)), [f"{n} ({shares[n]['rows']:,})" for n in names], fontsize=8)
    ax.legend(ncol=3, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(title, fontsize=9, pad=22)
    return _save(fig, path)


def length_histograms(lengths: dict[str, pd.DataFrame], path: Path, title: str) -> str:
    """Characters of prompt, response A and response B (log x axis), one panel each; one line per file."""
    fig, axes = plt.subplots(1, 3, figsize=(9, 3), sharey=False)
    for ax, col, label in zip(axes, ("prompt_chars", "a_chars", "b_chars"), ("prompt", "response A", "response B")):
        top = max(float(frame[col].max()) for frame in lengths.values())
        edges = np.logspace(0, np.log10(max(top, 10) + 1), 40)
        for name, frame in lengths.items():
            weights = np.full(len(frame), 1 / max(len(frame), 1))  # share of rows: bins differ in width
            ax.hist(frame[col] + 1, bins=edges, weights=weights, histtype="step", label=name)
        ax.set_xscale("log")
        ax.set_xlabel(f"{label}: characters + 1")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("share of rows")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def length_diff(diff: pd.Series, by_bin: list[dict], path: Path, title: str) -> str:
    """Left: A - B characters (symmetric log axis). Right: class shares per quantile bin of A - B."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    span = max(float(diff.abs().max()), 1.0)
    positive = np.logspace(0, np.log10(span + 1), 20)
    edges = np.concatenate([-positive[::-1], [0], positive])
    left.hist(diff, bins=np.unique(edges), color="#4c72b0")
    left.set_xscale("symlog")
    left.set_xlabel("A - B characters")
    left.set_ylabel("rows")
    left.tick_params(labelsize=7)
    if by_bin:
        x = np.arange(len(by_bin))
        for cls in CLASS_NAMES:
            right.plot(x, [b[cls] for b in by_bin], marker="o", color=COLOURS[cls], label=CLASS_LABELS[cls])
        right.set_xticks(x, [f"{b['diff_low']:.0f}..{b['diff_high']:.0f}" for b in by_bin], rotation=60, fontsize=6)
        right.set_xlabel("A - B characters (quantile bins)")
        right.set_ylabel("share of rows in the bin")
        right.legend(fontsize=7)
    else:
        right.set_axis_off()
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def turns(counts: dict[str, dict[str, int]], path: Path, title: str) -> str:
    """Share of battles per number of prompt turns (10+ pooled), one bar group per file."""
    fig, ax = plt.subplots(figsize=(7, 2.8))
    keys = [str(k) for k in range(1, 10)] + ["10+"]
    width = 0.8 / max(len(counts), 1)
    for i, (name, c) in enumerate(counts.items()):
        pooled = {k: 0 for k in keys}
        for k, v in c.items():
            pooled[k if int(k) < 10 else "10+"] = pooled.get(k if int(k) < 10 else "10+", 0) + v
        total = sum(pooled.values()) or 1
        ax.bar(np.arange(len(keys)) + i * width, [pooled[k] / total for k in keys], width, label=name)
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set_xlabel("prompt turns per battle")
    ax.set_ylabel("share of battles")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def models(table: list[dict], path: Path, title: str) -> str:
    """Win and tie rate with their Wilson intervals, one row per model (most battles first)."""
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(table) + 1.2))
    y = np.arange(len(table))
    for key, colour, shift in (("win", COLOURS["a"], -0.15), ("tie", COLOURS["tie"], 0.15)):
        rate = np.array([m[f"{key}_rate"] for m in table])
        err = np.array(
            [[m[f"{key}_rate"] - m[f"{key}_low"] for m in table], [m[f"{key}_high"] - m[f"{key}_rate"] for m in table]]
        )
        ax.errorbar(rate, y + shift, xerr=err, fmt="o", ms=3, color=colour, label=f"{key} rate")
    ax.set_yticks(y, [f"{m['model']} ({m['battles']})" for m in table], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("rate (95% Wilson interval)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
