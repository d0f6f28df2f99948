"""A bundle's base model weights: recorded when it is exported, found again under /kaggle/input.

Fold models of a full fine-tune carry all their weights; a LoRA encoder's folds carry only the adapter
and head, so prediction needs the base model too. Kaggle already hosts the common bases (Gemma,
Llama, DeBERTa, ...) as models or datasets, so the export *references* them instead of copying
gigabytes: it records each base's identity (folder name, ``config.json`` ``_name_or_path``,
``model_type``), and at load the notebook matches that identity against the model folders attached.
"""

from __future__ import annotations

import json
from pathlib import Path

from encoders.fold_models import MANIFEST as ENCODER_MANIFEST
from encoders.gguf import gguf_identity, is_gguf
from pipelines.bundle.store import MANIFEST as BUNDLE_MANIFEST
from pipelines.runtime.paths import find_model_inputs

BASES_FILE = "base_models.json"


def bundle_encoders(bundle: str | Path) -> dict[str, Path]:
    """{encoder name: its fold-model folder} as the bundle's ``manifest.json`` lists them
    (``encoders``: {name: {"directory": "encoders/<name>", ...}}, see ``ArenaPreferenceModel.save``)."""
    bundle = Path(bundle)
    manifest = json.loads((bundle / BUNDLE_MANIFEST).read_text())
    found = {}
    for name, info in (manifest.get("encoders") or {}).items():
        folder = bundle / info["directory"]
        if not (folder / ENCODER_MANIFEST).is_file():
            raise FileNotFoundError(f"{folder}: encoder {name!r} listed in {BUNDLE_MANIFEST} has no {ENCODER_MANIFEST}")
        found[name] = folder
    return found


def model_identity(model_dir: str | Path) -> dict:
    """What identifies a Hugging Face model folder (or a ``.gguf`` file) wherever it is mounted."""
    model_dir = Path(model_dir)
    if is_gguf(model_dir) and model_dir.is_file():
        return gguf_identity(model_dir)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    return {
        "folder": model_dir.name,
        "name_or_path": config.get("_name_or_path") or "",
        "model_type": config.get("model_type") or "",
    }


def base_record(encoder_dir: str | Path) -> dict:
    """One encoder's base: whether prediction needs it (LoRA only), where it was, what identifies it."""
    manifest = json.loads((Path(encoder_dir) / ENCODER_MANIFEST).read_text())
    base = Path(manifest["base_model"])
    unknown = {"folder": base.name, "name_or_path": "", "model_type": ""}
    return {
        "encoder": manifest["name"],
        "needs_base": bool(manifest.get("lora")),
        "base_model": str(base),
        "identity": model_identity(base) if base.is_dir() or (is_gguf(base) and base.is_file()) else unknown,
        "copied_to": None,
    }


def _same_name(a: str, b: str) -> bool:
    norm = [x.strip("/").lower() for x in (a, b)]
    return bool(norm[0]) and (norm[0] == norm[1] or norm[0].rsplit("/", 1)[-1] == norm[1].rsplit("/", 1)[-1])


def match_base(identity: dict, candidates: list[Path]) -> Path | None:
    """The attached folder that is this base: same ``_name_or_path``, else the same folder name
    (``_name_or_path`` may be a local path, so its last part counts too); ``model_type`` must agree."""
    scored = []
    for path in candidates:
        other = model_identity(path)
        if identity.get("sha256") or other.get("sha256"):  # a GGUF base is matched by its content only
            if identity.get("sha256") == other.get("sha256"):
                scored.append((3, -len(path.parts), str(path), path))
            continue
        if identity.get("model_type") and other["model_type"] and identity["model_type"] != other["model_type"]:
            continue
        wanted = [identity.get("name_or_path", ""), identity.get("folder", "")]
        names = [other["name_or_path"], other["folder"]]
        score = max((2 - i for i, w in enumerate(wanted) for n in names if _same_name(w, n)), default=0)
        if score:
            scored.append((score, -len(path.parts), str(path), path))
    return max(scored)[3] if scored else None


def resolve_bases(bundle: str | Path, input_dir: str | Path, records: list[dict] | None = None) -> dict[str, Path]:
    """{encoder name: base folder} for the encoders that need a base: a copy shipped beside the bundle
    (``--copy-base``) wins, else the attached model folder that matches (folders inside the bundle are not candidates).
    Raises FileNotFoundError naming what to attach when a needed base is missing."""
    bundle = Path(bundle).resolve()
    if records is None:
        records = [base_record(d) for d in bundle_encoders(bundle).values()]
    candidates = [p for p in find_model_inputs(Path(input_dir)) if bundle not in p.resolve().parents]
    found, missing = {}, []
    for record in records:
        if not record["needs_base"]:
            continue
        copied = record.get("copied_to")  # relative to the dataset folder that holds the bundle
        if copied and (bundle.parent / copied).exists():  # a folder, or a .gguf file
            found[record["encoder"]] = bundle.parent / copied
            continue
        match = match_base(record["identity"], candidates)
        if match is None:
            missing.append(f"{record['encoder']}: {record['identity']}")
        else:
            found[record["encoder"]] = match
    if missing:
        raise FileNotFoundError(
            "base weights not attached for " + "; ".join(missing) + ": attach the Kaggle model/dataset with that "
            "folder or config.json _name_or_path, or export with --copy-base"
        )
    return found
