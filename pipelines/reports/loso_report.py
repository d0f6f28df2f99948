"""The leave-one-source-out study's summary and report (``pipelines.loso``, ``ablation --by-source``):
mean ± std over fold seeds per option and held-out source, paired deltas against the baseline option,
rendered once as Markdown and HTML with the reliability plots. The fits are ``pipelines.experiments.loso_study``'s.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.reports.report_blocks import render_html, render_markdown
from stacking.config import STUDY_PRESET

BASELINE = STUDY_PRESET.baseline


def _values(runs: list[dict], path: tuple) -> np.ndarray:
    out = []
    for r in runs:
        v: Any = r
        for p in path:
            v = None if v is None else v.get(p)
        out.append(np.nan if v is None else v)
    return np.asarray(out, dtype=float)


def _ms(values: np.ndarray) -> dict:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"mean": None, "std": None}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


METRICS = {
    "log_loss": ("log_loss",),
    "tie_loss": ("per_class", "tie"),
    "a_loss": ("per_class", "a"),
    "b_loss": ("per_class", "b"),
    "pairwise": ("pairwise",),
    "accuracy": ("accuracy",),
    "mean_p_tie": ("mean_p_tie",),
    "votes_ce": ("votes", "cross_entropy"),
    "votes_floor": ("votes", "entropy"),
}


def summarize_results(results: dict) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a metric no source has
        return _summarize(results)


def _summarize(results: dict) -> dict:
    """Mean ± std over seeds per option/source, macro means over the tie-bearing held-out sources,
    and paired per-seed deltas against ``drop_tieless``."""
    has_ties = results["has_ties"]
    out: dict[str, dict] = {"per_source": {}, "macro": {}, "oof_per_source": {}, "oof_macro": {}}
    for part, key_src, key_macro in (("loso", "per_source", "macro"), ("oof", "oof_per_source", "oof_macro")):
        table = results[part]
        for option, by_source in table.items():
            out[key_src][option] = {
                s: {m: _ms(_values(runs, p)) for m, p in METRICS.items()} | {"rows": runs[0]["rows"]}
                for s, runs in by_source.items()
                if runs
            }
            tied = [s for s in by_source if has_ties.get(s) and by_source[s]]
            untied = [s for s in by_source if not has_ties.get(s) and by_source[s]]
            macro = {}
            for m, p in METRICS.items():
                per_seed = np.nanmean(np.array([_values(by_source[s], p) for s in tied]), axis=0) if tied else None
                macro[m] = per_seed
            macro["pairwise_tieless"] = (
                np.nanmean(np.array([_values(by_source[s], ("pairwise",)) for s in untied]), axis=0) if untied else None
            )
            out[key_macro][option] = macro
        base = dict(out[key_macro].get(BASELINE) or {}) or None  # a copy: the loop below rewrites each macro
        for _option, macro in out[key_macro].items():
            deltas = {}
            for m, seeds in macro.items():
                if seeds is not None and base is not None and base.get(m) is not None:
                    n = min(len(seeds), len(base[m]))  # a partial report: pair the seeds both have
                    deltas[m] = _ms(seeds[:n] - base[m][:n])
            macro_ms = {m: (_ms(v) if v is not None else {"mean": None, "std": None}) for m, v in macro.items()}
            macro.clear()
            macro.update({"value": macro_ms, "delta_vs_" + BASELINE: deltas})
    return out


# --------------------------------------------------------------------------- outputs


def format_ms(ms: dict | None, digits: int = 4, sign: bool = False) -> str:
    if not ms or ms.get("mean") is None:
        return "–"
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{fmt.format(ms['mean'])} ± {ms['std']:.{digits}f}"


def _macro_table(macro_by_option: dict, dkey: str, columns: list[tuple[str, Callable[[dict, dict], str]]]) -> tuple:
    """A ("table", header, rows) block: one row per option with a value, one column per (header, cell)."""
    rows = [
        [option, *(cell(m["value"], m[dkey]) for _, cell in columns)]
        for option, m in macro_by_option.items()
        if m["value"]["log_loss"]["mean"] is not None
    ]
    return ("table", ["option", *(header for header, _ in columns)], rows)


def _families(meta: dict) -> dict[str, list[str]]:
    """The report's families (a report written before families existed: each source its own)."""
    return meta.get("families") or {s: [s] for s in meta["sources"]}


def report_blocks(summary: dict, meta: dict, images: dict[str, str]) -> list[tuple]:
    """The report as blocks (see ``report_blocks.render_markdown``), one function per section."""
    dkey = "delta_vs_" + BASELINE
    return [
        *_intro_blocks(meta),
        *_summary_blocks(summary, dkey),
        *_per_source_blocks(summary, meta),
        *_reliability_blocks(images),
    ]


def _intro_blocks(meta: dict) -> list[tuple]:
    """Title, the study's data and settings, the held-out families and how the tables read."""
    return [
        ("h1", "Leave-one-source-out: tie handling"),
        (
            "p",
            f"{meta['rows']} rows from {len(meta['sources'])} sources; fold seeds {meta['fold_seeds']}; "
            f"LightGBM learning rate {meta['settings'].get('params', {}).get('learning_rate')}, "
            f"≤ {meta['settings'].get('num_boost_round')} rounds; uncalibrated probabilities; "
            + (
                f"fold features {', '.join(meta['fold_features'])} (fitted on each fit's training rows); "
                if meta.get("fold_features")
                else ""
            )
            + f"wall time {meta['wall_s']:.0f} s. Command: `{meta['command']}`.",
        ),
        (
            "p",
            "Held out as families (sources sharing questions, answers or judges are held out together, "
            "`pipelines.data.training_sets.SOURCE_FAMILIES`): "
            + "; ".join(f"{family} = {' + '.join(members)}" for family, members in _families(meta).items())
            + ".",
        ),
        (
            "p",
            "Macro means over the held-out families that have ties (each trained on all other sources, rows "
            "sharing a prompt, a prompt turn or an answer turn with the held-out family removed). "
            "mean ± std over fold seeds; "
            f"Δ = paired per-seed difference to `{BASELINE}` (negative = better). "
            "`pairwise (tie-less held out)` = log loss of P(A)/(P(A)+P(B)) on the held-out sources without ties.",
        ),
    ]


def _summary_blocks(summary: dict, dkey: str) -> list[tuple]:
    """The macro tables: LOSO always, within-source OOF when some option was scored that way."""
    loso_columns = [
        ("LOSO log loss", lambda v, d: format_ms(v["log_loss"])),
        (f"Δ vs {BASELINE}", lambda v, d: format_ms(d.get("log_loss"), sign=True)),
        ("tie-row loss", lambda v, d: format_ms(v["tie_loss"], 3)),
        ("Δ tie-row", lambda v, d: format_ms(d.get("tie_loss"), 3, sign=True)),
        ("A-row loss", lambda v, d: format_ms(v["a_loss"], 3)),
        ("accuracy", lambda v, d: format_ms(v["accuracy"], 3)),
        ("mean P(tie)", lambda v, d: format_ms(v["mean_p_tie"], 3)),
        ("pairwise (tie-less held out)", lambda v, d: format_ms(v["pairwise_tieless"])),
    ]
    blocks: list[tuple] = [
        ("h2", "Summary (held-out sources with ties)"),
        _macro_table(summary["macro"], dkey, loso_columns),
    ]
    oof_table = _macro_table(
        summary["oof_macro"] or {},
        dkey,
        [
            ("OOF log loss", lambda v, d: format_ms(v["log_loss"])),
            (f"Δ vs {BASELINE}", lambda v, d: format_ms(d.get("log_loss"), sign=True)),
            ("tie-row loss", lambda v, d: format_ms(v["tie_loss"], 3)),
            ("vote-share CE", lambda v, d: format_ms(v["votes_ce"])),
            ("pairwise (tie-less)", lambda v, d: format_ms(v["pairwise_tieless"])),
        ],
    )
    if oof_table[2]:
        blocks.append(("h2", "Within-source OOF (grouped folds over all sources; macro over sources with ties)"))
        blocks.append(oof_table)
    return blocks


def _per_source_blocks(summary: dict, meta: dict) -> list[tuple]:
    """One table per scoring (LOSO, within-source OOF): a row per source, a column per option."""
    blocks: list[tuple] = []
    for part, title in (("per_source", "LOSO per held-out source"), ("oof_per_source", "Within-source OOF per source")):
        table = {o: t for o, t in summary[part].items() if t}
        if table:
            blocks += [("h2", title), _per_source_table(table, meta["has_ties"])]
    blocks.append(
        (
            "p",
            "Cells: log loss (mean ± std over seeds); tie = tie-row loss; votes = cross-entropy against the vote "
            "shares of pairs with several votes, with the shares' own entropy (the floor no model can beat); "
            "pairwise = log loss of P(A)/(P(A)+P(B)) on sources without ties.",
        )
    )
    return blocks


def _per_source_table(table: dict, has_ties: dict) -> tuple:
    """A ("table", header, rows) block; a cell adds the tie-row, vote and pairwise losses where they exist."""
    options = list(table)
    sources = list(next(iter(table.values())))
    rows = []
    for s in sources:
        row = [f"{s} ({table[options[0]][s]['rows']}{'' if has_ties.get(s) else ', no ties'})"]
        for o in options:
            cell = table[o][s]
            text = format_ms(cell["log_loss"], 3)
            if cell["tie_loss"]["mean"] is not None:
                text += f"; tie {cell['tie_loss']['mean']:.2f}"
            if cell["votes_ce"]["mean"] is not None:
                text += f"; votes {cell['votes_ce']['mean']:.3f} (floor {cell['votes_floor']['mean']:.3f})"
            if not has_ties.get(s):
                text += f"; pairwise {cell['pairwise']['mean']:.3f}"
            row.append(text)
        rows.append(row)
    return ("table", ["source", *options], rows)


def _reliability_blocks(images: dict[str, str]) -> list[tuple]:
    """One reliability plot per option."""
    blocks: list[tuple] = [("h2", "Reliability (pooled held-out sources with ties, first seed)")]
    for option, path in images.items():
        blocks.append(("img", path, f"reliability {option}"))
    return blocks


def write_outputs(results: dict, summary: dict, meta: dict, out: Path) -> dict[str, Path]:
    """``loso.{json,md,html}`` and one reliability PNG per option."""
    from pipelines.reports import plots

    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for option, rel in results["reliability"].items():
        images[option] = f"reliability_{option}.png"
        plots.class_reliability(rel, option, out / images[option])
    blocks = report_blocks(summary, meta, images)
    paths = {"json": out / "loso.json", "md": out / "loso.md", "html": out / "loso.html"}
    paths["json"].write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=1, default=float))
    paths["md"].write_text(render_markdown(blocks))
    paths["html"].write_text(render_html(blocks, "arena-pref leave-one-source-out", 1200))
    return paths


def rerender(out: Path) -> dict[str, Path]:
    """Rewrite the Markdown, HTML and PNGs of ``out/loso.json`` (e.g. after a report-layout change)."""
    saved = json.loads((out / "loso.json").read_text())
    return write_outputs(saved["runs"], summarize_results(saved["runs"]), saved["meta"], out)
