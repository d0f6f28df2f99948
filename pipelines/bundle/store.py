"""A model bundle on disk: ``manifest.json`` (format, versions, feature groups, sources, encoders, the
run's decisions and a sha256 per file) over the stackers' and encoders' files, the manifest itself
covered by a digest.

Loading verifies before it reads: the manifest's digest, then every listed file must be there with its
hash, no unlisted file may be, and only then are boosters (header checked first), transformers and fold
models opened. Anything wrong ends in one :class:`BundleError` line naming the file. Nothing is unpickled.

The digest is a sha256 over the whole manifest (whatever it holds: the signing is generic), so an edit
of the chosen stacker, the class labels or a file hash is refused. With ``ARENA_PREF_BUNDLE_KEY`` set,
it is an HMAC-SHA256 under that key instead: a signature only the key holder can make; a key set at
load refuses an unsigned bundle, and a signed bundle needs the key. A plain sha256 digest only catches
accidents: anyone can edit a file and recompute it, so a loader that must trust the bundle requires a
signature (``read_verified(..., require_signature=True)`` or ``ARENA_PREF_REQUIRE_SIGNATURE=1``). A key
variable set but empty is refused rather than read as "no key" (a secret that failed to expand).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
from pathlib import Path

from pipelines.runtime.errors import UserError
from stacking.model import MODEL_FILE, StackerModel, library_versions

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 3  # 2: digest, decisions, feature and base identities; 3: fingerprint battles of every length
MANIFEST = "manifest.json"
KIND = "arena-pref-bundle"
DIGEST = "digest"
KEY_ENV = "ARENA_PREF_BUNDLE_KEY"
REQUIRE_ENV = "ARENA_PREF_REQUIRE_SIGNATURE"  # 1: every load requires a signed bundle
SIGNED, UNSIGNED = "hmac-sha256", "sha256"


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
    manifest = json.loads(json.dumps(manifest, default=str))  # what a reader will see, digested as such
    manifest[DIGEST] = manifest_digest(manifest)
    path = directory / MANIFEST
    path.write_text(json.dumps(manifest, indent=2))
    return path


# --------------------------------------------------------------------------- the manifest's digest


def bundle_key() -> bytes | None:
    """The signing key, None when unset; set but empty is refused (it would silently mean unsigned)."""
    key = os.environ.get(KEY_ENV)
    if key is None:
        return None
    if not key.strip():
        raise BundleError(f"{KEY_ENV} is set but empty: give the signing key, or unset it for unsigned bundles")
    return key.encode()


def signature_required(require: bool = False) -> bool:
    """``require``, or ``ARENA_PREF_REQUIRE_SIGNATURE`` set to a true value (a value it cannot read is refused)."""
    value = os.environ.get(REQUIRE_ENV, "").strip().lower()
    if value not in ("", "0", "false", "no", "1", "true", "yes"):
        raise BundleError(f"{REQUIRE_ENV}={value!r}: use 1 (require a signed bundle) or 0")
    return require or value in ("1", "true", "yes")


def manifest_digest(manifest: dict) -> dict:
    """``{"kind", "value"}`` over the canonical JSON of every manifest field but the digest itself."""
    payload = json.dumps({k: v for k, v in manifest.items() if k != DIGEST}, sort_keys=True, separators=(",", ":"))
    key = bundle_key()
    if key is None:
        return {"kind": UNSIGNED, "value": hashlib.sha256(payload.encode()).hexdigest()}
    return {"kind": SIGNED, "value": hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()}


def check_digest(path: Path, manifest: dict, require_signature: bool = False) -> None:
    """The manifest is exactly as saved (and, with a key, signed with it); BundleError naming why not.
    ``require_signature``: an unsigned manifest, or no key to check a signature with, is refused too."""
    saved = manifest.get(DIGEST)
    if not isinstance(saved, dict) or saved.get("kind") not in (UNSIGNED, SIGNED):
        raise BundleError(f"{path}: no manifest digest")
    key = bundle_key()
    if signature_required(require_signature):
        if saved["kind"] != SIGNED:
            raise BundleError(f"{path}: not signed, and a signed bundle is required (save it with {KEY_ENV} set)")
        if key is None:
            raise BundleError(f"{path}: a signed bundle is required, but {KEY_ENV} is not set to check it with")
    if saved["kind"] == SIGNED and key is None:
        raise BundleError(f"{path}: signed with a key: set {KEY_ENV} to the key it was saved with")
    if saved["kind"] == UNSIGNED and key is not None:
        raise BundleError(f"{path}: not signed, but {KEY_ENV} is set: refusing an unsigned bundle")
    if not hmac.compare_digest(str(saved.get("value")), manifest_digest(manifest)["value"]):
        what = "edited or corrupted" if key is None else "edited, corrupted or signed with another key"
        raise BundleError(f"{path}: the manifest does not match its digest ({what})")


def read_verified(directory: str | Path, *, require_signature: bool = False) -> dict:
    """The manifest, after checking format, digest (signed, with ``require_signature``) and every file's
    hash; BundleError otherwise."""
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
            f"{path}: bundle format {manifest.get('format_version')!r}, this version reads {BUNDLE_FORMAT}:"
            " train again (python -m pipelines.full_run) to make a bundle this version can check"
        )
    check_digest(path, manifest, require_signature)
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
