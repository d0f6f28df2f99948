"""Do the fold features pay off? Grouped 5-fold OOF log loss: handcrafted, + tfidf, + embeddings.

Real votes from the Kaggle-schema sets in ``../shared/data`` (prompt-grouped folds across sets).
Each fold feature is cloned and fitted on the fold's training battles only, as the stacker's
``fold_features`` hook does; the same LightGBM stacker (swap-augmented, swap-averaged) scores
every feature set on the same folds. ``--embedder MODEL_DIR`` adds MiniLM-style embedding
features (last turns; ``--embed-cache`` reuses vectors across runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_DATA, ROOT  # noqa: E402
from benchmarks.embed_throughput import KAGGLE_SCHEMA_SETS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--components", type=int, default=32)
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--embedder", help="local encoder folder: also score + embedding features")
    p.add_argument("--embed-cache", default=None)
    p.add_argument("--max-rows", type=int, default=None, help="a seeded subset (smoke runs)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vectors_payoff.json"))
    args = p.parse_args()

    from sklearn.base import clone

    from features.extractor import FeatureExtractor
    from features.text_vectors import TfidfDiffTransformer
    from pipelines.data import load_battles
    from pipelines.folds import make_folds, prompt_groups
    from stacking.lgbm import LGBMStacker
    from stacking.metrics import multiclass_log_loss

    frames = [load_battles(Path(args.data) / name / "train.csv.gz")[0] for name in KAGGLE_SCHEMA_SETS]
    battles = pd.concat(frames, ignore_index=True)
    if args.max_rows:
        keep = np.sort(np.random.default_rng(0).permutation(len(battles))[: args.max_rows])
        battles = battles.iloc[keep].reset_index(drop=True)
    y = battles["label"].to_numpy()
    folds = make_folds(battles)["fold"].to_numpy()
    groups = prompt_groups(battles)
    start = time.perf_counter()
    base = FeatureExtractor(n_jobs=1, progress=False).transform(battles).reset_index(drop=True)
    t_features = time.perf_counter() - start
    templates = {"tfidf": TfidfDiffTransformer(n_components=args.components)}
    t_embed = None
    if args.embedder:
        import torch

        from encoders.embedder import TextEmbedder, embed_battles
        from features.embedding_features import EmbeddingPairFeatures

        torch.set_num_threads(1)
        start = time.perf_counter()
        embedder = TextEmbedder(args.embedder, precision="fp32", cache_dir=args.embed_cache)
        battles = battles.join(embed_battles(embedder, battles))
        t_embed = time.perf_counter() - start
        templates["emb"] = EmbeddingPairFeatures()
    sets = [("handcrafted", ())] + [(f"handcrafted+{n}", (n,)) for n in templates]
    if len(templates) > 1:
        sets.append(("handcrafted+" + "+".join(templates), tuple(templates)))
    oof = {name: np.zeros((len(y), 3)) for name, _ in sets}
    t_tfidf = 0.0
    for k in range(5):
        tr, va = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        vectors = {}
        for name, template in templates.items():
            start = time.perf_counter()
            fitted = clone(template).fit(battles.iloc[tr])
            out = pd.concat([fitted.transform(battles.iloc[tr]), fitted.transform(battles.iloc[va])]).sort_index()
            vectors[name] = out.reset_index(drop=True)
            if name == "tfidf":
                t_tfidf += time.perf_counter() - start
        for name, parts in sets:
            X = base.join([vectors[p] for p in parts]) if parts else base
            model = LGBMStacker(params={"num_threads": args.num_threads, "verbosity": -1}, seed=k)
            model.fit(X.iloc[tr], y[tr], groups=groups[tr])
            oof[name][va] = model.predict_proba(X.iloc[va])
    losses = {name: multiclass_log_loss(y, proba) for name, proba in oof.items()}
    per_fold = {
        name: [multiclass_log_loss(y[folds == k], proba[folds == k]) for k in range(5)] for name, proba in oof.items()
    }
    deltas = {
        name: np.subtract(per_fold[name], per_fold["handcrafted"]).tolist() for name, _ in sets if name != "handcrafted"
    }
    mean_chars = float(np.mean([len(t[-1]) for c in ("a_turns", "b_turns") for t in battles[c]]))
    result = {
        "rows": len(battles),
        "sources": list(KAGGLE_SCHEMA_SETS),
        "mean_answer_chars": mean_chars,
        "oof_log_loss": losses,
        "per_fold": per_fold,
        "per_fold_delta_vs_handcrafted": deltas,
        "seconds_embedding_all_rows": t_embed,
        "seconds_handcrafted_features": t_features,
        "seconds_tfidf_5_folds_fit_transform": t_tfidf,
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{len(battles)} rows from {', '.join(KAGGLE_SCHEMA_SETS)}; mean answer {mean_chars:.0f} chars")
    for name, loss in losses.items():
        print(f"  {name:<20} OOF log loss {loss:.4f}")
    for name, delta in deltas.items():
        print(f"  per-fold delta {name} - handcrafted: {np.round(delta, 4).tolist()} (mean {np.mean(delta):+.4f})")
    print(f"  time: handcrafted {t_features:.0f}s, tfidf fit+transform over 5 folds {t_tfidf:.0f}s", end="")
    print(f", embeddings {t_embed:.0f}s" if t_embed is not None else "")


if __name__ == "__main__":
    main()
