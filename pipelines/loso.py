"""Leave-one-source-out report: how each tie handling transfers to a source it has never seen.

    python -m pipelines.loso --data ../shared/data --out benchmarks/results/loso --fold-seeds 3

For every held-out source: train on all other sources (minus any row sharing a prompt or an
answer pair with the held-out one, so overlapping sets cannot leak), score the held-out rows.
Also within-source OOF: grouped folds over all rows, scored per source. Each option of
``stacking.tie_handling`` is run with every fold seed (the seed moves the folds, the inner
early-stopping split and LightGBM's bagging); results are mean ± std over seeds, and deltas are
paired per seed against ``drop_tieless``. Writes ``loso.{json,md,html}`` and reliability PNGs.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import CLASS_NAMES, swap_proba
from features.extractor import FeatureExtractor
from pipelines.metrics import summarize
from pipelines.source_folds import make_source_folds, pair_keys, pair_orientation, source_groups
from pipelines.training_sets import TIE, combined_shared_data, load_training_sources, mark_sources_with_ties
from stacking.tie_handling import OPTIONS, TieAwareStacker

log = logging.getLogger(__name__)

BASELINE = "drop_tieless"
EPS = 1e-15


# --------------------------------------------------------------------------- scores


def pairwise_loss(y: np.ndarray, proba: np.ndarray) -> float | None:
    """Log loss of P(A) / (P(A) + P(B)) on decided rows: what a tie-less source can judge."""
    decided = y != TIE
    if not decided.any():
        return None
    p = np.clip(proba[decided, y[decided]] / proba[decided, :2].sum(axis=1), EPS, 1)
    return float(-np.log(p).mean())


def vote_share_loss(battles: pd.DataFrame, y: np.ndarray, proba: np.ndarray) -> dict | None:
    """Cross-entropy against the vote shares of pairs with several votes (and the shares' own
    entropy, the floor); votes on B|A are turned round to A|B first."""
    keys = pair_keys(battles)
    flip = ~pair_orientation(battles)
    onehot = np.eye(3)[y]
    onehot[flip] = swap_proba(onehot[flip])
    pred = proba.copy()
    pred[flip] = swap_proba(pred[flip])
    frame = pd.DataFrame(np.hstack([onehot, pred]), columns=["qa", "qb", "qt", "pa", "pb", "pt"])
    frame["key"] = keys
    size = frame.groupby("key").size()
    multi = size[size >= 2].index
    if len(multi) == 0:
        return None
    mean = frame[frame["key"].isin(multi)].groupby("key").mean()
    q, p = mean[["qa", "qb", "qt"]].to_numpy(), np.clip(mean[["pa", "pb", "pt"]].to_numpy(), EPS, 1)
    cross = float(-(q * np.log(p)).sum(axis=1).mean())
    entropy = float(-(q * np.log(np.clip(q, EPS, 1))).sum(axis=1).mean())
    return {"pairs": int(len(multi)), "cross_entropy": cross, "entropy": entropy, "kl": cross - entropy}


def score_rows(battles: pd.DataFrame, y: np.ndarray, proba: np.ndarray) -> dict:
    base = summarize(y, proba, np.zeros(len(y), dtype=int))
    return {
        "rows": int(len(y)),
        "log_loss": base["log_loss"],
        "per_class": base["per_class"],
        "accuracy": base["accuracy"],
        "pairwise": pairwise_loss(y, proba),
        "mean_p_tie": float(proba[:, TIE].mean()),
        "tie_rate": float((y == TIE).mean()),
        "votes": vote_share_loss(battles, y, proba),
    }


def reliability_bins(y: np.ndarray, proba: np.ndarray, cls: int, n_bins: int = 10) -> dict:
    """Equal-width bins of P(cls): mean predicted, observed frequency, rows; and the ECE."""
    p, hit = proba[:, cls], (y == cls).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = index == b
        if mask.any():
            bins.append({"n": int(mask.sum()), "mean_predicted": float(p[mask].mean()), "observed": hit[mask].mean()})
    ece = sum(b["n"] * abs(b["observed"] - b["mean_predicted"]) for b in bins) / max(len(y), 1)
    return {"bins": bins, "ece": float(ece)}


# --------------------------------------------------------------------------- experiment


def _fit_predict(option, X, battles, train, test, groups, seed, settings) -> np.ndarray:
    model = TieAwareStacker(option, seed=seed, **settings)
    model.fit(
        X[train],
        battles["label"].to_numpy()[train],
        battles["source"].to_numpy()[train],
        battles["source_has_ties"].to_numpy()[train],
        battles["weight"].to_numpy()[train] if "weight" in battles else None,
        groups[train],
    )
    return model.predict_proba(X[test])


def _run_task(option, k, battles, X, groups, holdouts, n_folds, oof, settings, has_ties) -> dict:
    """One option with one fold seed: every held-out source, then (optionally) grouped OOF."""
    seed = 42 + k
    y = battles["label"].to_numpy()
    sources = battles["source"].to_numpy().astype(str)
    out = {"loso": {}, "oof": {}, "pooled": None}
    pooled_y, pooled_p = [], []
    for held in holdouts:
        test = sources == held
        train = ~test & ~np.isin(groups, np.unique(groups[test]))
        t0 = time.time()
        proba = _fit_predict(option, X, battles, train, test, groups, seed, settings)
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
        proba = np.zeros((len(y), 3))
        for f in range(n_folds):
            held = folds == f
            proba[held] = _fit_predict(option, X, battles, ~held, held, groups, seed, settings)
        for s in sorted(set(sources)):
            rows = sources == s
            out["oof"][s] = score_rows(battles[rows], y[rows], proba[rows])
        log.info("oof %s seed %d done", option, seed)
    return out


def run_loso(
    battles: pd.DataFrame,
    X: pd.DataFrame,
    options=OPTIONS,
    fold_seeds: int = 3,
    holdouts=None,
    n_folds: int = 5,
    oof_options=None,
    settings: dict | None = None,
    n_jobs: int = 1,
    on_progress=None,
) -> dict:
    """Scores per option, seed and source (LOSO and, for ``oof_options``, within-source OOF), plus
    pooled predictions of the tie-bearing held-out sources for the reliability diagrams (first seed)."""
    from joblib import Parallel, delayed

    settings = settings or {}
    options = list(options)
    oof_options = options if oof_options is None else list(oof_options)
    battles = battles.reset_index(drop=True)
    X = X.reset_index(drop=True)
    sources = battles["source"].to_numpy().astype(str)
    groups = source_groups(battles)
    holdouts = list(holdouts) if holdouts else sorted(set(sources))
    has_ties = {str(s): bool(v) for s, v in battles.groupby("source")["source_has_ties"].first().items()}
    tasks = [(o, k) for k in range(fold_seeds) for o in options]  # seed by seed: partial reports stay paired
    done = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_run_task)(o, k, battles, X, groups, holdouts, n_folds, o in oof_options, settings, has_ties)
        for o, k in tasks
    )
    results = {"loso": {}, "oof": {}, "reliability": {}, "has_ties": has_ties}
    for (option, k), out in zip(tasks, done):
        for part in ("loso", "oof"):
            table = results[part].setdefault(option, {})
            for s, sc in out[part].items():
                table.setdefault(s, []).append(sc)
        if k == 0 and out["pooled"] is not None:
            yy, pp = out["pooled"]
            results["reliability"][option] = {c: reliability_bins(yy, pp, i) for i, c in enumerate(CLASS_NAMES)}
        if on_progress is not None:
            on_progress(results)
    return results


# --------------------------------------------------------------------------- summary


def _values(runs: list[dict], path: tuple) -> np.ndarray:
    out = []
    for r in runs:
        v = r
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
    out = {"per_source": {}, "macro": {}, "oof_per_source": {}, "oof_macro": {}}
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


def _f(ms: dict | None, digits: int = 4, sign: bool = False) -> str:
    if not ms or ms.get("mean") is None:
        return "–"
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"{fmt.format(ms['mean'])} ± {ms['std']:.{digits}f}"


def report_blocks(summary: dict, meta: dict, images: dict[str, str]) -> list[tuple]:
    dkey = "delta_vs_" + BASELINE
    blocks: list[tuple] = [
        ("h1", "Leave-one-source-out: tie handling"),
        (
            "p",
            f"{meta['rows']} rows from {len(meta['sources'])} sources; fold seeds {meta['fold_seeds']}; "
            f"LightGBM learning rate {meta['settings'].get('params', {}).get('learning_rate')}, "
            f"≤ {meta['settings'].get('num_boost_round')} rounds; uncalibrated probabilities; "
            f"wall time {meta['wall_s']:.0f} s. Command: `{meta['command']}`.",
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
    rows = []
    for option, macro in summary["macro"].items():
        v, d = macro["value"], macro[dkey]
        if v["log_loss"]["mean"] is None:
            continue
        rows.append(
            [
                option,
                _f(v["log_loss"]),
                _f(d.get("log_loss"), sign=True),
                _f(v["tie_loss"], 3),
                _f(d.get("tie_loss"), 3, sign=True),
                _f(v["a_loss"], 3),
                _f(v["accuracy"], 3),
                _f(v["mean_p_tie"], 3),
                _f(v["pairwise_tieless"]),
            ]
        )
    blocks.append(
        (
            "table",
            [
                "option",
                "LOSO log loss",
                f"Δ vs {BASELINE}",
                "tie-row loss",
                "Δ tie-row",
                "A-row loss",
                "accuracy",
                "mean P(tie)",
                "pairwise (tie-less held out)",
            ],
            rows,
        )
    )
    if summary["oof_macro"] and any(m["value"]["log_loss"]["mean"] is not None for m in summary["oof_macro"].values()):
        blocks.append(("h2", "Within-source OOF (grouped folds over all sources; macro over sources with ties)"))
        rows = []
        for option, macro in summary["oof_macro"].items():
            v, d = macro["value"], macro[dkey]
            if v["log_loss"]["mean"] is None:
                continue
            rows.append(
                [
                    option,
                    _f(v["log_loss"]),
                    _f(d.get("log_loss"), sign=True),
                    _f(v["tie_loss"], 3),
                    _f(v["votes_ce"]),
                    _f(v["pairwise_tieless"]),
                ]
            )
        blocks.append(
            (
                "table",
                ["option", "OOF log loss", f"Δ vs {BASELINE}", "tie-row loss", "vote-share CE", "pairwise (tie-less)"],
                rows,
            )
        )
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
                text = _f(cell["log_loss"], 3)
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


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += [("# " if kind == "h1" else "## ") + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            lines += ["| " + " | ".join(map(str, block[1])) + " |", "|" + "---|" * len(block[1])]
            lines += ["| " + " | ".join(map(str, r)) + " |" for r in block[2]] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines)


def render_html(blocks: list[tuple]) -> str:
    e = html.escape
    body = []
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
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
    )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>arena-pref leave-one-source-out</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def reliability_png(rel: dict, option: str, path: Path, min_rows: int = 10) -> Path:
    """P(A wins) and P(tie): observed frequency against mean predicted probability."""
    from pipelines import plots

    fig, axes = plots.plt.subplots(1, 2, figsize=(9, 4))
    for ax, cls in zip(axes, ("a", "tie")):
        bins = [b for b in rel[cls]["bins"] if b["n"] >= min_rows]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.plot([b["mean_predicted"] for b in bins], [b["observed"] for b in bins], "o-", ms=4)
        ax.set_title(f"{option}: P({plots.CLASS_LABELS[cls]}), ECE {rel[cls]['ece']:.3f}", fontsize=10)
        ax.set_xlabel("mean predicted")
        ax.set_ylabel("observed frequency")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    return plots._save(fig, path)


def write_outputs(results: dict, summary: dict, meta: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for option, rel in results["reliability"].items():
        images[option] = f"reliability_{option}.png"
        reliability_png(rel, option, out / images[option])
    blocks = report_blocks(summary, meta, images)
    paths = {"json": out / "loso.json", "md": out / "loso.md", "html": out / "loso.html"}
    paths["json"].write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=1, default=float))
    paths["md"].write_text(render_markdown(blocks))
    paths["html"].write_text(render_html(blocks))
    return paths


# --------------------------------------------------------------------------- command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.loso", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="shared data folder (converted with pipelines.build_shared rules)")
    src.add_argument("--combined", type=Path, help="a train.csv-schema file with a source column")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated subset of {','.join(OPTIONS)}")
    p.add_argument("--fold-seeds", type=int, default=3)
    p.add_argument("--holdouts", default="", help="comma-separated sources to hold out (default: all)")
    p.add_argument(
        "--oof-options", default=None, help="options that also get within-source OOF (default: all; '' none)"
    )
    p.add_argument("--jobs", type=int, default=1, help="(option, seed) tasks run in parallel")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--cache-dir", type=Path, default=Path("outputs/feature_cache"), help="feature cache")
    p.add_argument("--learning-rate", type=float, default=0.08)
    p.add_argument("--num-boost-round", type=int, default=600)
    p.add_argument("--early-stopping-rounds", type=int, default=50)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--tieless-weight", type=float, default=0.2)
    p.add_argument("--feature-jobs", type=int, default=1)
    return p


def rerender(out: Path) -> dict[str, Path]:
    """Rewrite the Markdown, HTML and PNGs of ``out/loso.json`` (e.g. after a report-layout change)."""
    saved = json.loads((out / "loso.json").read_text())
    return write_outputs(saved["runs"], summarize_results(saved["runs"]), saved["meta"], out)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--rerender"]:
        print(f"wrote {rerender(Path(argv[1]))['md']}")
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = [o for o in args.options.split(",") if o]
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; choose from {OPTIONS}")
    start = time.time()
    if args.data is not None:
        combined = args.out / "_combined.csv"
        args.out.mkdir(parents=True, exist_ok=True)
        combined_shared_data(args.data).to_csv(combined, index=False)
    else:
        combined = args.combined
    battles = mark_sources_with_ties(load_training_sources(combined))
    if args.data is not None:
        combined.unlink()
    X = FeatureExtractor(n_jobs=args.feature_jobs, cache_dir=args.cache_dir, progress=False).transform(battles)
    settings = {
        "params": {"learning_rate": args.learning_rate, "num_threads": args.num_threads},
        "num_boost_round": args.num_boost_round,
        "early_stopping_rounds": args.early_stopping_rounds,
        "tieless_weight": args.tieless_weight,
    }
    holdouts = [h for h in args.holdouts.split(",") if h] or None
    oof_options = options if args.oof_options is None else [o for o in args.oof_options.split(",") if o]
    meta = {
        "rows": int(len(battles)),
        "sources": battles.groupby("source").size().to_dict(),
        "has_ties": {str(k): bool(v) for k, v in battles.groupby("source")["source_has_ties"].first().items()},
        "fold_seeds": args.fold_seeds,
        "settings": settings,
        "options": options,
        "command": "python -m pipelines.loso " + " ".join(argv),
    }

    def progress(partial: dict) -> None:  # a report after every finished task, so a cut-short run still has one
        write_outputs(partial, summarize_results(partial), {**meta, "wall_s": time.time() - start}, args.out)

    results = run_loso(
        battles, X, options, args.fold_seeds, holdouts, args.n_folds, oof_options, settings, args.jobs, progress
    )
    summary = summarize_results(results)
    meta["wall_s"] = time.time() - start
    paths = write_outputs(results, summary, meta, args.out)
    for option, macro in summary["macro"].items():
        v = macro["value"]
        print(f"{option:16s} LOSO {_f(v['log_loss'])}  tie-row {_f(v['tie_loss'], 3)}")
    print(f"wrote {paths['md']}")
    return 0


if __name__ == "__main__":
    from pipelines.errors import run_command

    sys.exit(run_command(main))
