"""The engine of ``python -m pipelines.ablation``: drop-one / only-this-group refits of the stacker on the
run's saved folds, gain importance, reliability, and the verbosity and position biases (or, by source,
the leave-one-source-out study); the JSON it writes is a pure function of data, folds, seed and settings."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from arena_schema import A_WINS, B_WINS, CLASS_NAMES, TIE, swap_feature_frame, swap_proba
from features.extractor import group_columns
from features.groups import GROUPS
from pipelines.data.training_sets import TrainingSourcesConfig, load_training_sources
from pipelines.experiments import loso_study
from pipelines.model.model_inputs import ModelInputs, model_inputs
from pipelines.reports.metrics import nested_prior, reliability, summarize
from pipelines.reports.report_blocks import render_html, render_markdown
from pipelines.runtime.errors import UsageError
from pipelines.stages.config import RunConfig
from pipelines.stages.fold_feature_setup import fold_feature_name, fold_transformers, prepare_battles
from pipelines.stages.multi_source import (
    fit_seed,
    paired_seed_deltas,
    repeated_folds,
    require_extras_loaded,
    source_fit_kwargs,
)
from pipelines.stages.stacker_inputs import StackerInputs, cache_dir_of
from stacking.cross_fit import CalibratedFit, CrossFitResult, with_fold_features
from stacking.sources import source_name_of

log = logging.getLogger("arena_pref.ablation")


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
    return {name: cols for name, (cols, _) in variant_parts(columns, groups, []).items()}


FOLD_GROUP = "fold:"  # a fold feature's group (``fold:tfidf``): fitted inside each training fold, not a column of X


def fold_groups(model: ModelInputs) -> dict[str, list[str]]:
    """``fold:<name>`` per fold feature the run asked for (``--tfidf``, ``--embedder``), with its columns."""
    return {FOLD_GROUP + name: cols for name, cols in model.fold_feature_columns().items()}


def variant_parts(
    columns: list[str], groups: dict[str, list[str]], fold_names: list[str]
) -> dict[str, tuple[list[str], list[str]]]:
    """{variant: (columns of X, fold features)}: ``full``, then ``drop:<group>`` and ``only:<group>`` for every
    group, fold-feature groups (``fold:<name>``) included; a variant with nothing to fit is left out. Without
    fold features these are :func:`variant_columns`' variants."""
    variants = {"full": (list(columns), list(fold_names))}
    for name, cols in groups.items():
        if name.startswith(FOLD_GROUP):
            own = name[len(FOLD_GROUP) :]
            variants[f"drop:{name}"] = (list(columns), [f for f in fold_names if f != own])
            variants[f"only:{name}"] = ([], [own])
        else:
            members = set(cols)
            variants[f"drop:{name}"] = ([c for c in columns if c not in members], list(fold_names))
            variants[f"only:{name}"] = ([c for c in columns if c in members], [])
    return {k: v for k, v in variants.items() if v[0] or v[1]}


def fit_variant(
    model: ModelInputs,
    columns: list[str],
    config: RunConfig,
    folds: np.ndarray | None = None,
    seed: int | None = None,
    fold_names: list[str] | None = None,
) -> CalibratedFit:
    """Cross-fitted stacker on ``columns`` and the fold features ``fold_names`` (default all) plus nested
    calibration: the run's own fit (``pipelines.model.model_inputs``: sources, weights, tie handling)."""
    names = model.fold_feature_names()
    chosen = [t for n, t in zip(names, model.fold_features) if fold_names is None or n in fold_names]
    return model.fit(
        config.stacker, config.seed if seed is None else seed, columns=columns, fold_features=chosen, folds=folds
    )


def score(y: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> dict:
    """Log loss overall and per fold (a list in fold order), per class and accuracy."""
    s = summarize(y, proba, folds)
    return {
        "log_loss": s["log_loss"],
        "per_fold": [s["per_fold"][k] for k in sorted(s["per_fold"])],
        "per_class": s["per_class"],
        "accuracy": s["accuracy"],
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
        for c, name in enumerate(CLASS_NAMES):
            row[f"predicted_{name}"] = float(proba[mask, c].mean())
            row[f"observed_{name}"] = float((y[mask] == c).mean())
        buckets.append(row)
    return buckets


def max_swap_gap(result: CrossFitResult, inputs: StackerInputs, columns: list[str]) -> float:
    """max |p(A wins | A, B) − p(B wins | B, A)| over OOF rows: 0 up to float error by construction."""
    gap = 0.0
    for k, model, fitted in zip(result.fold_ids, result.models, result.fold_transformers):
        held = np.flatnonzero(inputs.folds == k)
        X = with_fold_features(inputs.X.iloc[held][columns], inputs.train, fitted, held)
        direct = model.predict_proba(X)
        swapped = swap_proba(model.predict_proba(swap_feature_frame(X)))
        gap = max(gap, float(np.abs(direct - swapped).max()))
    return gap


def position(y: np.ndarray, proba: np.ndarray, swap_gap: float) -> dict:
    """Mean predicted class probabilities beside observed rates (95% CI), and the data's own
    A-vs-B position bias: the share of A wins among decided battles, with a binomial test."""
    n = len(y)
    observed = {name: float((y == c).mean()) for c, name in enumerate(CLASS_NAMES)}
    decided_a, decided = int((y == A_WINS).sum()), int((y != TIE).sum())
    share = decided_a / decided if decided else None
    return {
        "rows": n,
        "predicted": {name: float(proba[:, c].mean()) for c, name in enumerate(CLASS_NAMES)},
        "observed": observed,
        "observed_ci95": {k: float(1.96 * np.sqrt(v * (1 - v) / n)) for k, v in observed.items()},
        "predicted_a_minus_b": float(proba[:, A_WINS].mean() - proba[:, B_WINS].mean()),
        "observed_a_minus_b": observed["a"] - observed["b"],
        "a_share_of_decided": share,
        "a_share_p_value": float(binomtest(decided_a, decided, 0.5).pvalue) if decided else None,
        "max_swap_gap": swap_gap,
    }


# --------------------------------------------------------------------------- the run


def run_ablation(
    config: RunConfig, settings: AblationConfig | None = None, sources: TrainingSourcesConfig | None = None
) -> dict:
    """Fit every variant (over ``fold_seeds`` repetitions of the grouped CV), compute the
    diagnostics of the full model on the run's own folds, write JSON, Markdown, HTML and PNGs."""
    settings = settings or AblationConfig()
    start = time.perf_counter()
    out = config.out / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    sources = sources or TrainingSourcesConfig()
    fold_seeds = sources.fold_seeds
    model = model_inputs(config)
    inputs = model.inputs
    require_extras_loaded(inputs, sources)
    columns = list(inputs.X.columns)
    groups = {**feature_groups(columns), **fold_groups(model)}
    scored = source_fit_kwargs(inputs.train).get("scored", np.ones(len(inputs.y), dtype=bool))
    y, folds = inputs.y[scored], inputs.folds[scored]
    prior = score(y, nested_prior(y, folds), folds)
    seed_folds = repeated_folds(inputs.train, inputs.folds, fold_seeds, config.seed)

    variants: dict[str, dict] = {}
    per_seed_folds: dict[str, list[list[float]]] = {}
    full = None
    for name, (cols, fold_names) in variant_parts(columns, groups, model.fold_feature_names()).items():
        log.info("ablation variant %s: %d column(s) %s, %d fold seed(s)", name, len(cols), fold_names, fold_seeds)
        per_seed_folds[name] = []
        for i, f in enumerate(seed_folds):
            fit = fit_variant(model, cols, config, f, fit_seed(config.seed, i), fold_names)
            scores = score(y, fit.oof_cal[scored], f[scored])
            per_seed_folds[name].append(scores["per_fold"])
            if i == 0:
                variants[name] = {
                    "n_columns": len(cols) + sum(len(groups[FOLD_GROUP + n]) for n in fold_names),
                    **scores,
                    "log_loss_uncalibrated": summarize(y, fit.raw.oof[scored], folds)["log_loss"],
                    "seed_log_loss": [],
                }
                if name == "full":
                    full = (fit.raw, fit.oof_cal[scored])
            variants[name]["seed_log_loss"].append(scores["log_loss"])
    for name, v in variants.items():
        v["diff_vs_full"] = paired_seed_deltas(per_seed_folds[name], per_seed_folds["full"])

    assert full is not None  # variant_columns always has 'full'
    result, calibrated = full
    report = {
        "config": {
            "train": str(config.train_path),
            "rows": len(y),
            "n_folds": len(np.unique(folds)),
            "fold_seeds": fold_seeds,
            "scored_rows": int(scored.sum()),
            "seed": config.seed,
            "calibration": config.stacker.calibration,
            "params": config.stacker.params,
            "stacker": {  # num_threads changes speed, never results: left out so the JSON is machine-independent
                k: v for k, v in asdict(config.stacker).items() if k not in ("params", "calibration", "num_threads")
            },
            "feature_groups": list(config.features.groups),
            "fold_features": model.fold_feature_names(),  # fitted inside each training fold, as full_run does
            "tie_handling": result.tie_handling,  # what config.stacker.tie_handling resolved to
            "sources": list(config.extra_sources),
            "settings": asdict(settings),
        },
        "folds": sorted(int(k) for k in np.unique(folds)),
        "groups": groups,
        "prior": prior,
        "variants": variants,
        "importance": gain_importance(result, groups, settings.top_features),
        "reliability": {
            "before": reliability(y, result.oof[scored], settings.reliability_bins),
            "after": reliability(y, calibrated, settings.reliability_bins),
        },
        "verbosity": verbosity(y, calibrated, length_log_ratio(inputs.train[scored]), settings.length_buckets),
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
        ("p", delta_note(cfg.get("fold_seeds", 1))),
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
                for c in CLASS_NAMES
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
                    *[f"{b[f'{k}_{c}']:.3f}" for c in CLASS_NAMES for k in ("predicted", "observed")],
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
    return blocks


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


def run_by_source(config: RunConfig, sources: TrainingSourcesConfig) -> dict[str, Path]:
    """Leave-one-source-out report over the primary and extra training sets, every tie handling,
    ``sources.fold_seeds`` seeds, with this run's stacker settings."""
    from features.extractor import FeatureExtractor
    from stacking.tie_registry import option_names

    if config.extra_sources:
        raise UsageError("--source: the leave-one-source-out study stacks no probability files")
    start = time.perf_counter()
    battles = load_training_sources(config.train_path, sources.sources)
    if battles["source"].nunique() < 2:
        raise UsageError("--by-source needs several sources (--extra-train, or a train file with a source column)")
    X = FeatureExtractor(
        config.features.groups, n_jobs=config.features.n_jobs, cache_dir=cache_dir_of(config), progress=False
    ).transform(battles)
    transformers = fold_transformers(config.features)  # --tfidf / --embedder: fitted on each fit's training rows
    battles = prepare_battles(config.features, battles, cache_dir_of(config))
    settings = {
        "params": {**config.stacker.params, "num_threads": config.stacker.num_threads},
        "num_boost_round": config.stacker.num_boost_round,
        "early_stopping_rounds": config.stacker.early_stopping_rounds,
    }
    results = loso_study.run_loso(
        battles,
        X,
        option_names(),
        sources.fold_seeds,
        n_folds=config.n_folds,
        settings=settings,
        fold_features=transformers,
    )
    meta = {
        "rows": int(len(battles)),
        "sources": battles.groupby("source").size().to_dict(),
        "has_ties": results["has_ties"],
        "fold_seeds": sources.fold_seeds,
        "settings": settings,
        "options": list(option_names()),
        "fold_features": [fold_feature_name(t) for t in transformers],
        "command": "python -m pipelines.ablation --by-source",
        "wall_s": time.perf_counter() - start,
    }
    return loso_study.write_outputs(
        results, loso_study.summarize_results(results), meta, config.out / "ablation" / "by_source"
    )
