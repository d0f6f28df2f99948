"""Leave-one-source-out study: how each tie handling transfers to a source it has never seen.

For every held-out source: train on all other sources (minus any row sharing a prompt or an
answer pair with the held-out one, so overlapping sets cannot leak), score the held-out rows.
Also within-source OOF: grouped folds over all rows, scored per source. Each option of
``stacking.tie_handling`` is run with every fold seed (the seed moves the folds, the inner
early-stopping split and LightGBM's bagging); results are mean ± std over seeds, and deltas are
paired per seed against ``drop_tieless``. The commands ``pipelines.loso`` and
``pipelines.ablation --by-source`` call :func:`run_loso`, :func:`summarize_results` and
:func:`write_outputs`.

The study uses the run's feature flags with the run's meaning: ``--groups``, and the fold features
(``--tfidf``, ``--embedder``) fitted on each fit's training rows only. Its probabilities are
uncalibrated, on purpose: the held-out source plays the new source, and the run's new-source
calibrator is itself fitted on leave-one-source-out predictions, so applying it here would score it
on the rows it was fitted on. Judging it honestly needs a nested study (a calibrator for source h fitted
on predictions of models that never saw h): ``benchmarks/new_source_calibration.py``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from arena_schema import N_CLASSES
from features.extractor import FeatureExtractor
from pipelines.data.source_folds import make_source_folds, source_groups
from pipelines.data.training_sets import combined_shared_data, load_training_sources, mark_sources_with_ties
from pipelines.reports.metrics import reliability
from pipelines.reports.report_blocks import render_html, render_markdown
from pipelines.reports.source_scoring import score_rows
from pipelines.stages.config import FeatureConfig
from pipelines.stages.fold_feature_setup import build_fold_features, fold_feature_name
from stacking.config import STUDY_PRESET
from stacking.cross_fit import with_fold_features
from stacking.source_holdout import source_training_rows
from stacking.tie_handling import TieAwareStacker
from stacking.tie_registry import option_names

log = logging.getLogger(__name__)

BASELINE = STUDY_PRESET.baseline


# --------------------------------------------------------------------------- experiment


def _fit_predict(option, X, battles, train, test, groups, seed, settings, fold_features=()) -> np.ndarray:
    """One stacker on the ``train`` rows, its probabilities for the ``test`` rows; the fold features (``--tfidf``,
    ``--embedder``) are fitted on the training rows only, as in every fold of a run."""
    train_idx, test_idx = np.flatnonzero(train), np.flatnonzero(test)
    fitted = [clone(t).fit(battles.iloc[train_idx]) for t in fold_features]
    model = TieAwareStacker(option, seed=seed, **settings)
    model.fit(
        with_fold_features(X.iloc[train_idx], battles, fitted, train_idx),
        battles["label"].to_numpy()[train],
        battles["source"].to_numpy()[train],
        battles["source_has_ties"].to_numpy()[train],
        battles["weight"].to_numpy()[train] if "weight" in battles else None,
        groups[train],
    )
    return model.predict_proba(with_fold_features(X.iloc[test_idx], battles, fitted, test_idx))


def _run_task(option, k, battles, X, groups, holdouts, n_folds, oof, settings, has_ties, fold_features=()) -> dict:
    """One option with one fold seed: every held-out source, then (optionally) grouped OOF."""
    seed = STUDY_PRESET.fold_seed(k)
    y = battles["label"].to_numpy()
    sources = battles["source"].to_numpy().astype(str)
    out: dict[str, Any] = {"loso": {}, "oof": {}, "pooled": None}
    pooled_y, pooled_p = [], []
    for held in holdouts:
        test = sources == held
        train = source_training_rows(sources, groups, [held])
        t0 = time.time()
        proba = _fit_predict(option, X, battles, train, test, groups, seed, settings, fold_features)
        sc = score_rows(battles[test], y[test], proba)
        out["loso"][held] = sc
        tie = sc["per_class"]["tie"]
        log.info(
            "loso %s seed %d held %s: %.4f (tie-row %s) %.0fs",
            option,
            seed,
            held,
            sc["log_loss"],
            "-" if tie is None else f"{tie:.3f}",
            time.time() - t0,
        )
        if has_ties[held]:
            pooled_y.append(y[test])
            pooled_p.append(proba)
    if pooled_y:
        out["pooled"] = (np.concatenate(pooled_y), np.vstack(pooled_p))
    if oof:
        folds = make_source_folds(battles, n_folds, seed)
        proba = np.zeros((len(y), N_CLASSES))
        for f in range(n_folds):
            held = folds == f
            proba[held] = _fit_predict(option, X, battles, ~held, held, groups, seed, settings, fold_features)
        for s in sorted(set(sources)):
            rows = sources == s
            out["oof"][s] = score_rows(battles[rows], y[rows], proba[rows])
        log.info("oof %s seed %d done", option, seed)
    return out


def run_loso(
    battles: pd.DataFrame,
    X: pd.DataFrame,
    options=None,
    fold_seeds: int = 3,
    holdouts=None,
    n_folds: int = STUDY_PRESET.n_folds,
    oof_options=None,
    settings: dict | None = None,
    n_jobs: int = 1,
    on_progress=None,
    fold_features: Sequence[Any] = (),
) -> dict:
    """Scores per option, seed and source (LOSO and, for ``oof_options``, within-source OOF), plus
    pooled predictions of the tie-bearing held-out sources for the reliability diagrams (first seed).
    ``fold_features`` (unfitted; ``battles`` carry the columns they read) are fitted on each fit's training rows."""
    from joblib import Parallel, delayed

    settings = settings or {}
    options = list(option_names() if options is None else options)
    oof_options = options if oof_options is None else list(oof_options)
    battles = battles.reset_index(drop=True)
    X = X.reset_index(drop=True)
    sources = battles["source"].to_numpy().astype(str)
    groups = source_groups(battles)
    holdouts = list(holdouts) if holdouts else sorted(set(sources))
    has_ties = {str(s): bool(v) for s, v in battles.groupby("source")["source_has_ties"].first().items()}
    tasks = [(o, k) for k in range(fold_seeds) for o in options]  # seed by seed: partial reports stay paired
    done = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_task)(
            o, k, battles, X, groups, holdouts, n_folds, o in oof_options, settings, has_ties, fold_features
        )
        for o, k in tasks
    )
    results: dict[str, Any] = {"loso": {}, "oof": {}, "reliability": {}, "has_ties": has_ties}
    for (option, k), out in zip(tasks, done):
        for part in ("loso", "oof"):
            table = results[part].setdefault(option, {})
            for s, sc in out[part].items():
                table.setdefault(s, []).append(sc)
        if k == 0 and out["pooled"] is not None:
            yy, pp = out["pooled"]
            results["reliability"][option] = reliability(yy, pp)
        if on_progress is not None:
            on_progress(results)
    return results


# --------------------------------------------------------------------------- summary


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


def report_blocks(summary: dict, meta: dict, images: dict[str, str]) -> list[tuple]:
    dkey = "delta_vs_" + BASELINE
    blocks: list[tuple] = [
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
            "Macro means over the held-out sources that have ties (each trained on all other sources, rows "
            "sharing a prompt or answer pair with the held-out source removed). mean ± std over fold seeds; "
            f"Δ = paired per-seed difference to `{BASELINE}` (negative = better). "
            "`pairwise (tie-less held out)` = log loss of P(A)/(P(A)+P(B)) on the held-out sources without ties.",
        ),
        ("h2", "Summary (held-out sources with ties)"),
    ]
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
    blocks.append(_macro_table(summary["macro"], dkey, loso_columns))
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
    for part, title in (("per_source", "LOSO per held-out source"), ("oof_per_source", "Within-source OOF per source")):
        table = {o: t for o, t in summary[part].items() if t}
        if not table:
            continue
        blocks.append(("h2", title))
        options = list(table)
        sources = list(next(iter(table.values())))
        rows = []
        for s in sources:
            row = [f"{s} ({table[options[0]][s]['rows']}{'' if meta['has_ties'].get(s) else ', no ties'})"]
            for o in options:
                cell = table[o][s]
                text = format_ms(cell["log_loss"], 3)
                if cell["tie_loss"]["mean"] is not None:
                    text += f"; tie {cell['tie_loss']['mean']:.2f}"
                if cell["votes_ce"]["mean"] is not None:
                    text += f"; votes {cell['votes_ce']['mean']:.3f} (floor {cell['votes_floor']['mean']:.3f})"
                if not meta["has_ties"].get(s):
                    text += f"; pairwise {cell['pairwise']['mean']:.3f}"
                row.append(text)
            rows.append(row)
        blocks.append(("table", ["source", *options], rows))
    blocks.append(
        (
            "p",
            "Cells: log loss (mean ± std over seeds); tie = tie-row loss; votes = cross-entropy against the vote "
            "shares of pairs with several votes, with the shares' own entropy (the floor no model can beat); "
            "pairwise = log loss of P(A)/(P(A)+P(B)) on sources without ties.",
        )
    )
    blocks.append(("h2", "Reliability (pooled held-out sources with ties, first seed)"))
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


def run_study(
    data: Path | None,
    combined: Path | None,
    out: Path,
    options: list[str],
    groups: tuple[str, ...],
    settings: dict,
    *,
    fold_seeds: int,
    holdouts: list[str] | None = None,
    n_folds: int = 5,
    oof_options: list[str] | None = None,
    jobs: int = 1,
    feature_jobs: int = 1,
    cache_dir: Path | None = None,
    command: str = "python -m pipelines.loso",
    fold_features: FeatureConfig | None = None,
) -> tuple[dict, dict[str, Path]]:
    """The whole study over the shared data folder (``data``, combined on the fly) or one train.csv-schema
    file with a source column (``combined``): features, :func:`run_loso`, a report in ``out`` after every
    finished task (so a cut-short run still has one) and at the end. Returns the summary and the paths."""
    start = time.time()
    if data is not None:
        combined = out / "_combined.csv"
        out.mkdir(parents=True, exist_ok=True)
        combined_shared_data(data).to_csv(combined, index=False)
    if combined is None:
        raise ValueError("give the shared data folder or a combined train file")
    battles = mark_sources_with_ties(load_training_sources(combined))
    if data is not None:
        combined.unlink()
    X = FeatureExtractor(groups, n_jobs=feature_jobs, cache_dir=cache_dir, progress=False).transform(battles)
    transformers, battles, _ = build_fold_features(
        fold_features or FeatureConfig(groups=groups), battles, None, cache_dir
    )
    meta = {
        "rows": int(len(battles)),
        "sources": battles.groupby("source").size().to_dict(),
        "has_ties": {str(k): bool(v) for k, v in battles.groupby("source")["source_has_ties"].first().items()},
        "fold_seeds": fold_seeds,
        "feature_groups": list(groups),
        "fold_features": [fold_feature_name(t) for t in transformers],
        "settings": settings,
        "options": options,
        "command": command,
    }

    def progress(partial: dict) -> None:
        write_outputs(partial, summarize_results(partial), {**meta, "wall_s": time.time() - start}, out)

    results = run_loso(
        battles, X, options, fold_seeds, holdouts, n_folds, oof_options, settings, jobs, progress, transformers
    )
    summary = summarize_results(results)
    meta["wall_s"] = time.time() - start
    return summary, write_outputs(results, summary, meta, out)
