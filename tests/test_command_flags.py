"""Every feature flag means the same in every command: it reaches the fitted stacker, or the command refuses it.

One case per (command, flag). A spy on the one cross-fit (``stacking.cross_fit.cross_fit``, what full_run, tune
and ablation fit through) or on the LOSO study's stacker records what each fit was given and what came out;
each case asserts the spy saw at least one fit, then what the flag asks for: the feature groups, the TF-IDF or
embedding columns (fitted in each training fold), the extra training rows and their weights, the tie handling,
a probability source's columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features.embedding_features import EmbeddingPairFeatures
from features.extractor import group_columns
from features.text_vectors import TfidfDiffTransformer
from pipelines import ablation, full_run, loso, tune
from pipelines.experiments import loso_study
from pipelines.runtime.errors import run_command
from stacking import cross_fit as cross_fit_module
from stacking.tie_handling import TieAwareStacker
from tests.conftest import length_proba_file, make_battles

FAST = ["--num-boost-round", "15", "--early-stopping-rounds", "4", "--num-threads", "1", "--no-progress"]
COMMANDS = ("full_run", "tune", "ablation", "loso")
FLAGS = ("--groups", "--tfidf", "--embedder", "--extra-train", "--tie-handling", "--source", "--encoder")
# flags a command's question cannot use: refused with exit 2, never ignored (LOSO's rows are its sources, its
# tie handlings are --options, it stacks no probability files and fine-tunes no encoder)
REFUSED = {
    ("tune", "--encoder"),
    ("ablation", "--encoder"),
    ("loso", "--extra-train"),
    ("loso", "--tie-handling"),
    ("loso", "--source"),
    ("loso", "--encoder"),
}
SLOW = {("full_run", "--encoder"), ("ablation", "--embedder"), ("ablation", "--tfidf")}


@pytest.fixture
def files(tmp_path):
    train, test = make_battles(90, seed=21), make_battles(20, seed=22, labelled=False, start_id=90000)
    extra = make_battles(60, seed=23, start_id=50000)
    extra["prompt"] = extra["prompt"].str.replace("Question", "Extra question")  # its own prompts
    parts = []
    for k, name in enumerate(("alpha", "beta", "gamma")):  # LOSO's combined file: three sources
        part = make_battles(70, seed=30 + k, start_id=k * 1000)
        part["prompt"] = part["prompt"].str.replace("Question", f"{name} question")
        part["id"] = [f"{name}:{i}" for i in part["id"]]
        part["source"] = name
        parts.append(part)
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "test", "extra", "combined")}
    for name, frame in (("train", train), ("test", test), ("extra", extra), ("combined", pd.concat(parts))):
        frame.to_csv(paths[name], index=False)
    paths["oof"] = Path(length_proba_file(train, tmp_path / "oof_lp.csv"))
    paths["test_proba"] = Path(length_proba_file(test, tmp_path / "test_lp.csv"))
    return paths


@pytest.fixture
def fits(monkeypatch):
    """Every cross-fit and every LOSO stacker fit of the command: its rows, columns, fold features, options."""
    seen: list[dict] = []
    original = cross_fit_module.cross_fit

    def spy(X, y, folds, *args, **kwargs):
        result = original(X, y, folds, *args, **kwargs)
        model = result.models[0]
        columns = model.columns_ if hasattr(model, "columns_") else model.handling_.boosters_[0].columns_
        seen.append(
            {
                "rows": len(y),
                "columns": list(columns),
                "fold_features": [type(t) for t in result.fold_transformers[0]],
                "tie_handling": result.tie_handling,
                "weighted": kwargs.get("sample_weight") is not None,
            }
        )
        return result

    class SpyStacker(TieAwareStacker):
        def fit(self, X, y, source, has_ties, weight=None, groups=None):
            seen.append({"rows": len(y), "columns": list(X.columns), "tie_handling": self.option})
            return super().fit(X, y, source, has_ties, weight, groups)

    monkeypatch.setattr(cross_fit_module, "cross_fit", spy)
    monkeypatch.setattr(loso_study, "TieAwareStacker", SpyStacker)
    return seen


def _argv(command: str, files: dict, out: Path) -> list[str]:
    if command == "loso":
        return [
            *("--combined", str(files["combined"]), "--out", str(out), "--options", "plain", "--oof-options", ""),
            *("--fold-seeds", "1", "--folds", "3", "--num-boost-round", "15", "--early-stopping-rounds", "4"),
            *("--cache-dir", str(out / "cache")),
        ]
    argv = ["--train", str(files["train"]), "--test", str(files["test"]), "--out", str(out), "--folds", "3", *FAST]
    if command == "ablation":  # fewer groups, fewer refits; the --groups case gives its own (the last one wins)
        argv += ["--groups", "length,lexical"]
    return [*argv, "--n-trials", "1"] if command == "tune" else argv


def _flag_args(flag: str, files: dict, tiny: Path | None) -> list[str]:
    return {
        "--groups": ["--groups", "length,formatting"],
        "--tfidf": ["--tfidf"],
        "--embedder": ["--embedder", str(tiny), "--embedder-max-length", "32"],
        "--extra-train": ["--extra-train", f"extra={files['extra']}:0.5"],
        "--tie-handling": ["--tie-handling", "masked_tie"],
        "--source": ["--source", f"lenprior={files['oof']},{files['test_proba']}"],
        "--encoder": ["--encoder", str(tiny), "--encoder-max-steps", "2", "--encoder-max-length", "64"],
    }[flag]


def _check(flag: str, command: str, fits: list[dict], files: dict) -> None:
    assert fits, "the spy saw no fit"
    first = fits[0]  # full_run: the features-only stacker; tune: the baseline; ablation: the full model
    checked = fits if command == "tune" else [first]  # every trial of a study fits every feature asked for
    for fit in checked:
        if flag == "--groups":
            assert set(group_columns(fit["columns"])) == {"length", "formatting"}
        elif flag == "--tfidf":
            assert any("_tfidf_" in c for c in fit["columns"]), fit["columns"]
            assert command == "loso" or fit["fold_features"] == [TfidfDiffTransformer]
        elif flag == "--embedder":
            assert any("_emb_" in c for c in fit["columns"]), fit["columns"]
            assert command == "loso" or fit["fold_features"] == [EmbeddingPairFeatures]
        elif flag == "--extra-train":
            assert fit["rows"] == 90 + 60 and fit["weighted"]
        elif flag == "--tie-handling":
            assert fit["tie_handling"] == "masked_tie"
        elif flag == "--source":
            assert "diff_enc_lenprior" in fit["columns"], fit["columns"]
        elif flag == "--encoder":
            assert command == "full_run"
    if flag == "--encoder":  # the second stacker stacks the encoder's OOF probabilities
        assert any(any("_enc_" in c for c in f["columns"]) for f in fits[1:]), [f["columns"] for f in fits]


def _cases():
    for command in COMMANDS:
        for flag in FLAGS:
            marks = [pytest.mark.slow] if (command, flag) in SLOW else []
            yield pytest.param(command, flag, marks=marks, id=f"{command}{flag}")


MAINS = {"full_run": full_run.main, "tune": tune.main, "ablation": ablation.main, "loso": loso.main}


@pytest.mark.parametrize(("command", "flag"), list(_cases()))
def test_flag_reaches_the_fitted_model_or_is_refused(command, flag, files, fits, tmp_path, request, capsys):
    tiny = None
    if flag == "--embedder":
        tiny = request.getfixturevalue("tiny_bert")
    elif flag == "--encoder":
        tiny = request.getfixturevalue("tiny_distilbert")
    files = {**files, "tiny": tiny}
    argv = [*_argv(command, files, tmp_path / "out"), *_flag_args(flag, files, tiny)]
    if (command, flag) in REFUSED:
        with pytest.raises(SystemExit) as stop:
            MAINS[command](argv)
        assert stop.value.code == 2 and flag in capsys.readouterr().err
        assert not fits
        return
    assert run_command(MAINS[command], argv) == 0
    _check(flag, command, fits, files)


@pytest.mark.parametrize("flag", ["--tie-handling", "--source", "--calibration"])
def test_ablation_by_source_refuses_what_the_study_cannot_use(flag, files, fits, tmp_path, capsys):
    extra = {"--tie-handling": ["masked_tie"], "--source": [f"lp={files['oof']},{files['test_proba']}"]}
    argv = [*_argv("ablation", files, tmp_path / "out"), "--by-source", flag, *extra.get(flag, ["vector"])]
    assert run_command(ablation.main, argv) == 2
    assert flag in capsys.readouterr().err and not fits


@pytest.mark.slow
def test_full_run_tune_and_ablation_score_the_same_model(files, tmp_path):
    """With the same flags (fold features included) the run's OOF log loss is tune's baseline and ablation's
    full model: one model path, not three."""
    flags = ["--groups", "length", "--tfidf", "--source", f"lenprior={files['oof']},{files['test_proba']}"]
    for command in ("full_run", "tune", "ablation"):
        assert run_command(MAINS[command], [*_argv(command, files, tmp_path / command), *flags]) == 0
    run = json.loads((tmp_path / "full_run" / "report.json").read_text())["chosen"]["oof_log_loss"]
    baseline = json.loads((tmp_path / "tune" / "best_params.json").read_text())["baseline_value"]
    full = json.loads((tmp_path / "ablation" / "ablation" / "ablation.json").read_text())["variants"]["full"]
    assert run == pytest.approx(baseline, abs=1e-12) and run == pytest.approx(full["log_loss"], abs=1e-12)
