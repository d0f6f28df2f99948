"""One encoder's fold models, kept after cross-fit so new battles can be scored later.

Cross-fit writes, under ``encoder_<name>/``: ``fold_<k>/`` (safetensors; for LoRA only the adapter and
the saved head, never the base weights), one ``tokenizer/`` for all folds, and ``encoder.json`` with
what prediction must repeat exactly: the ``max_length`` actually used (after time-budget planning),
the prompt / A / B budget shares and whether predictions are swap-averaged. The base model's path
is recorded but can be overridden at load time (on Kaggle the base weights live elsewhere).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from arena_schema import N_CLASSES
from encoders.classifier import TransformerClassifier
from encoders.model import ADAPTER_MARK, load_tokenizer
from encoders.settings import EncoderConfig

MANIFEST = "encoder.json"
TOKENIZER_DIR = "tokenizer"
FORMAT = 1


def fold_dir(directory: str | Path, k: int) -> Path:
    return Path(directory) / f"fold_{k}"


def saved_folds(directory: str | Path) -> list[int]:
    """Folds whose model was saved completely (the adapter mark is written last)."""
    found = [p for p in Path(directory).glob("fold_*") if p.is_dir() and (p / ADAPTER_MARK).exists()]
    return sorted(int(p.name.split("_")[1]) for p in found)


def fold_is_lora(directory: str | Path) -> bool:
    return bool(json.loads((Path(directory) / ADAPTER_MARK).read_text())["lora"])


def write_manifest(directory: str | Path, config: EncoderConfig, configured_max_length: int) -> Path:
    """``encoder.json`` for the folds saved so far; ``config`` holds the inputs the folds were trained on."""
    directory = Path(directory)
    folds = saved_folds(directory)
    share = config.prompt_share
    manifest = {
        "format": FORMAT,
        "name": config.resolved_name,
        "base_model": str(Path(config.require_model_path()).resolve()),
        "lora": bool(folds) and fold_is_lora(fold_dir(directory, folds[0])),
        "folds": folds,
        "inputs": {
            "max_length": config.max_length,
            "configured_max_length": configured_max_length,
            "prompt_share": share,
            "budget_shares": [share, (1 - share) / 2, (1 - share) / 2],
            "swap_average": config.swap_augment,
        },
        "precision": config.precision,
        "eval_batch_size": config.eval_batch_size,
        "load_in_bits": config.load_in_bits,
        "tokenizer": TOKENIZER_DIR,
        "config": asdict(config),
    }
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def _config_from(stored: dict) -> EncoderConfig:
    """An EncoderConfig from a stored one; fields this version does not know are left out."""
    known = {f.name for f in fields(EncoderConfig)}
    return EncoderConfig(**{k: v for k, v in stored.items() if k in known})


@dataclass
class EncoderFoldModels:
    """All saved fold models of one encoder: ``predict_proba`` is the mean over folds, each swap-averaged."""

    directory: Path
    config: EncoderConfig  # model_path is the base model (LoRA); inputs as the folds were trained
    folds: list[int]
    manifest: dict

    @classmethod
    def load(cls, directory: str | Path, base_path: str | Path | None = None) -> EncoderFoldModels:
        directory = Path(directory)
        manifest = json.loads((directory / MANIFEST).read_text())
        if not manifest["folds"]:
            raise FileNotFoundError(f"{directory}: no fold models were saved (save_models 'none' or 'lora'?)")
        inputs = manifest["inputs"]
        config = replace(
            _config_from(manifest["config"]),
            model_path=str(base_path or manifest["base_model"]),
            max_length=int(inputs["max_length"]),
            prompt_share=float(inputs["prompt_share"]),
            swap_augment=bool(inputs["swap_average"]),
        )
        return cls(directory, config, list(manifest["folds"]), manifest)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    def predict_proba(
        self,
        battles: pd.DataFrame,
        *,
        batch_size: int | None = None,
        precision: str | None = None,
        load_in_bits: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """(n, 3) probabilities; the inputs are encoded once and scored by each fold model in turn."""
        config = replace(
            self.config,
            eval_batch_size=batch_size or self.config.eval_batch_size,
            precision=precision or self.config.precision,
            load_in_bits=load_in_bits if load_in_bits is not None else self.config.load_in_bits,
        )
        tokenizer = load_tokenizer(self.directory / TOKENIZER_DIR)
        total = np.zeros((len(battles), N_CLASSES), dtype=np.float64)
        encoded = None
        for k in self.folds:
            clf = TransformerClassifier.from_saved(fold_dir(self.directory, k), config, tokenizer, progress=progress)
            encoded = encoded or clf.encode_for_prediction(battles)
            total += clf.predict_proba(battles, encoded)
            clf.release()
        return total / len(self.folds)

    def files(self) -> list[Path]:
        """Every file prediction needs, relative to ``directory`` (for a bundle manifest)."""
        roots = [self.directory / TOKENIZER_DIR, *(fold_dir(self.directory, k) for k in self.folds)]
        found = [p for root in roots for p in sorted(root.rglob("*")) if p.is_file()]
        return [Path(MANIFEST), *(p.relative_to(self.directory) for p in found)]

    def copy_to(self, directory: str | Path) -> EncoderFoldModels:
        """Copy the needed files (not the OOF checkpoints) into ``directory``; the copy, loaded."""
        directory = Path(directory)
        for rel in self.files():
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.directory / rel, directory / rel)
        return EncoderFoldModels.load(directory, base_path=self.config.model_path)
