"""Sentence embeddings from any local Hugging Face encoder, cached by content hash.

The stacker gains from *frozen* embeddings (cosines, a projection of A - B) at a fraction of
fine-tuning's cost, so the embedder is built for throughput: each unique text is embedded once,
texts are length-sorted into dynamically padded batches, bf16 is used on CPU only where a
measurement says it is faster, and vectors are cached per text (sha256 of model fingerprint,
settings and text) in append-only shards, so reruns and other folds never recompute them.

Accepted folders (local only, ``local_files_only=True``):

- sentence-transformers: ``modules.json`` names the Transformer module's folder (``""`` or
  ``0_Transformer``) and the Pooling module's ``config.json`` (mean / cls / max);
- plain Hugging Face encoders: ``config.json`` at the root; mean pooling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from encoders.classifier import pad_batch
from encoders.gguf import resolve_model_path
from encoders.inputs import length_sorted_batches

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when the embedding computation changes: invalidates caches
POOLING_MODES = ("mean", "cls", "max")
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class EncoderFolder:
    """Where the transformer lives inside a model folder and how its outputs are pooled."""

    transformer_dir: Path
    pooling: str
    max_seq_length: int | None


def resolve_encoder_folder(model_path: str | Path) -> EncoderFolder:
    """Read a sentence-transformers layout (``modules.json``) or a plain HF folder."""
    root = Path(model_path)
    modules_file = root / "modules.json"
    transformer_dir, pooling = root, "mean"
    if modules_file.exists():
        modules = json.loads(modules_file.read_text())
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith(".Transformer"):
                transformer_dir = root / module.get("path", "")
            elif kind.endswith(".Pooling"):
                config_file = root / module.get("path", "") / "config.json"
                if config_file.exists():
                    config = json.loads(config_file.read_text())
                    chosen = [mode for key, mode in _ST_POOLING_KEYS.items() if config.get(key)]
                    if len(chosen) != 1:
                        raise ValueError(f"{config_file}: need exactly one of mean/cls/max pooling, got {config}")
                    pooling = chosen[0]
    if not (transformer_dir / "config.json").exists():
        raise FileNotFoundError(f"{transformer_dir}: no config.json; give a local Hugging Face encoder folder")
    max_seq_length = None
    for st_config in (transformer_dir / "sentence_bert_config.json", root / "sentence_bert_config.json"):
        if st_config.exists():
            max_seq_length = json.loads(st_config.read_text()).get("max_seq_length")
            break
    return EncoderFolder(transformer_dir=transformer_dir, pooling=pooling, max_seq_length=max_seq_length)


def model_fingerprint(folder: Path) -> str:
    """Identifies the weights without reading them: config, tokenizer files, weight names and sizes."""
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        file = folder / name
        if file.exists():
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    for name in WEIGHT_FILES:
        file = folder / name
        if file.exists():
            digest.update(f"{name}:{file.stat().st_size}".encode() + b"\0")
    return digest.hexdigest()


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vectors from token states; padding never counts."""
    hidden = hidden.float()
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(m == 0, float("-inf")).max(dim=1).values
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


class TextEmbedder:
    """``embed(texts)`` -> L2-normalised float32 vectors, one row per input text (duplicates included).

    ``precision``: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"``: on CUDA bf16/fp16, on CPU bf16
    only if a timed probe batch runs faster than fp32 (the choice is kept in ``cache_dir``).
    ``truncation="left"`` keeps a text's end (latest turns of a conversation), ``"right"`` its head.
    The model is loaded lazily, so a call answered from the cache never loads weights.
    """

    def __init__(
        self,
        model_path: str | Path,
        max_length: int = 256,
        batch_size: int = 32,
        precision: str = "auto",
        cache_dir: str | Path | None = None,
        pooling: str = "auto",
        device: str | None = None,
    ):
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
        self.model_path = resolve_model_path(model_path)  # a .gguf file: its cached fp32 folder
        self.folder = resolve_encoder_folder(self.model_path)
        self.pooling = self.folder.pooling if pooling == "auto" else pooling
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES} or auto, got {pooling!r}")
        config = json.loads((self.folder.transformer_dir / "config.json").read_text())
        limit = config.get("max_position_embeddings") or max_length
        if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2  # positions offset by the padding index
        self.max_length = min(max_length, self.folder.max_seq_length or max_length, limit)
        self.batch_size = batch_size
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.fingerprint = model_fingerprint(self.folder.transformer_dir)
        self.tokenizer_: PreTrainedTokenizerBase | None = None
        self.model_: PreTrainedModel | None = None
        self.precision_: str | None = None if precision == "auto" else precision
        self.n_encoded_ = 0  # texts sent through the model (cache misses), for tests and throughput
        self.n_tokens_ = 0  # real (unpadded) tokens sent through the model
        self.encode_seconds_ = 0.0
        self._memory: dict[str, np.ndarray] = {}
        self._loaded_shards: set[str] = set()

    # --- loading ------------------------------------------------------------------------

    def _load(self) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
        """Tokenizer and model, loaded on first use (a call answered from the cache never needs them)."""
        if self.tokenizer_ is not None and self.model_ is not None:
            return self.tokenizer_, self.model_
        from transformers import AutoModel, AutoTokenizer

        tok_dir = self.folder.transformer_dir
        if not any((tok_dir / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
            tok_dir = self.model_path
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model = AutoModel.from_pretrained(str(self.folder.transformer_dir), local_files_only=True)
        self.tokenizer_, self.model_ = tokenizer, model.to(self.device).eval()
        return self.tokenizer_, self.model_

    def _autocast(self, precision: str):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype or torch.float32, enabled=bool(dtype))

    def _resolve_precision(self) -> str:
        """Measure fp32 against bf16 on a probe batch; bf16 must be at least 5% faster to be chosen."""
        if self.precision_ is not None:
            return self.precision_
        device = self.device.split(":")[0]  # the choice holds for this kind of device only
        name = f"precision-{device}-{self._settings_hash('auto')[:16]}.json"
        record = self.cache_dir / name if self.cache_dir else None
        if record is not None and record.exists():
            self.precision_ = json.loads(record.read_text())["precision"]
            return self.precision_
        if self.device.startswith("cuda"):
            self.precision_ = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            return self.precision_
        _, model = self._load()
        seq = min(128, self.max_length)
        vocab = model.config.vocab_size
        ids = torch.randint(
            max(vocab // 4, 1), max(vocab // 2, 2), (self.batch_size, seq), generator=torch.Generator().manual_seed(0)
        )
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        timings = {}
        with torch.inference_mode():
            for precision in ("fp32", "bf16"):
                with self._autocast(precision):
                    model(**batch)  # warm-up
                    start = time.perf_counter()
                    for _ in range(2):
                        model(**batch)
                    timings[precision] = time.perf_counter() - start
        self.precision_ = "bf16" if timings["bf16"] < 0.95 * timings["fp32"] else "fp32"
        log.info("embedder precision on CPU: %s (probe fp32 %.3fs, bf16 %.3fs)", self.precision_, *timings.values())
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(record, json.dumps({"precision": self.precision_, "timings": timings}))
        return self.precision_

    # --- cache --------------------------------------------------------------------------

    def _settings_hash(self, precision: str, truncation: str = "right") -> str:
        settings = {
            "version": CACHE_VERSION,
            "model": self.fingerprint,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "precision": precision,
            "truncation": truncation,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def _refresh_cache(self) -> None:
        if self.cache_dir is None or not self.cache_dir.exists():
            return
        for shard in sorted(self.cache_dir.glob(f"emb-{self.fingerprint[:12]}-*.npz")):  # this model's only
            if shard.name in self._loaded_shards:
                continue
            with np.load(shard) as data:
                for key, vec in zip(data["keys"], data["vectors"]):
                    self._memory[str(key)] = vec
            self._loaded_shards.add(shard.name)

    def _store(self, keys: list[str], vectors: np.ndarray) -> None:
        for key, vec in zip(keys, vectors):
            self._memory[key] = vec
        if self.cache_dir is None or not keys:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        name = f"emb-{self.fingerprint[:12]}-{time.time_ns()}-{uuid.uuid4().hex}.npz"
        tmp = self.cache_dir / f".tmp-{uuid.uuid4().hex}.npz"
        np.savez(tmp, keys=np.array(keys), vectors=vectors)
        os.replace(tmp, self.cache_dir / name)  # atomic: readers never see a half-written shard
        self._loaded_shards.add(name)

    # --- embedding ----------------------------------------------------------------------

    def embed(self, texts: list[str], truncation: str = "right") -> np.ndarray:
        """One L2-normalised float32 row per text; unique texts not in the cache go through the model."""
        if truncation not in ("left", "right"):
            raise ValueError(f"truncation must be left or right, got {truncation!r}")
        texts = [str(t) for t in texts]
        settings = self._settings_hash(self._resolve_precision(), truncation)
        keys = [hashlib.sha256((settings + "\0" + t).encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        self._refresh_cache()
        missing = {k: t for k, t in zip(keys, texts) if k not in self._memory}
        if missing:
            new_keys = list(missing)
            vectors = self._encode([missing[k] for k in new_keys], truncation)
            self._store(new_keys, vectors)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys]).astype(np.float32, copy=False)

    @property
    def dim(self) -> int:
        if self._memory:
            return len(next(iter(self._memory.values())))
        _, model = self._load()
        return int(model.config.hidden_size)

    def _encode(self, texts: list[str], truncation: str) -> np.ndarray:
        tok, model = self._load()
        precision = self._resolve_precision()
        tok.truncation_side = truncation
        start = time.perf_counter()
        ids = tok(texts, truncation=True, max_length=self.max_length, verbose=False)["input_ids"]
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode(), self._autocast(precision):
            for idx in length_sorted_batches(np.array([len(s) for s in ids]), self.batch_size):
                batch = {k: v.to(self.device) for k, v in pad_batch([ids[i] for i in idx], tok.pad_token_id).items()}
                hidden = model(**batch)[0]
                vec = torch.nn.functional.normalize(pool(hidden, batch["attention_mask"], self.pooling), dim=-1)
                out[idx] = vec.float().cpu().numpy()
                self.n_tokens_ += int(batch["attention_mask"].sum())
        self.n_encoded_ += len(texts)
        self.encode_seconds_ += time.perf_counter() - start
        return out


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    tmp.write_text(text)
    os.replace(tmp, path)


def last_turn(turns: list[str]) -> str:
    """The latest non-empty turn (arena battles are judged on the whole chat, but mostly the end)."""
    for turn in reversed(turns):
        if turn and turn.strip():
            return turn
    return ""


def conversation_text(prompt_turns: list[str], answer_turns: list[str]) -> str:
    """Prompt and answer turns interleaved; embedded with ``truncation="left"`` the latest turns stay."""
    parts = []
    for i in range(max(len(prompt_turns), len(answer_turns))):
        if i < len(prompt_turns):
            parts.append(prompt_turns[i])
        if i < len(answer_turns):
            parts.append(answer_turns[i])
    return "\n\n".join(parts)


def embed_battles(embedder: TextEmbedder, battles: pd.DataFrame, conversation: bool = False) -> pd.DataFrame:
    """The embedding columns :class:`features.embedding_features.EmbeddingPairFeatures` reads.

    ``emb_prompt``, ``emb_a``, ``emb_b``: last turns (head kept); with ``conversation`` also
    ``emb_conv_a``, ``emb_conv_b``: the whole chat for each side, latest tokens kept. Each cell is a
    1-D float32 array; index = ``battles.index``. Join onto the battles before the cross-fit.
    """
    prompts = [last_turn(t) for t in battles["prompt_turns"]]
    answers_a = [last_turn(t) for t in battles["a_turns"]]
    answers_b = [last_turn(t) for t in battles["b_turns"]]
    n = len(battles)
    vectors = embedder.embed(prompts + answers_a + answers_b)  # one call: shared texts embedded once
    out = {"emb_prompt": list(vectors[:n]), "emb_a": list(vectors[n : 2 * n]), "emb_b": list(vectors[2 * n :])}
    if conversation:
        conv_a = [conversation_text(p, a) for p, a in zip(battles["prompt_turns"], battles["a_turns"])]
        conv_b = [conversation_text(p, b) for p, b in zip(battles["prompt_turns"], battles["b_turns"])]
        conv = embedder.embed(conv_a + conv_b, truncation="left")
        out["emb_conv_a"], out["emb_conv_b"] = list(conv[:n]), list(conv[n:])
    return pd.DataFrame(out, index=battles.index)
