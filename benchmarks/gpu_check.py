"""Every path only a GPU exercises, in one command (under 8 minutes on one modern GPU):

- fp16 and bf16 autocast training steps (accelerate mixed precision) of a DistilBERT-shaped and a
  Llama-shaped model (random weights, fixture tokenizers), then scoring;
- 4-bit and 8-bit loading through bitsandbytes with LoRA: train, save, reload quantised, same scores;
- the encoder stage's multi-worker path (2 ``torchrun`` workers on the stage's rows) when more than one GPU
  is visible; without CUDA only this check runs, on the CPU (gloo);
- the bundle's per-device scoring (``encoders.parallel_predict``: one process per visible GPU) against
  scoring in this process;
- inference tokens/s of a DistilBERT-base-sized model in fp16 with length-sorted dynamic padding, as
  measured model-FLOP utilisation (MFU) next to the one ``encoder_throughput.kaggle_estimate`` assumes.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check]

Prints a table and writes ``OUT.json`` / ``OUT.md``; exits 1 when any check fails. Without CUDA it
says so, runs the multi-worker check on the CPU and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, or imported by the tests

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

    ModelParts = tuple[type[PreTrainedModel], PretrainedConfig, PreTrainedTokenizerFast]

# peak dense fp16/bf16 tensor TFLOPS by device name (vendor data sheets); unknown devices get no MFU
PEAK_TFLOPS = {
    "T4": 65.0,
    "V100": 125.0,
    "A10": 125.0,
    "A100": 312.0,
    "L4": 121.0,
    "L40S": 362.0,
    "H100": 989.0,
    "H200": 989.0,
}
ASSUMED_MFU = {"DistilBERT-base": 0.30}  # what encoder_throughput.MODELS assumes for T4


@dataclass
class CheckResult:
    name: str
    status: str  # ok | FAIL | skipped
    seconds: float
    detail: str
    metrics: dict = field(default_factory=dict)


class Skip(Exception):
    """A check that does not apply on this machine (e.g. data parallel with one GPU)."""


def run_checks(checks: list[tuple[str, Callable[[], tuple[str, dict]]]]) -> list[CheckResult]:
    """Each check returns (detail, metrics) or raises: Skip -> skipped, anything else -> FAIL."""
    results = []
    for name, check in checks:
        start = time.perf_counter()
        try:
            detail, metrics = check()
            status = "ok"
        except Skip as exc:
            detail, metrics, status = str(exc), {}, "skipped"
        except Exception as exc:  # noqa: BLE001 (a failed check is a row of the table, not a crash)
            detail, metrics, status = f"{type(exc).__name__}: {exc}"[:300], {}, "FAIL"
        results.append(CheckResult(name, status, time.perf_counter() - start, detail, metrics))
        print(f"[{status}] {name} ({results[-1].seconds:.1f} s): {detail}", flush=True)
    return results


def table(results: list[CheckResult]) -> str:
    lines = ["| check | status | seconds | detail |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.detail.replace('|', '/')} |" for r in results]
    return "\n".join(lines)


def peak_tflops(device_name: str) -> float | None:
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):  # "A100" before "A10", "L40S" before "L4"
        if key in device_name.upper():
            return PEAK_TFLOPS[key]
    return None


# --- models and data ------------------------------------------------------------------------------


def random_model(kind: str, folder: Path, size: str = "small") -> Path:
    """A random-weight model folder with a fixture tokenizer: DistilBERT- or Llama-shaped (size: tiny, small, base)."""
    from tests import tiny_models

    model_class, config, fast = _distilbert_parts(size) if kind == "distilbert" else _llama_parts(size)
    return tiny_models._save(folder, model_class, config, fast)


def _distilbert_parts(size: str) -> ModelParts:
    """An encoder-only classifier (the MiniLM / DeBERTa kind): class, config, fast tokenizer."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from tests import tiny_models

    tok, fast = tiny_models._bert_style_tokenizer()
    dim, n_layers, n_heads, hidden_dim = {
        "base": (768, 6, 12, 3072),
        "small": (256, 2, 4, 1024),
        "tiny": (32, 1, 2, 64),  # the CPU tests
    }[size]
    config = DistilBertConfig(
        vocab_size=tok.get_vocab_size(),
        pad_token_id=0,
        dim=dim,
        n_layers=n_layers,
        n_heads=n_heads,
        hidden_dim=hidden_dim,
    )
    config.num_labels = 3  # a PretrainedConfig setting the model class's typed signature leaves out
    return DistilBertForSequenceClassification, config, fast


def _llama_parts(size: str) -> ModelParts:
    """A decoder LLM (the Gemma / SmolLM2 kind), saved as a causal LM: class, config, fast tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests import tiny_models

    tok = tiny_models._bpe()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32 if size == "tiny" else 256,
        intermediate_size=64 if size == "tiny" else 688,
        num_hidden_layers=1 if size == "tiny" else 2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"),
    )
    return LlamaForCausalLM, config, fast


def battles(n: int = 64, seed: int = 0):
    from pipelines.data.battles import load_battles_frame
    from tests.conftest import make_battles

    return load_battles_frame(make_battles(n, seed=seed), "gpu_check", labelled=True)[0]


def encoder_config(folder: Path, **kw):
    from encoders.settings import EncoderConfig

    base = dict(model_path=str(folder), max_length=128, batch_size=8, eval_batch_size=16, max_steps=3)
    return EncoderConfig(**{**base, **kw})


# --- checks -----------------------------------------------------------------------------------------


def autocast_training(folder: Path, precision: str) -> tuple[str, dict]:
    """A few optimiser steps under accelerate's mixed precision, then scoring; finite losses and scores."""
    import torch

    from encoders.classifier import TransformerClassifier, resolve_precision

    if precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bf16")
    data = battles()
    clf = TransformerClassifier(encoder_config(folder, precision=precision), progress=False)
    clf.fit(data, data["label"].to_numpy())
    used = clf._accelerator().mixed_precision
    p = clf.predict_proba(data.iloc[:16])
    if not (np.isfinite(clf.train_loss_) and np.isfinite(p).all()) or used != resolve_precision(precision):
        raise RuntimeError(f"loss {clf.train_loss_}, finite scores {np.isfinite(p).all()}, mixed precision {used}")
    return f"{clf.steps_} steps, loss {clf.train_loss_:.3f}, mixed precision {used}", {"loss": clf.train_loss_}


def quantised_lora(folder: Path, bits: int, work: Path) -> tuple[str, dict]:
    """Load in 4/8 bits with LoRA, train, save the adapter + head, reload quantised: same scores."""
    import importlib.util

    from encoders.classifier import TransformerClassifier

    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError("bitsandbytes is not installed (pip install bitsandbytes)")
    data = battles()
    config = encoder_config(folder, load_in_bits=bits, lora=True, precision="fp16")
    clf = TransformerClassifier(config, progress=False).fit(data, data["label"].to_numpy())
    p = clf.predict_proba(data.iloc[:16])
    clf.save(work / f"lora_{bits}bit")
    again = TransformerClassifier.from_saved(work / f"lora_{bits}bit", config).predict_proba(data.iloc[:16])
    diff = float(np.abs(p - again).max())
    if diff > 1e-3:
        raise RuntimeError(f"reloaded {bits}-bit model scores differ by {diff:.2e}")
    return f"{clf.steps_} steps, reload max |diff| {diff:.1e}", {"reload_max_diff": diff}


def data_parallel(folder: Path, work: Path, gpus: int) -> tuple[str, dict]:
    """The encoder stage's multi-worker path as ``full_run`` takes it (``launch_data_parallel``: the stage's rows
    in a parquet file, ``torchrun`` over ``pipelines.train_encoder --rows``): 2 workers on 2 GPUs (NCCL), or on
    the CPU (gloo) where there is no GPU. The rows are two sources, as with ``--extra-train``: the OOF must
    cover exactly them."""
    import pandas as pd

    from arena_schema import CLASS_COLUMNS
    from pipelines.data.folds import make_folds
    from pipelines.stages.encoder_launch import launch_data_parallel

    if gpus == 1:
        raise Skip("1 GPU visible: data parallel needs 2 (or none, for the CPU path)")
    primary, extra = battles(64, seed=0), battles(32, seed=1)
    extra["id"] = "hh:" + extra["id"].astype(str)
    train = pd.concat([primary, extra], ignore_index=True)
    folds = make_folds(train, 2, seed=0).set_index("id").loc[train["id"], "fold"].to_numpy()
    run_dir = work / "ddp"
    run_dir.mkdir()
    config = encoder_config(folder, name="ddp", max_steps=4, workers=2, precision="auto" if gpus else "fp32")
    started = time.perf_counter()
    launch_data_parallel(config, train, folds, run_dir, 2, None)
    oof = pd.read_parquet(run_dir / "oof_ddp.parquet")
    p = oof[list(CLASS_COLUMNS)].to_numpy()
    if oof["id"].astype(str).tolist() != train["id"].astype(str).tolist():
        raise RuntimeError("the workers' OOF rows are not the stage's rows")
    if not np.isfinite(p).all():
        raise RuntimeError("OOF probabilities not finite")
    where = f"{gpus} GPUs" if gpus else "the CPU (gloo)"
    seconds = time.perf_counter() - started
    return f"2 workers on {where}: {len(oof)} OOF rows (2 sources) in {seconds:.0f}s", {"seconds": seconds}


def per_device_scoring(folder: Path, work: Path, precision: str = "fp16") -> tuple[str, dict]:
    """Fold models trained here, scored one process per visible GPU and in this process: same scores."""
    from encoders.cross_fit import cross_fit_encoder
    from encoders.parallel_predict import predict_proba_multi_gpu, visible_gpus

    data, test = battles(64), battles(40, seed=3)
    folds = np.arange(len(data)) % 2
    config = encoder_config(folder, name="scoring", precision=precision)
    cross_fit_encoder(config, data, data["label"].to_numpy(), folds, test, work / "scoring", progress=False)
    models = work / "scoring" / "encoder_scoring"
    split = predict_proba_multi_gpu(models, test)
    here = predict_proba_multi_gpu(models, test, n_processes=1)
    diff = float(np.abs(split - here).max())
    if diff > 2e-3:  # fp16 autocast: batches differ between the split and the whole
        raise RuntimeError(f"per-device scores differ from in-process ones by {diff:.2e}")
    return f"{len(visible_gpus())} process(es), max |diff| vs in-process {diff:.1e}", {"max_diff": diff}


def measure_inference(model, lengths: np.ndarray, batch_size: int, device: str, dtype) -> dict:
    """Tokens/s of length-sorted, dynamically padded batches of random ids with these lengths."""
    import torch

    from encoders.classifier import pad_batch
    from encoders.inputs import length_sorted_batches

    rng = np.random.default_rng(0)
    vocab = model.config.vocab_size
    seqs = [rng.integers(5, vocab, size=int(n)).tolist() for n in lengths]
    batches = [pad_batch([seqs[i] for i in idx], 0) for idx in length_sorted_batches(lengths, batch_size)]
    model.eval()
    with torch.inference_mode(), torch.autocast(device_type=device, dtype=dtype, enabled=dtype != torch.float32):
        for b in batches[:2]:  # warm-up
            model(**{k: v.to(device) for k, v in b.items()})
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for b in batches:
            model(**{k: v.to(device) for k, v in b.items()})
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    tokens = int(lengths.sum())
    return {"tokens_per_s": tokens / seconds, "flops_per_s": 2 * params * tokens / seconds, "params": params}


def throughput(folder: Path, device_name: str) -> tuple[str, dict]:
    """DistilBERT-base-sized fp16 inference on arena-like lengths (mean ~415 tokens at max_length 512)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=3).to("cuda")
    lengths = np.clip(np.random.default_rng(1).normal(415, 90, size=2048), 64, 512).astype(int)
    m = measure_inference(model, lengths, 64, "cuda", torch.float16)
    peak = peak_tflops(device_name)
    mfu = None if peak is None else m["flops_per_s"] / (peak * 1e12)
    m.update(peak_tflops=peak, measured_mfu=mfu, assumed_mfu_t4=ASSUMED_MFU["DistilBERT-base"])
    shown = "unknown peak" if mfu is None else f"MFU {mfu:.2f} (T4 projection assumes {ASSUMED_MFU['DistilBERT-base']})"
    return f"{m['tokens_per_s']:.0f} tokens/s, {m['flops_per_s'] / 1e12:.1f} TFLOPS, {shown}", m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check"))
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine: only the CPU path of the multi-worker encoder stage is")
        print("checked (2 gloo workers); run it on a GPU machine for the rest. Nothing is written.", flush=True)
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
            work = Path(tmp)
            distil = random_model("distilbert", work / "distil")
            results = run_checks([("2-worker data parallel (CPU)", lambda: data_parallel(distil, work, 0))])
        print("\n" + table(results))
        return 1 if any(r.status == "FAIL" for r in results) else 0
    gpus = torch.cuda.device_count()
    name = torch.cuda.get_device_name(0)
    print(f"gpu_check on {gpus} x {name}, torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        distil, llama = random_model("distilbert", work / "distil"), random_model("llama", work / "llama")
        checks: list[tuple[str, Callable[[], tuple[str, dict]]]] = [
            (f"{kind} {prec} autocast training", partial(autocast_training, folder, prec))
            for kind, folder in (("DistilBERT-shaped", distil), ("Llama-shaped", llama))
            for prec in ("fp16", "bf16")
        ]
        checks += [(f"{b}-bit bitsandbytes + LoRA", partial(quantised_lora, llama, b, work)) for b in (4, 8)]
        checks.append(("2-process data parallel", lambda: data_parallel(distil, work, gpus)))
        checks.append(("bundle per-device scoring", lambda: per_device_scoring(distil, work)))
        checks.append(
            (
                "fp16 tokens/s vs FLOP projection",
                lambda: throughput(random_model("distilbert", work / "b", "base"), name),
            )
        )
        results = run_checks(checks)
    failed = [r for r in results if r.status == "FAIL"]
    print("\n" + table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": f"{gpus} x {name}", "torch": torch.__version__, "command": "python benchmarks/gpu_check.py"}
    out.with_suffix(".json").write_text(json.dumps({**meta, "checks": [r.__dict__ for r in results]}, indent=2) + "\n")
    out.with_suffix(".md").write_text(f"# gpu_check on {meta['device']} (torch {meta['torch']})\n\n{table(results)}\n")
    print(f"\n{len(failed)} failed of {len(results)}; wrote {out}.json/.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
