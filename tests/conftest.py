"""Shared fixtures: small Kaggle-schema CSVs with a learnable signal and the awkward cases."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arena_schema import CLASS_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers share the cores: one OpenMP thread each (torch,
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # read at its import) and in the commands the tests start
SHARED_SLICES = ROOT / "tests" / "fixtures" / "shared_slices"  # real records of the shared data (see its README)

WORDS = (
    "the model answer explains python code data table list because however example result simple "
    "clear detail step first second finally note important summary question reason value"
).split()


def _text(rng: np.random.Generator, n_words: int, markdown: bool) -> str:
    words = rng.choice(WORDS, size=max(n_words, 1))
    sentences = [" ".join(words[i : i + 9]).capitalize() + "." for i in range(0, len(words), 9)]
    if markdown:
        return "## Answer\n\n" + "\n".join(f"- {s}" for s in sentences) + "\n\n**Summary**: done."
    return " ".join(sentences)


def make_battles(n: int, seed: int = 0, labelled: bool = True, start_id: int = 1000) -> pd.DataFrame:
    """Synthetic battles: longer / markdown answers tend to win, identical answers tie."""
    rng = np.random.default_rng(seed)
    rows = []
    n_prompts = max(n // 3, 10)
    for i in range(n):
        prompt_id = int(rng.integers(n_prompts))
        prompt = [f"Question {prompt_id}: " + _text(np.random.default_rng(prompt_id), 12, False)]
        la, lb = int(rng.integers(5, 120)), int(rng.integers(5, 120))
        ma, mb = bool(rng.random() < 0.4), bool(rng.random() < 0.4)
        a, b = _text(rng, la, ma), _text(rng, lb, mb)
        if rng.random() < 0.1:
            b = a
        score = (la - lb) / 40 + 0.8 * (ma - mb) + rng.normal(0, 0.7)
        label = 2 if a == b or abs(score) < 0.35 else (0 if score > 0 else 1)
        row = {
            "id": start_id + i,
            "prompt": json.dumps(prompt),
            "response_a": json.dumps([a]),
            "response_b": json.dumps([b]),
        }
        if labelled:
            row.update(
                model_a="m1",
                model_b="m2",
                winner_model_a=int(label == 0),
                winner_model_b=int(label == 1),
                winner_tie=int(label == 2),
            )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if labelled:
        frame = frame[
            [
                "id",
                "model_a",
                "model_b",
                "prompt",
                "response_a",
                "response_b",
                "winner_model_a",
                "winner_model_b",
                "winner_tie",
            ]
        ]
    return frame


def length_proba_file(frame: pd.DataFrame, path: Path) -> str:
    """A stand-in probability source (an encoder's OOF or test file): probabilities from the response length
    difference, written in the probability-file layout (id + the three class columns)."""
    ratio = np.log1p(frame["response_a"].str.len().to_numpy()) - np.log1p(frame["response_b"].str.len().to_numpy())
    logits = np.stack([ratio, -ratio, np.full(len(ratio), -0.5)], axis=1)
    out = pd.DataFrame(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), columns=list(CLASS_COLUMNS))
    out.insert(0, "id", frame["id"].astype(str).to_numpy())
    out.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    frame = make_battles(240, seed=1)
    # the awkward cases the loader must keep: a null turn, invalid JSON, a lone surrogate
    frame.loc[3, "response_a"] = json.dumps(["first turn", None])
    frame.loc[4, "response_b"] = "this is [not json"
    frame.loc[5, "prompt"] = '["bad \\ud83d surrogate"]'
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def test_csv(tmp_path: Path) -> Path:
    path = tmp_path / "test.csv"
    make_battles(60, seed=2, labelled=False, start_id=90000).to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch, tmp_path_factory):
    """Keep each test's Kaggle discovery away from a real /kaggle."""
    monkeypatch.setenv("ARENA_PREF_KAGGLE_ROOT", str(tmp_path_factory.mktemp("no_kaggle")))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Tiny Hugging Face models, built once per test session (they are only read).
def _tiny_model_fixture(name: str, builder: str):
    @pytest.fixture(scope="session", name=name)
    def _fixture(tmp_path_factory) -> Path:
        from tests import tiny_models

        return getattr(tiny_models, builder)(tmp_path_factory.mktemp("models") / name.replace("_", "-"))

    return _fixture


tiny_bert = _tiny_model_fixture("tiny_bert", "build_tiny_bert")
tiny_distilbert = _tiny_model_fixture("tiny_distilbert", "build_tiny_distilbert")
tiny_llama = _tiny_model_fixture("tiny_llama", "build_tiny_llama")
tiny_deberta = _tiny_model_fixture("tiny_deberta", "build_tiny_deberta_v2")


@pytest.fixture(scope="session")
def tiny_llama_gguf(tmp_path_factory) -> Path:
    """The tiny Llama as an fp32 ``.gguf`` file, laid out as llama.cpp's converter writes it."""
    from tests import tiny_models

    root = tmp_path_factory.mktemp("gguf")
    return tiny_models.build_tiny_llama_gguf(root / "tiny-llama-hf", root / "tiny-llama.gguf")
