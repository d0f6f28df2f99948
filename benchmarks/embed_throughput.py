"""Embedding throughput of :class:`encoders.embedder.TextEmbedder` on real rows, and a 2x T4 projection.

Embeds the last prompt turn and both last answers (3 texts per row) of N real battles with
all-MiniLM-L6-v2, once in fp32 and once in bf16 (fresh embedder, no cache: every unique text
goes through the model), length-sorted with dynamic padding. Prints texts/s and tokens/s.

The Kaggle projection (57k train + 25k test rows, 3 texts each, no dedup credit) counts forward
FLOPs per token as 2 x (non-embedding parameters) + 4 x layers x hidden x (mean sequence length)
(attention scores and weighted sum), takes token lengths from the real arena rows, and assumes
a T4 at 65 TFLOPS fp16 peak with 15% utilisation for a 6-layer, 384-wide model on short,
dynamically padded batches (small models cannot fill the tensor cores; deliberately low).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import encoder_bench_parser, load_real_battles, minilm_path

KAGGLE_ROWS = 57_000 + 25_000
TEXTS_PER_ROW = 3
T4_FP16_TFLOPS = 65.0
T4_UTILISATION = 0.15
KAGGLE_SCHEMA_SETS = ("qlora-vicuna80", "mtbench-human", "lfqa-experts", "llmbar", "hhh-alignment", "faireval")


def load_rows(data_dir: Path, n: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """A seeded draw of N rows from the Kaggle-schema sets, equal shares where a set allows."""
    from pipelines.data.battles import load_battles

    sets = {name: load_battles(data_dir / name / "train.csv.gz")[0] for name in KAGGLE_SCHEMA_SETS}
    rng = np.random.default_rng(seed)
    frames, share = [], max(n // len(sets), 1)
    for frame in sets.values():
        frames.append(frame.iloc[rng.permutation(len(frame))[:share]])
    rows = pd.concat(frames, ignore_index=True)
    if len(rows) < n:  # top up from the largest set
        big = sets["qlora-vicuna80"]
        extra = big[~big["id"].isin(rows["id"])]
        rows = pd.concat([rows, extra.iloc[rng.permutation(len(extra))[: n - len(rows)]]], ignore_index=True)
    return rows.iloc[:n], list(sets)


def texts_of(rows: pd.DataFrame) -> list[str]:
    from encoders.embedder import last_turn

    return [last_turn(t) for c in ("prompt_turns", "a_turns", "b_turns") for t in rows[c]]


def flops_per_token(config, mean_len: float) -> float:
    h, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    weights = layers * (4 * h * h + 2 * h * inter)  # attention projections + MLP
    return 2 * weights + 4 * layers * h * mean_len


def main() -> None:
    p = encoder_bench_parser(__doc__, rows=400, batch_size=32, max_length=256, out="embed_throughput.json")
    p.add_argument("--threads", type=int, default=1, help="1 is faster than 2 when other work shares the CPU")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated; bf16 is several times slower here")
    p.add_argument("--rounds", type=int, default=2, help="alternate fp32/bf16 this often; the best round counts")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",")
    model_path = Path(args.model) if args.model else minilm_path()
    rows, sources = load_rows(Path(args.data), args.rows)
    texts = texts_of(rows)
    unique = list(dict.fromkeys(texts))
    result: dict = {
        "model": str(model_path),
        "rows": len(rows),
        "source": sources,
        "texts": len(texts),
        "unique_texts": len(unique),
        "mean_chars_per_text": float(np.mean([len(t) for t in texts])),
        "threads": torch.get_num_threads(),
        "max_length": args.max_length,
        "batch_size": args.batch_size,
    }
    timings, config = time_precisions(model_path, texts, precisions, args)
    result |= timings
    best = min(precisions, key=lambda k: result[k]["seconds"])
    result["faster_on_this_cpu"] = best
    result["projection"] = kaggle_projection(model_path, Path(args.data), args.max_length, config, result[best])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print_summary(result, model_path, sources, precisions, args)


def time_precisions(model_path: Path, texts: list[str], precisions: list[str], args) -> tuple[dict, object]:
    """Each precision's best round (seconds, texts/s, tokens/s) and the model's config (for FLOP counts).
    Rounds alternate the precisions: a shared CPU's load drifts, and would otherwise favour one side."""
    from encoders.embedder import TextEmbedder

    unique = list(dict.fromkeys(texts))
    timings: dict = {}
    for round_ in range(args.rounds):
        for precision in precisions:
            emb = TextEmbedder(model_path, max_length=args.max_length, batch_size=args.batch_size, precision=precision)
            emb.embed(unique[:8])  # warm-up (load, first-call allocations); not counted
            emb.n_encoded_, emb.n_tokens_, emb.encode_seconds_ = 0, 0, 0.0
            start = time.perf_counter()
            emb.embed(texts)
            seconds = time.perf_counter() - start
            print(f"  round {round_} {precision}: {seconds:.1f}s", flush=True)
            if precision in timings and timings[precision]["seconds"] <= seconds:
                continue
            timings[precision] = {
                "seconds": seconds,
                "texts_per_s": emb.n_encoded_ / seconds,
                "tokens_per_s": emb.n_tokens_ / seconds,
                "mean_tokens_per_text": emb.n_tokens_ / emb.n_encoded_,
            }
            config = emb._load()[1].config
    return timings, config


def kaggle_projection(model_path: Path, data: Path, max_length: int, config, best: dict) -> dict:
    """Kaggle's rows at the real arena rows' token lengths: minutes on 2x T4 (FLOP estimate) and hours on this
    CPU at the ``best`` precision's rate."""
    from encoders.embedder import TextEmbedder

    arena = load_real_battles(data, ["arena-king398"])["arena-king398"]
    tokenizer, _ = TextEmbedder(model_path, max_length=max_length, precision="fp32")._load()
    arena_lengths = [
        len(ids) for ids in tokenizer(texts_of(arena), truncation=True, max_length=max_length)["input_ids"]
    ]
    arena_mean = float(np.mean(arena_lengths))
    kaggle_tokens = KAGGLE_ROWS * TEXTS_PER_ROW * arena_mean
    fpt = flops_per_token(config, arena_mean)
    t4_seconds = kaggle_tokens * fpt / (2 * T4_FP16_TFLOPS * 1e12 * T4_UTILISATION)
    cpu_gflops = best["tokens_per_s"] * flops_per_token(config, best["mean_tokens_per_text"]) / 1e9
    return {
        "kaggle_rows": KAGGLE_ROWS,
        "texts": KAGGLE_ROWS * TEXTS_PER_ROW,
        "arena_mean_tokens_per_text": arena_mean,
        "arena_share_texts_at_max_length": float(np.mean(np.array(arena_lengths) >= max_length)),
        "flops_per_token": fpt,
        "assumed_t4_fp16_tflops": T4_FP16_TFLOPS,
        "assumed_t4_utilisation": T4_UTILISATION,
        "minutes_2xT4": t4_seconds / 60,
        "cpu_effective_gflops": cpu_gflops,
        "hours_this_cpu": kaggle_tokens / best["tokens_per_s"] / 3600,
    }


def print_summary(result: dict, model_path: Path, sources: list[str], precisions: list[str], args) -> None:
    """The rates per precision and the projection, as lines on stdout."""
    best = result["faster_on_this_cpu"]
    print(f"model {model_path.name}: {result['rows']} rows from {', '.join(sources)} (seeded draw)")
    print(
        f"{result['texts']} texts ({result['unique_texts']} unique), mean {result['mean_chars_per_text']:.0f} chars;"
        f" max_length {args.max_length}, batch {args.batch_size}, {result['threads']} threads"
    )
    for precision in precisions:
        r = result[precision]
        print(
            f"  {precision}: {r['seconds']:.1f}s  {r['texts_per_s']:.1f} texts/s  {r['tokens_per_s']:.0f} tokens/s"
            f"  (mean {r['mean_tokens_per_text']:.1f} tokens/text)"
        )
    pr = result["projection"]
    print(f"  faster here: {best}; effective {pr['cpu_effective_gflops']:.0f} GFLOP/s")
    print(
        f"Kaggle {KAGGLE_ROWS} rows x {TEXTS_PER_ROW} texts, arena mean {pr['arena_mean_tokens_per_text']:.0f} "
        f"tokens/text ({pr['arena_share_texts_at_max_length']:.0%} at max_length), "
        f"{pr['flops_per_token'] / 1e6:.1f} MFLOP/token:"
    )
    print(
        f"  2x T4 (65 TFLOPS fp16 x {T4_UTILISATION:.0%}): {pr['minutes_2xT4']:.1f} min;"
        f" this CPU ({best}): {pr['hours_this_cpu']:.1f} h"
    )


if __name__ == "__main__":
    main()
