"""Build the Kaggle dataset that lets ``kaggle_notebook.py`` run with the internet off (``pipelines.export_kaggle``).

The folder gets the project as a wheel, wheels of the packages Kaggle's image lacks, NLTK's cmudict corpus,
``dataset-metadata.json``, a README and, with a trained bundle, ``model/`` plus the record of the base weights a
LoRA encoder needs (``pipelines.bundle.base_weights``). The command's docstring says how to upload it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.bundle.base_weights import BASES_FILE, base_record, bundle_encoders
from pipelines.bundle.store import KIND as BUNDLE_KIND
from pipelines.bundle.store import MANIFEST as BUNDLE_MANIFEST_NAME
from pipelines.bundle.store import read_verified
from pipelines.runtime.errors import UsageError

log = logging.getLogger("arena_pref.export_kaggle")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PACKAGES = ("textstat", "pyphen", "cmudict", "gguf")  # what Kaggle's image lacks (gguf: .gguf model inputs)
DATASET_SLUG = "arena-pref-offline"
DATASET_TITLE = "arena-pref offline"
BUNDLE_DIR = "model"
BUNDLE_MANIFEST = BUNDLE_MANIFEST_NAME  # what marks a trained bundle (ArenaPreferenceModel.save)


def _project_sources(root: Path) -> list[str]:
    """The top-level packages and modules pyproject.toml ships (``tool.setuptools``), as paths under ``root``
    (a sub-package such as ``pipelines.formats`` travels inside its parent's folder)."""
    text = (root / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the two lists we need
        import re

        def listed(key: str) -> list[str]:
            found = re.search(rf"^{key}\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
            return re.findall(r'"([^"]+)"', found.group(1)) if found else []

        packages, modules = listed("packages"), listed("py-modules")
    else:
        setup = tomllib.loads(text)["tool"]["setuptools"]
        packages, modules = list(setup["packages"]), list(setup.get("py-modules", []))
    return [p for p in packages if "." not in p] + [f"{m}.py" for m in modules]


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


def build_project_wheel(wheels: Path, root: Path = PROJECT_ROOT) -> Path:
    """``pip wheel . --no-deps`` from a clean copy of the sources (no stale build/ or egg-info in the repo)."""
    if not (root / "pyproject.toml").exists():
        raise UsageError(f"{root}: no pyproject.toml; run the export from a source checkout")
    for old in wheels.glob("arena_pref-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="arena_pref_wheel_") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            if (root / name).exists():
                shutil.copy2(root / name, src / name)
        for name in _project_sources(root):
            if (root / name).is_dir():
                shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(root / name, src / name)
        # with the build backend already here, no isolated build environment needs downloading
        isolation = ["--no-build-isolation"] if _setuptools_ok() else []
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            *isolation,
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(wheels),
        ]
        log.info("building the project wheel: %s", " ".join(cmd))
        subprocess.run(cmd, check=True, cwd=tmp)
    built = sorted(wheels.glob("arena_pref-*.whl"))
    if not built:
        raise RuntimeError("pip wheel produced no arena_pref wheel")
    log.info("project wheel: %s", built[-1].name)
    return built[-1]


def download_wheels(wheels: Path, packages: list[str]) -> list[Path]:
    """``pip download`` the packages Kaggle lacks (binary wheels only, no dependencies: Kaggle has them)."""
    before = set(wheels.glob("*.whl"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(wheels),
        *packages,
    ]
    log.info("downloading wheels: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
    new = sorted(set(wheels.glob("*.whl")) - before)
    for path in new:
        log.info("  %s", path.name)
    return new


def write_nltk_data(target: Path) -> Path:
    from features.readability import write_nltk_cmudict

    write_nltk_cmudict(target)
    corpus = target / "corpora" / "cmudict" / "cmudict"
    log.info("NLTK cmudict corpus: %s (%.1f MB)", corpus, corpus.stat().st_size / 1e6)
    return target


def is_bundle(directory: Path) -> bool:
    """A folder holding a trained bundle's manifest (not some other ``manifest.json``)."""
    try:
        manifest = json.loads((directory / BUNDLE_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == BUNDLE_KIND


def export_bundle(out: Path, model_dir: Path, copy_base: bool = False) -> dict:
    """Copy a trained bundle to ``out/model``; record (or, with ``copy_base``, copy) the base weights
    its LoRA encoders need. Full fine-tunes carry their own weights and need no base."""
    if not is_bundle(model_dir):
        raise UsageError(f"--model {model_dir}: no {BUNDLE_MANIFEST}; pass the bundle a run wrote (RUN/model)")
    read_verified(model_dir)  # a damaged bundle fails here, not on Kaggle
    target = out / BUNDLE_DIR
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)  # exactly: loading rejects missing, changed or unlisted files
    records = [base_record(d) for d in bundle_encoders(target).values()]
    for record in records:
        base = Path(record["base_model"])
        if not record["needs_base"]:
            log.info("encoder %s: full fine-tune, its folds carry all weights (no base needed)", record["encoder"])
        elif copy_base:
            if not base.exists():
                raise UsageError(f"--copy-base: base model of {record['encoder']} not found at {base}")
            dest = out / "bases" / base.name
            if dest.is_dir():
                shutil.rmtree(dest)
            if base.is_file():  # a .gguf base: the file itself (converted on Kaggle at first load)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(base, dest)
            else:
                shutil.copytree(base, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            record["copied_to"] = dest.relative_to(out).as_posix()
            log.info("encoder %s: base copied to %s", record["encoder"], record["copied_to"])
        else:
            if not base.exists():
                log.warning(
                    "encoder %s: base %s is not on this machine; only its folder name identifies it",
                    record["encoder"],
                    base,
                )
            log.info("encoder %s: base referenced, attach it on Kaggle: %s", record["encoder"], record["identity"])
    (out / BASES_FILE).write_text(json.dumps(records, indent=2) + "\n")
    return {"bundle": str(target), "encoders": [r["encoder"] for r in records], "bases": records}


def write_metadata(out: Path, user: str, title: str = DATASET_TITLE) -> Path:
    path = out / "dataset-metadata.json"
    path.write_text(
        json.dumps({"title": title, "id": f"{user}/{DATASET_SLUG}", "licenses": [{"name": "MIT"}]}, indent=2) + "\n"
    )
    log.info("wrote %s (id %s/%s)", path, user, DATASET_SLUG)
    return path


def write_readme(out: Path, packages: list[str], downloaded: bool) -> Path:
    files = sorted(
        p for p in out.rglob("*") if p.is_file() and p.name != "README.txt" and p.relative_to(out).parts[0] != "bases"
    )
    lines = [
        "arena-pref offline dataset: attach it to kaggle_notebook.ipynb (internet off).",
        "",
        "The notebook installs with:",
        "  pip install --no-index --find-links <this dataset>/wheels arena-pref " + " ".join(packages),
        "and points NLTK_DATA at <this dataset>/nltk_data (textstat's cmudict, no download).",
        "",
    ]
    if (out / BUNDLE_DIR / BUNDLE_MANIFEST).exists():
        lines += [
            f"{BUNDLE_DIR}/ is a trained bundle: the notebook scores the test with it (no training).",
            f"{BASES_FILE} names the base weights its LoRA encoders need (attach them, or bases/ holds copies).",
            "",
        ]
    if not downloaded:
        lines += [f"Built with --no-download: wheels of {', '.join(packages)} are NOT included.", ""]
    lines += ["Contents:"]
    for path in files:
        rel = path.relative_to(out)
        if rel.parts[0] == "nltk_data" and path.name != "cmudict":
            continue
        lines.append(f"  {rel}  ({path.stat().st_size / 1e3:.0f} kB)")
    readme = out / "README.txt"
    readme.write_text("\n".join(lines) + "\n")
    return readme


def export(
    out: Path,
    packages: list[str] | None = None,
    download: bool = True,
    kaggle_user: str | None = None,
    title: str = DATASET_TITLE,
    model: Path | None = None,
    copy_base: bool = False,
) -> dict:
    packages = list(DEFAULT_PACKAGES if packages is None else packages)
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / "wheels"
    wheels.mkdir(exist_ok=True)
    project_wheel = build_project_wheel(wheels)
    if download and packages:
        download_wheels(wheels, packages)
    else:
        log.info(
            "skipping pip download of %s (--no-download): the notebook installs what wheels/ holds",
            ", ".join(packages) or "nothing",
        )
    write_nltk_data(out / "nltk_data")
    bundle = export_bundle(out, model, copy_base) if model is not None else None
    user = kaggle_user or os.environ.get("KAGGLE_USERNAME")
    if not user:
        user = "YOUR-KAGGLE-USERNAME"
        log.warning("no --kaggle-user (or KAGGLE_USERNAME): edit the id in dataset-metadata.json before uploading")
    write_metadata(out, user, title)
    readme = write_readme(out, packages, download)
    summary: dict = {
        "out": str(out),
        "project_wheel": project_wheel.name,
        "wheels": sorted(p.name for p in wheels.glob("*.whl")),
        "nltk_data": str(out / "nltk_data"),
        "metadata": str(out / "dataset-metadata.json"),
        "readme": str(readme),
        "bundle": bundle,
    }
    log.info(
        "dataset folder ready: %s (%d wheels). Upload: kaggle datasets create -p %s",
        out,
        len(list(wheels.glob("*.whl"))),
        out,
    )
    return summary
