"""pipelines.ablation: files, variants that agree with the runs they stand for, a self-consistent report,
determinism."""

import json

import numpy as np
import pandas as pd
import pytest

from features.groups import DEFAULT_GROUPS
from pipelines import ablation, full_run
from pipelines.cli import run_config_from_args
from pipelines.experiments import ablation as ablation_engine
from pipelines.model.model_inputs import model_inputs
from tests.conftest import length_proba_file, make_battles

FAST = [
    "--num-boost-round",
    "20",
    "--early-stopping-rounds",
    "5",
    "--num-threads",
    "1",
    "--no-progress",
    "--n-jobs",
    "1",
]


@pytest.fixture
def args(tmp_path):
    train_frame, test_frame = make_battles(100, seed=5), make_battles(20, seed=6, labelled=False, start_id=90000)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train_frame.to_csv(train, index=False)
    test_frame.to_csv(test, index=False)
    oof = length_proba_file(train_frame, tmp_path / "oof.csv")
    test_proba = length_proba_file(test_frame, tmp_path / "t.csv")
    return ["--train", str(train), "--test", str(test), "--source", f"lenprior={oof},{test_proba}", *FAST]


def test_ablation_variants_are_the_runs_they_stand_for_and_deterministic(args, tmp_path):
    out = tmp_path / "run"
    assert ablation.main([*args, "--out", str(out)]) == 0
    folder = out / "ablation"
    for name in (
        "ablation.json",
        "ablation.md",
        "ablation.html",
        "ablation.png",
        "importance_top.png",
        "importance_groups.png",
        "reliability.png",
        "verbosity.png",
        "position.png",
    ):
        assert (folder / name).stat().st_size > 0, name
    report = json.loads((folder / "ablation.json").read_text())
    assert list(report["groups"]) == [*DEFAULT_GROUPS, "source:lenprior"]
    assert set(report["variants"]) == {"full", *(f"{k}:{g}" for g in report["groups"] for k in ("drop", "only"))}
    assert '<img src="ablation.png"' in (folder / "ablation.html").read_text()

    # a variant is the run with those inputs: full, without the source, and with the length group alone agree
    # with full_run's out-of-fold scores (same data, folds and seed), fold by fold
    variants = report["variants"]
    data = [a for a in args if a != "--source" and "lenprior=" not in a]
    for name, run_args in (
        ("full", args),
        ("drop:source:lenprior", data),
        ("only:length", [*data, "--groups", "length"]),
    ):
        run = tmp_path / name.replace(":", "_")
        assert full_run.main([*run_args, "--out", str(run)]) == 0
        oof = json.loads((run / "report.json").read_text())["oof"]
        assert variants[name]["per_fold"] == pytest.approx(
            list(oof["stacker (calibrated)"]["per_fold"].values()), abs=1e-12
        )
        assert variants[name]["log_loss"] == pytest.approx(oof["stacker (calibrated)"]["log_loss"], abs=1e-12)
    assert report["prior"]["log_loss"] == pytest.approx(oof["class prior"]["log_loss"], abs=1e-12)

    # the report agrees with itself: a log loss is its folds' row-weighted mean, drop and only split the
    # columns, a difference is paired fold by fold, and the table shows the JSON's figure
    sizes = pd.read_csv(out / "folds.csv")["fold"].value_counts().sort_index().to_numpy()
    for name, v in variants.items():
        assert v["log_loss"] == pytest.approx(np.dot(v["per_fold"], sizes) / sizes.sum(), abs=1e-12), name
    for group in report["groups"]:
        assert (
            variants[f"drop:{group}"]["n_columns"] + variants[f"only:{group}"]["n_columns"]
            == variants["full"]["n_columns"]
        )
        diff = variants[f"drop:{group}"]["diff_vs_full"]
        paired = np.subtract(variants[f"drop:{group}"]["per_fold"], variants["full"]["per_fold"])
        assert diff["per_fold"] == pytest.approx(paired.tolist(), abs=1e-12)
        assert diff["mean"] == pytest.approx(paired.mean()) and diff["std"] == pytest.approx(paired.std(ddof=1))
    assert f"{variants['full']['log_loss']:.4f}" in (folder / "ablation.md").read_text()

    # verbosity buckets use the length group's logratio_chars; the stacker is exactly swap-symmetric
    config = run_config_from_args(ablation.build_parser().parse_args([*args, "--out", str(out)]))
    inputs = model_inputs(config).inputs
    np.testing.assert_allclose(ablation_engine.length_log_ratio(inputs.train), inputs.X["logratio_chars"], atol=1e-5)
    assert sum(b["n"] for b in report["verbosity"]) == sizes.sum()
    assert report["position"]["max_swap_gap"] < 1e-12

    # a second run (fresh run directory, so folds are remade from the seed) writes the same JSON
    assert ablation.main([*args, "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "ablation" / "ablation.json").read_text() == (folder / "ablation.json").read_text()


def test_feature_groups_keep_pairs_whole_and_sources_apart():
    columns = [
        "a_chars",
        "b_chars",
        "diff_chars",
        "logratio_chars",
        "prompt_chars",
        "a_bold",
        "b_bold",
        "diff_bold",
        "logratio_bold",
        "a_enc_x",
        "b_enc_x",
        "diff_enc_x",
        "pair_enc_x_tie",
    ]
    groups = ablation_engine.feature_groups(columns)
    assert groups == {
        "length": ["a_chars", "b_chars", "diff_chars", "logratio_chars", "prompt_chars"],
        "formatting": ["a_bold", "b_bold", "diff_bold", "logratio_bold"],
        "source:x": ["a_enc_x", "b_enc_x", "diff_enc_x", "pair_enc_x_tie"],
    }
    variants = ablation_engine.variant_columns(columns, groups)
    assert variants["drop:source:x"] == columns[:9] and variants["only:formatting"] == columns[5:9]
