"""What a bundle's predictions depend on outside the bundle, recorded at save and checked at load:
the feature code (its version and a fingerprint of its outputs on fixed battles) and each LoRA
encoder's base model (a hash of its ``config.json`` and a fingerprint of its weight files).

Why: a bundle holds boosters fitted on feature columns and adapters fitted on a base model. Code
whose features changed, or a different base of the same shape, loads without complaint and predicts
something else (a base swap moved probabilities by up to 0.043 in a probe). Each check ends in one
line naming what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

# Fixed battles the feature fingerprint is computed on: markdown, code, lists, unicode, several turns,
# an empty answer and identical answers, so that every group has something to measure.
FINGERPRINT_BATTLES = pd.DataFrame(
    {
        "id": ["fp-1", "fp-2", "fp-3", "fp-4"],
        "prompt_turns": [
            ["Explain recursion in Python with an example."],
            ["Translate 'good morning' to French.", "And to German?"],
            ["Write a haiku about the sea."],
            ["What is 2 + 2?"],
        ],
        "a_turns": [
            [
                "## Recursion\n\n- A function calls itself.\n- It needs a base case.\n\n```python\ndef f(n):\n"
                "    return 1 if n < 2 else n * f(n - 1)\n```\n**Summary**: done."
            ],
            ["Bonjour.", "Guten Morgen!"],
            ["Waves fold on the shore; salt wind carries gull voices; the tide keeps its time."],
            ["4"],
        ],
        "b_turns": [
            ["Recursion is when a function calls itself. However, I cannot help with that."],
            ["Bonjour, c'est « bonjour » — ça va ? 😊", ""],
            ["Waves fold on the shore; salt wind carries gull voices; the tide keeps its time."],
            ["The answer is four, because 2 + 2 = 4. Finally, note that arithmetic is simple."],
        ],
    }
)
DECIMALS = 6  # outputs rounded before hashing: the last float bits may differ across machines
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
SAMPLES, SAMPLE_BYTES = 16, 1 << 16  # weight fingerprint: 16 windows of 64 KiB per file, plus its size
VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version")  # where it was mounted, which writer


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# --------------------------------------------------------------------------- feature code


def feature_fingerprint(groups: tuple[str, ...] | list[str]) -> dict:
    """``{"version", "groups", "columns", "outputs_sha256"}`` of the handcrafted features on fixed battles."""
    from features.extractor import FEATURE_VERSION, FeatureExtractor

    X = FeatureExtractor(tuple(groups), n_jobs=1, cache_dir=None, progress=False).transform(FINGERPRINT_BATTLES)
    values = np.round(X.to_numpy(dtype=np.float64), DECIMALS)
    values = np.where(np.isnan(values), -7.0e300, values) + 0.0  # one NaN and one zero pattern
    payload = json.dumps(list(X.columns)).encode() + values.tobytes()
    return {
        "version": str(FEATURE_VERSION),
        "groups": list(groups),
        "columns": len(X.columns),
        "outputs_sha256": _sha(payload),
    }


def feature_difference(saved: dict, groups: tuple[str, ...] | list[str]) -> str | None:
    """Why the feature code running now is not the one the bundle was fitted with, or None."""
    now = feature_fingerprint(groups)
    if saved.get("version") != now["version"]:
        return f"feature version {saved.get('version')!r} in the bundle, {now['version']!r} in this code"
    if saved.get("columns") != now["columns"]:
        return f"{saved.get('columns')} feature columns in the bundle, {now['columns']} from this code"
    if saved.get("outputs_sha256") != now["outputs_sha256"]:
        return "the feature code gives other values on the fixed check battles than when the bundle was saved"
    return None


# --------------------------------------------------------------------------- encoder base models


def config_hash(model_dir: Path) -> str | None:
    """sha256 of the base's ``config.json`` (canonical JSON, without where it was mounted), or None."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    return _sha(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())


def weights_fingerprint(model_dir: Path) -> str | None:
    """A fingerprint of the weight files: each file's name, size and 16 evenly spaced 64 KiB windows.
    Reading gigabytes at every load is not an option; a different base (another fine-tune of the same
    architecture) differs in nearly every window."""
    files = sorted({p for pattern in WEIGHT_FILES for p in Path(model_dir).glob(pattern) if p.is_file()})
    if not files:
        return None
    h = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        h.update(f"{path.name}:{size}|".encode())
        with open(path, "rb") as handle:
            for k in range(SAMPLES):
                handle.seek(max(0, (size - SAMPLE_BYTES) * k // max(SAMPLES - 1, 1)))
                h.update(handle.read(SAMPLE_BYTES))
    return h.hexdigest()


def base_identity(model_dir: str | Path) -> dict:
    return {"config_sha256": config_hash(Path(model_dir)), "weights_fingerprint": weights_fingerprint(Path(model_dir))}


def base_difference(saved: dict, model_dir: str | Path) -> str | None:
    """What differs between the recorded base and the folder at ``model_dir`` (None: the same base)."""
    now = base_identity(model_dir)
    different = [what for what, key in (("config.json", "config_sha256"), ("weights", "weights_fingerprint"))
                 if saved.get(key) != now[key]]  # fmt: skip
    if not different:
        return None
    return " and ".join(different) + " differ from the base it was trained on"
