"""Every tabular input of every command goes through the one hardened reader: a train file with its own
``source`` column, ``--extra-train``, ``--source`` probability files and ``--test-labels``, each written
with a trailing comma on every row, ``;`` or tab separated, UTF-16 or gzip-compressed under a ``.csv``
name, give exactly the inputs of the clean files in ``full_run``, ``tune`` and ``ablation``.

Each command runs in-process up to the point where its inputs are built (folds, features, sources), which
is then captured and the command stopped: seconds per case, and the same reading path as a real run.
``full_run``'s model never sees the test rows, so it runs on until it has scored them (the test file and the
``--source`` test probabilities), and those probabilities are captured too.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS
from pipelines import ablation, full_run, tune
from tests.conftest import make_battles

FAST = ["--num-boost-round", "5", "--early-stopping-rounds", "2", "--num-threads", "1", "--no-progress"]


WRITERS: dict[str, Callable[[pd.DataFrame], bytes]] = {
    "clean": lambda f: f.to_csv(index=False).encode(),
    "trailing comma": lambda f: "".join(x + ",\n" for x in f.to_csv(index=False).splitlines()).encode(),
    "semicolon": lambda f: f.to_csv(index=False, sep=";").encode(),
    "tab": lambda f: f.to_csv(index=False, sep="\t").encode(),
    "UTF-16": lambda f: f.to_csv(index=False).encode("utf-16"),
    "gzip named .csv": lambda f: gzip.compress(f.to_csv(index=False).encode()),
}


def _frames() -> dict[str, pd.DataFrame]:
    primary = make_battles(45, seed=31).assign(source="arena")
    tieless = make_battles(40, seed=32, start_id=4000)
    tieless = tieless[tieless["winner_tie"] == 0].assign(source="hh")
    train = pd.concat([primary, tieless], ignore_index=True)
    train = train[["id", "source", *[c for c in train.columns if c not in ("id", "source")]]]
    extra = make_battles(30, seed=33, start_id=6000)
    test = make_battles(20, seed=34, labelled=False, start_id=9000)
    labels = make_battles(20, seed=34, start_id=9000)[["id", *CLASS_COLUMNS]]
    rng = np.random.default_rng(3)

    def proba(ids: pd.Series) -> pd.DataFrame:
        p = rng.dirichlet(np.ones(3), size=len(ids)).round(6)
        p[:, 2] = 1 - p[:, 0] - p[:, 1]
        return pd.DataFrame({"id": ids.to_numpy(), **{c: p[:, j] for j, c in enumerate(CLASS_COLUMNS)}})

    train_ids = pd.concat([train["id"], "extra:" + extra["id"].astype(str)], ignore_index=True)
    return {
        "train": train,
        "extra": extra,
        "test": test,
        "labels": labels,
        "oof": proba(train_ids),
        "test_proba": proba(test["id"]),
    }


FRAMES = _frames()


def _write(root: Path, style: str) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in FRAMES.items():
        paths[name] = root / f"{name}.csv"
        # the test battles stay clean: they are read by the very loader tests/test_bad_inputs.py covers
        paths[name].write_bytes(WRITERS["clean" if name == "test" else style](frame))
    return paths


class Captured(Exception):
    def __init__(self, inputs, labels=None, test_proba=None):
        self.inputs, self.labels, self.test_proba = inputs, labels, test_proba


def _argv(command: str, paths: dict[str, Path], out: Path) -> list[str]:
    argv = ["--train", str(paths["train"]), "--test", str(paths["test"]), "--out", str(out), "--n-jobs", "1"]
    argv += ["--extra-train", f"extra={paths['extra']}", "--source", f"p={paths['oof']},{paths['test_proba']}"]
    argv += ["--folds", "3", *FAST]
    if command == "full_run":
        argv += ["--test-labels", str(paths["labels"])]
    if command == "tune":
        argv += ["--n-trials", "1"]
    return argv


def _capture(command: str, paths: dict[str, Path], out: Path, monkeypatch) -> Captured:
    import pipelines.model.fitting
    import pipelines.model.run
    import pipelines.stages.stacker_inputs

    real_build = pipelines.stages.stacker_inputs.build_inputs
    real_labels = pipelines.model.run.labels_for
    seen: dict = {}

    def labels_for(*args):
        seen["labels"] = real_labels(*args)
        return seen["labels"]

    def build(*args, **kwargs):
        seen["inputs"] = real_build(*args, **kwargs)
        if command != "full_run":
            raise Captured(seen["inputs"], seen.get("labels"))
        return seen["inputs"]

    real_test_proba = pipelines.model.run.Publisher.test_proba

    def test_proba(self, model):
        raise Captured(seen["inputs"], seen.get("labels"), real_test_proba(self, model)[0])

    monkeypatch.setattr(pipelines.model.run.Publisher, "test_proba", test_proba)
    monkeypatch.setattr(pipelines.stages.stacker_inputs, "build_inputs", build)
    monkeypatch.setattr(pipelines.model.fitting, "build_inputs", build)
    monkeypatch.setattr(pipelines.model.run, "labels_for", labels_for)
    main = {"full_run": full_run.main, "tune": tune.main, "ablation": ablation.main}[command]
    with pytest.raises(Captured) as info:
        main(_argv(command, paths, out))
    return info.value


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    paths = _write(root / "data", "clean")
    out: dict[str, Captured] = {}
    with pytest.MonkeyPatch.context() as mp:
        for command in ("full_run", "tune", "ablation"):
            out[command] = _capture(command, paths, root / command, mp)
    return out


@pytest.mark.parametrize("style", [s for s in WRITERS if s != "clean"])
@pytest.mark.parametrize("command", ["full_run", "tune", "ablation"])
def test_every_input_of_every_command_reads_as_the_clean_file(command, style, clean, tmp_path, monkeypatch):
    got = _capture(command, _write(tmp_path / "data", style), tmp_path / "run", monkeypatch)
    want = clean[command]
    train, expected = got.inputs.train, want.inputs.train
    assert train["source"].value_counts().to_dict() == {
        "arena": 45,
        "hh": int((FRAMES["train"]["source"] == "hh").sum()),
        "extra": 30,
    }
    pd.testing.assert_frame_equal(train.reset_index(drop=True), expected.reset_index(drop=True))
    np.testing.assert_array_equal(got.inputs.is_primary, want.inputs.is_primary)
    pd.testing.assert_frame_equal(got.inputs.X, want.inputs.X)  # features and the --source columns
    assert any(c.startswith("a_enc_p") for c in got.inputs.X.columns)
    if command == "full_run":  # the test file and the --source test probabilities, read when the test is scored
        assert got.test_proba is not None and got.test_proba.shape == (len(FRAMES["test"]), 3)
        np.testing.assert_array_equal(got.test_proba, want.test_proba)
    else:  # tune and ablation evaluate the run's model (pipelines.model.model_inputs), which never sees test rows
        assert not hasattr(got.inputs, "X_test") and len(got.inputs.X) == len(got.inputs.train)
    if command == "full_run":
        np.testing.assert_array_equal(got.labels, want.labels)
        assert got.labels is not None and len(got.labels) == len(FRAMES["test"])


def test_probability_files_are_recognised_by_content_and_errors_name_the_row(tmp_path):
    from pipelines.data.battles import DataError
    from pipelines.data.tables import read_proba_file

    frame = FRAMES["test_proba"]
    frame.to_parquet(tmp_path / "proba.csv")  # parquet under a .csv name
    pd.testing.assert_frame_equal(read_proba_file(tmp_path / "proba.csv"), read_proba_file(_write_one(tmp_path, frame)))
    bad = frame.copy()
    bad.loc[1, "winner_tie"] = 1.5
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad.parquet: row 2, column 'winner_tie': expected a probability"):
        read_proba_file(tmp_path / "bad.parquet")


def _write_one(root: Path, frame: pd.DataFrame) -> Path:
    path = root / "clean_proba.csv"
    path.write_bytes(WRITERS["semicolon"](frame))
    return path
