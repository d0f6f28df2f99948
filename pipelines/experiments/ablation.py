"""The engine of ``python -m pipelines.ablation``: drop-one / only-this-group refits of the stacker on the
run's saved folds, gain importance, reliability, and the verbosity and position biases (or, by source,
the leave-one-source-out study); the JSON it writes is a pure function of data, folds, seed and settings."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from arena_schema import A_WINS, B_WINS, CLASS_NAMES, TIE, swap_feature_frame, swap_proba
from features.extractor import group_columns
from features.groups import GROUPS
from pipelines.config.run_config import RunConfig
from pipelines.data.training_sets import TrainingSourcesConfig, load_training_sources
from pipelines.experiments import loso_study
from pipelines.experiments.fold_seeds import fit_seed, paired_seed_deltas, repeated_folds
from pipelines.model.model_inputs import ModelInputs, model_inputs, require_extras_loaded
from pipelines.reports.ablation_report import write_outputs
from pipelines.reports.metrics import nested_prior, reliability, summarize
from pipelines.runtime.errors import UsageError
from pipelines.stages.fold_feature_setup import fold_feature_name, fold_transformers, prepare_battles
from pipelines.stages.stacker_inputs import StackerInputs, cache_dir_of
from stacking.cross_fit import CalibratedFit, CrossFitResult, with_fold_features
from stacking.fold_feature_cache import FoldFeatureCache
from stacking.sources import source_name_of

log = logging.getLogger("arena_pref.ablation")


@dataclass
class AblationConfig:
    """Report settings (the stacker's come from ``RunConfig.stacker``)."""

    reliability_bins: int = field(default=10, metadata={"help": "bins of the reliability diagram"})
    length_buckets: int = field(default=10, metadata={"help": "length-ratio buckets of the verbosity table"})
    top_features: int = field(default=30, metadata={"help": "columns listed in the gain-importance table"})

    def __post_init__(self) -> None:
        for name in ("reliability_bins", "length_buckets", "top_features"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")


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


def max_swap_gap(
    result: CrossFitResult, inputs: StackerInputs, columns: list[str], cache: FoldFeatureCache | None = None
) -> float:
    """max |p(A wins | A, B) − p(B wins | B, A)| over OOF rows: 0 up to float error by construction."""
    gap = 0.0
    for k, model, fitted in zip(result.fold_ids, result.models, result.fold_transformers):
        held = np.flatnonzero(inputs.folds == k)
        X = with_fold_features(inputs.X.iloc[held][columns], inputs.train, fitted, held, cache)
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
    config: RunConfig,
    settings: AblationConfig | None = None,
    sources: TrainingSourcesConfig | None = None,
    *,
    fold_cache: bool = True,
) -> dict:
    """Fit every variant (over ``fold_seeds`` repetitions of the grouped CV), compute the
    diagnostics of the full model on the run's own folds, write JSON, Markdown, HTML and PNGs.
    ``fold_cache``: fit each fold feature once per fold for all variants (False refits it in every
    variant, with the same results; kept for ``benchmarks/fold_feature_cache.py``)."""
    settings = settings or AblationConfig()
    start = time.perf_counter()
    out = config.out / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    sources = sources or TrainingSourcesConfig()
    model = model_inputs(config)
    if fold_cache:
        model = model.with_fold_cache()
    inputs = model.inputs
    require_extras_loaded(inputs, sources)
    groups = {**feature_groups(list(inputs.X.columns)), **fold_groups(model)}
    scored = inputs.fit_kwargs().get("scored", np.ones(len(inputs.y), dtype=bool))  # the run's fit's scored rows
    y, folds = inputs.y[scored], inputs.folds[scored]
    prior = score(y, nested_prior(y, folds), folds)
    seed_folds = repeated_folds(inputs.train, inputs.folds, sources.fold_seeds, config.seed)
    variants, full = fit_variants(model, config, groups, seed_folds, scored)
    report = {
        "config": report_config(config, settings, model, full[0], folds, scored, sources.fold_seeds),
        "folds": sorted(int(k) for k in np.unique(folds)),
        "groups": groups,
        "prior": prior,
        "variants": variants,
        **full_model_diagnostics(model, full, scored, groups, settings),
    }
    write_outputs(report, out, time.perf_counter() - start)
    return report


def fit_variants(
    model: ModelInputs,
    config: RunConfig,
    groups: dict[str, list[str]],
    seed_folds: list[np.ndarray],
    scored: np.ndarray,
) -> tuple[dict[str, dict], tuple[CrossFitResult, np.ndarray]]:
    """Every variant on every fold seed, scored on the ``scored`` rows, with its deltas paired against the
    full model; also the full model's fit on the run's own folds (raw result, calibrated scored OOF),
    which the diagnostics describe."""
    inputs = model.inputs
    columns = list(inputs.X.columns)
    y, folds = inputs.y[scored], inputs.folds[scored]
    variants: dict[str, dict] = {}
    per_seed_folds: dict[str, list[list[float]]] = {}
    full = None
    for name, (cols, fold_names) in variant_parts(columns, groups, model.fold_feature_names()).items():
        log.info("ablation variant %s: %d column(s) %s, %d fold seed(s)", name, len(cols), fold_names, len(seed_folds))
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
    return variants, full


def report_config(
    config: RunConfig,
    settings: AblationConfig,
    model: ModelInputs,
    result: CrossFitResult,
    folds: np.ndarray,
    scored: np.ndarray,
    fold_seeds: int,
) -> dict:
    """What the report was measured on and with: enough to rerun it (the JSON is a pure function of these)."""
    return {
        "train": str(config.train_path),
        "rows": len(folds),
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
    }


def full_model_diagnostics(
    model: ModelInputs,
    full: tuple[CrossFitResult, np.ndarray],
    scored: np.ndarray,
    groups: dict[str, list[str]],
    settings: AblationConfig,
) -> dict:
    """Gain importance, reliability before / after calibration, the verbosity and position biases of the
    full model on the run's own folds."""
    result, calibrated = full
    inputs = model.inputs
    y = inputs.y[scored]
    swap_gap = max_swap_gap(result, inputs, list(inputs.X.columns), model.fold_cache)
    return {
        "importance": gain_importance(result, groups, settings.top_features),
        "reliability": {
            "before": reliability(y, result.oof[scored], settings.reliability_bins),
            "after": reliability(y, calibrated, settings.reliability_bins),
        },
        "verbosity": verbosity(y, calibrated, length_log_ratio(inputs.train[scored]), settings.length_buckets),
        "position": position(y, calibrated, swap_gap),
    }


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
