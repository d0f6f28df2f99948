"""The commands' checks: what a run needs, checked before it spends minutes on features (a mistake found at the
end of an hour-long run costs the hour).

Each failure is a :class:`PreflightError` (a ``UserError``): one line naming the flag and what is wrong, exit
code 2. The flags are the commands' words, so these checks sit beside the commands, not in the library: the
library raises ``ValueError``-family errors in its own terms, and a check here puts the flag before them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from encoders.gguf import GGUFError, gguf_architecture, is_gguf, supported_architectures
from pipelines.config.run_config import RunConfig, SourceFiles
from pipelines.model.prediction import PredictConfig
from pipelines.runtime.errors import PreflightError, UsageError, one_line

DRIVER_HINTS = {"postgresql": "psycopg2-binary or psycopg[binary]", "mysql": "PyMySQL or mysqlclient"}


def check_readable_file(path: str | Path, what: str) -> None:
    path = Path(path)
    if not path.exists():
        raise PreflightError(f"{what} {path}: no such file")
    if not path.is_file():
        raise PreflightError(f"{what} {path}: not a file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise PreflightError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from exc


def check_writable_dir(path: str | Path, what: str) -> None:
    """Create ``path`` if needed and write (then remove) a probe file there: ``os.access`` says yes
    to root on a read-only mount and says nothing about a full disk."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PreflightError(f"{what} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".preflight.", suffix=".tmp") as probe:
            probe.write(b"x")
            probe.flush()
    except OSError as exc:
        raise PreflightError(f"{what} {path}: not writable ({exc.strerror or exc})") from exc


def check_storage_url(url: str) -> None:
    """An Optuna RDB URL that SQLAlchemy parses, whose driver is installed, and (sqlite) whose
    folder exists: otherwise the study would fail after the features are computed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from pipelines.runtime.storage import normalise_url

    shown = url.split("@")[-1]
    url = normalise_url(url)  # the README's postgresql://... gets the driver that is installed
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise PreflightError(
            f"--storage {shown!r}: not a database URL (e.g. sqlite:///DIR/optuna.db, postgresql://...)"
        ) from exc
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError as exc:
        raise PreflightError(f"--storage {shown!r}: unknown database kind {parsed.drivername!r}") from exc
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        hint = DRIVER_HINTS.get(parsed.get_backend_name(), "its driver")
        raise PreflightError(
            f"--storage {shown!r}: the {parsed.drivername} driver is not installed (pip install {hint}): {exc}"
        ) from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = Path(parsed.database).expanduser()
        parent = database.parent
        if not parent.is_dir():
            raise PreflightError(f"--storage {url!r}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise PreflightError(f"--storage {url!r}: folder {parent} is not writable")
        _check_sqlite_file(url, database)


SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite_file(url: str, database: Path) -> None:
    """An existing file the URL names must be an SQLite database: Optuna would otherwise fail deep in
    SQLAlchemy (``file is not a database``), or, worse, a typo could point it at the train CSV."""
    if database.is_dir():
        raise PreflightError(f"--storage {url!r}: {database} is a folder, not an SQLite database file")
    if not database.exists() or database.stat().st_size == 0:
        return
    with open(database, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise PreflightError(f"--storage {url!r}: {database} exists and is not an SQLite database (a CSV file?)")


def check_sources(sources: dict[str, SourceFiles]) -> None:
    """Each ``--source`` names two files that read as id + 3 probabilities (the whole file is checked:
    it is small next to the features, and a bad row found after them costs the run)."""
    from pipelines.data.tables import read_proba_file

    for name, files in sources.items():
        for file, side in zip((files.oof, files.test), ("OOF", "TEST")):
            check_readable_file(file, f"--source {name} {side} file")
            read_proba_file(file)


def check_seed(seed: int, flag: str = "--seed") -> None:
    if not 0 <= seed < 2**32:
        raise PreflightError(f"{flag} {seed}: must be between 0 and 2**32 - 1 (numpy and LightGBM seeds)")


def check_groups(groups: tuple[str, ...] | list[str]) -> None:
    from features.groups import GROUPS

    unknown = [g for g in groups if g not in GROUPS]
    if unknown or not groups:
        raise PreflightError(f"--groups: unknown feature group(s) {unknown}; choose from {sorted(GROUPS)}")


def check_params(params: dict) -> None:
    """Try the stacker's LightGBM parameters (``--params``) on a tiny fit: a wrong name, type or value
    stops the run now, not after the features (LightGBM checks them only when it trains)."""
    import lightgbm as lgb

    from stacking.lgbm import DEFAULT_PARAMS

    rng = np.random.default_rng(0)
    data = lgb.Dataset(rng.normal(size=(30, 2)), label=np.arange(30) % 3, params={"verbose": -1})
    try:
        lgb.train({**DEFAULT_PARAMS, "num_threads": 1, **params}, data, num_boost_round=1)
    except (lgb.basic.LightGBMError, ValueError, TypeError) as exc:
        raise PreflightError(f"--params: LightGBM refuses {params}: {one_line(exc)}") from None


def check_training_files(train_path: str | Path, extras: list) -> None:
    """Every ``--extra-train`` readable, and no file given twice (its rows would count twice)."""
    seen = {Path(train_path).resolve(): "--train"}
    for source in extras:
        check_readable_file(source.path, "--extra-train")
        key = Path(source.path).resolve()
        if key in seen:
            raise PreflightError(f"--extra-train {source.path}: the same file as {seen[key]}; give each file once")
        seen[key] = f"--extra-train {source.path}"


def check_submission_path(path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise PreflightError(f"--submission {path}: is a folder; give a file name (e.g. {path / 'submission.csv'})")
    check_writable_dir(path.parent, "--submission folder")


def check_test_labels(path: str | Path) -> None:
    """The labels file read in full now (its ids are matched to the test ids when the test is loaded)."""
    from pipelines.data.tables import read_labels

    check_readable_file(path, "--test-labels")
    read_labels(path)


def check_gguf(path: Path, what: str) -> None:
    """A .gguf model input: readable, the ``gguf`` package installed, an architecture transformers loads
    (the conversion itself waits for the first load)."""
    check_readable_file(path, what)
    try:
        arch = gguf_architecture(path)
    except GGUFError as exc:
        raise PreflightError(f"{what} {exc}") from None
    if arch not in supported_architectures():
        raise PreflightError(f"{what} {path}: GGUF architecture {arch!r} is not one transformers can load")


def check_encoders(config: RunConfig) -> None:
    """Each encoder's model, and a worker count this machine can run (more workers than GPUs cannot)."""
    from pipelines.stages.encoder_stage import worker_count

    for encoder in config.encoders:
        if not encoder.model_path:
            continue
        try:
            worker_count(encoder)
        except ValueError as exc:
            raise PreflightError(f"--encoder-workers: {exc}") from None
        model = Path(encoder.model_path)
        if is_gguf(model):
            check_gguf(model, "--encoder")
            continue
        if not (model / "config.json").is_file():
            raise PreflightError(f"--encoder {model}: not a Hugging Face model folder (no config.json)")


def check_savable(tie_handling: str) -> None:
    """A run that saves its model (full_run, the estimator) cannot use a tie handling that no saved
    model reproduces: say so now, not after the training."""
    from stacking.model import check_savable_tie_handling

    try:
        check_savable_tie_handling(tie_handling)
    except ValueError as exc:
        raise PreflightError(f"--tie-handling: {exc}") from None


def check_run(
    config: RunConfig,
    storage: str | None = None,
    *,
    submission: str | Path | None = None,
    test_labels: str | Path | None = None,
) -> None:
    """Everything that can be checked before the data is loaded: each argument, files read in full
    where they are small (labels, probability sources), the stacker's parameters tried on a tiny fit."""
    if config.n_folds < 2:
        raise PreflightError(f"--folds {config.n_folds}: need at least 2 folds for out-of-fold predictions")
    check_seed(config.seed)
    check_groups(config.features.groups)
    if config.features.n_jobs is not None and config.features.n_jobs < 1:
        raise PreflightError(f"--n-jobs {config.features.n_jobs}: must be at least 1")
    if config.time_budget_hours is not None and not config.time_budget_hours >= 0:
        raise PreflightError(f"--time-budget-hours {config.time_budget_hours}: must be 0 (no encoder) or more")
    check_readable_file(config.train_path, "--train")
    check_readable_file(config.test_path, "--test")
    check_writable_dir(config.out, "--out")
    for path in (config.submission_path, submission):
        if path:
            check_submission_path(path)
    check_sources(config.extra_sources)
    check_training_files(config.train_path, config.sources.sources)
    check_encoders(config)
    check_params(config.stacker.params)
    if test_labels is not None:
        check_test_labels(test_labels)
    if is_gguf(config.features.embedder):
        check_gguf(Path(str(config.features.embedder)), "--embedder")
    if storage is not None:
        check_storage_url(storage)


def check_predict_inputs(config: PredictConfig) -> None:
    """``predict``: every path checked before the bundle and the test are read (one line each, a ``UsageError``)."""
    from pipelines.data.tables import read_proba_file

    if not Path(config.model).is_dir():
        raise UsageError(f"--model {config.model}: no such folder (the <run>/model bundle full_run writes)")
    check_readable_file(config.test, "--test")
    check_writable_dir(Path(config.out).parent, "--out folder")
    check_submission_path(config.out)
    for name, path in config.sources.items():
        check_readable_file(path, f"--source {name}")
        read_proba_file(path)
    for name, path in config.encoder_base_paths.items():
        if not (Path(path) / "config.json").is_file():
            raise UsageError(f"--encoder-base {name}={path}: not a Hugging Face model folder (no config.json)")


def check_predict_bundle(config: PredictConfig) -> None:
    """``predict``: what the bundle's manifest says it cannot do, refused before the test's features: a
    ``--source`` the model was not trained with, ``--test-calibration new-source`` without a new-source
    calibrator (one tie-bearing training source). The load verifies the bundle itself."""
    from pipelines.bundle.store import MANIFEST

    try:
        manifest = json.loads((Path(config.model) / MANIFEST).read_text())
        trained_with = [str(s) for s in manifest.get("sources", [])]
        calibration = (manifest.get("fit_report") or {}).get("calibration") or {}
        fits = calibration.get("new_source") if config.test_calibration == "new-source" else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # not a readable bundle: its load says why
    unknown = sorted(set(config.sources) - set(trained_with))
    if unknown:
        raise UsageError(
            f"--source {unknown[0]}: the model was trained without that source (its sources: {sorted(trained_with)})"
        )
    entries = [f for f in fits.values() if isinstance(f, dict)] if isinstance(fits, dict) else []
    if entries and not any(f.get("fitted") for f in entries):
        raise UsageError(
            f"--test-calibration new-source: the model {config.model} has no new-source calibrator"
            f" ({entries[0].get('why', 'none was fitted')}); use auto or in-source"
        )
