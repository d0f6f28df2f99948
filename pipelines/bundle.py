"""A model bundle on disk: ``manifest.json`` (format, versions, feature groups, sources, encoders and a
sha256 per file) over the stackers' and encoders' files.

Loading verifies before it reads: every listed file must be there with its hash, no unlisted file may
be, and only then are boosters (header checked first), transformers and fold models opened. Anything
wrong ends in one :class:`BundleError` line naming the file. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from pipelines.errors import UserError
from stacking.model import MODEL_FILE, StackerModel, library_versions

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
KIND = "arena-pref-bundle"


class BundleError(UserError, ValueError):
    """A saved model that is missing, tampered with or made by an incompatible version."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def write_manifest(directory: Path, content: dict) -> Path:
    """``manifest.json`` with ``content`` plus format, versions and the hash of every other file."""
    files = {rel: sha256_file(directory / rel) for rel in _files_under(directory) if rel != MANIFEST}
    manifest = {"kind": KIND, "format_version": BUNDLE_FORMAT, "versions": library_versions(), **content}
    manifest["files"] = files
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_verified(directory: str | Path) -> dict:
    """The manifest, after checking format and every file's hash; BundleError otherwise."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        hint = " (a stacker directory from an older version: retrain)" if (directory / MODEL_FILE).exists() else ""
        raise BundleError(f"{directory}: not a model bundle (no {MANIFEST}){hint}")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BundleError(f"{path}: not an arena-pref model bundle manifest")
    if manifest.get("format_version") != BUNDLE_FORMAT:
        raise BundleError(
            f"{path}: bundle format {manifest.get('format_version')!r}, this version reads {BUNDLE_FORMAT}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path}: no file hashes")
    for rel, digest in files.items():
        target = directory / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise BundleError(f"{path}: file entry {rel!r} points outside the bundle")
        if not target.is_file():
            raise BundleError(f"{target}: listed in {MANIFEST} but missing")
        if sha256_file(target) != digest:
            raise BundleError(f"{target}: sha256 does not match {MANIFEST} (edited, truncated or corrupted)")
    extra = [rel for rel in _files_under(directory) if rel != MANIFEST and rel not in files]
    if extra:
        raise BundleError(f"{directory / extra[0]}: not listed in {MANIFEST} ({len(extra)} unlisted file(s))")
    saved = manifest.get("versions", {}).get("lightgbm")
    if saved and saved != library_versions().get("lightgbm"):
        log.warning("bundle saved with lightgbm %s, running %s", saved, library_versions().get("lightgbm"))
    return manifest


def load_stacker(directory: Path) -> StackerModel:
    """A stacker of a verified bundle; its own checks (booster headers, calibrator) as BundleError."""
    try:
        return StackerModel.load(directory)
    except (ValueError, FileNotFoundError, KeyError, TypeError, ImportError, AttributeError) as exc:
        raise BundleError(
            f"{directory}: {type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
        ) from None


def replace_directory(staged: Path, target: Path) -> Path:
    """Move a fully written bundle into place; only an old bundle (or nothing) may be replaced."""
    if target.exists():
        if not target.is_dir() or not (
            (target / MANIFEST).exists() or (target / MODEL_FILE).exists() or not any(target.iterdir())
        ):
            raise BundleError(f"{target}: exists and is not a model bundle; refusing to overwrite it")
        shutil.rmtree(target)
    staged.rename(target)
    return target
