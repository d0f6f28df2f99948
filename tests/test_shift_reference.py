"""The shift detector and its stored reference: rows scored against themselves look like the training
data (AUC 0.5, not 0.02-0.1), and a reference file with non-finite values or columns the model does not
know is refused in one line naming the file and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.extractor import FeatureExtractor, group_columns
from pipelines.bundle.model_bundle import SHIFT_REFERENCE, load_shift_reference
from pipelines.bundle.store import BundleError
from pipelines.data.battles import load_battles
from pipelines.data.folds import prompt_groups
from pipelines.runtime.paths import SAMPLE_DIR
from stacking.shift_detection import ShiftReference, linked_groups


@pytest.fixture(scope="module")
def sample():
    """The bundled sample's first 300 training battles: their handcrafted features and prompt groups."""
    battles, _ = load_battles(SAMPLE_DIR / "train.csv")
    battles = battles.iloc[:300].reset_index(drop=True)
    X = FeatureExtractor(n_jobs=1, progress=False).transform(battles)
    columns = [c for cols in group_columns(X.columns).values() for c in cols]
    return X[columns], prompt_groups(battles)


def test_the_training_rows_scored_against_themselves_look_like_the_training_data(sample):
    """Before, each row's twin on the other side sat in another fold: the classifier scored every held-out
    row by its twin's opposite label and the AUC was 0.02-0.07 on this sample."""
    X, groups = sample
    reference = ShiftReference.sample(X, None, groups)
    for seed in (0, 1):
        report = reference.detect(X, groups, seed=seed)
        assert 0.45 <= report.auc <= 0.55, report.to_dict()
        assert not report.new_source


def test_a_shifted_copy_of_the_training_rows_is_still_a_new_source(sample):
    """Linking each row to its twin does not hide a real shift: the same prompts with much longer answers."""
    X, groups = sample
    reference = ShiftReference.sample(X, None, groups)
    longer = [c for c in X.columns if c in ("a_chars", "b_chars", "a_words", "b_words")]
    shifted = X.assign(**{c: X[c] * 3 + 500 for c in longer})
    report = reference.detect(shifted, groups)
    assert report.auc > 0.9 and report.new_source, report.to_dict()


def test_rows_of_one_prompt_or_one_battle_are_one_group_across_sides():
    X = pd.DataFrame({"prompt_chars": [10, 10, 20, 30, 10], "a_chars": [1, 2, 3, 4, 5]})
    groups = np.array(["r0", "r1", "r2", "s0", "s1"])
    linked = linked_groups(X, groups)
    assert linked[0] == linked[1] == linked[4]  # equal prompt columns: one prompt, whatever side
    assert len({linked[0], linked[2], linked[3]}) == 3
    no_prompt = linked_groups(pd.DataFrame({"a": [1.0, 2.0, 1.0], "b": [0.0, 0.0, 0.0]}), np.array(["r0", "r1", "s0"]))
    assert no_prompt[0] == no_prompt[2] != no_prompt[1]  # without prompt columns: equal rows


# --------------------------------------------------------------------------- the stored reference


def _reference() -> ShiftReference:
    X = pd.DataFrame(np.arange(12, dtype=np.float32).reshape(4, 3), columns=["a_chars", "b_chars", "diff_chars"])
    return ShiftReference(X, np.array(["s1", "s1", "s2", "s2"]), np.arange(4))


def _save(path, reference: ShiftReference, values=None, columns=None):
    values = reference.features.to_numpy() if values is None else values
    columns = list(reference.features.columns) if columns is None else columns
    np.savez_compressed(
        path, values=values, columns=np.array(columns, dtype=str), source=reference.source, groups=reference.groups
    )
    return path


def _with(value, row: int, col: int) -> np.ndarray:
    values = _reference().features.to_numpy().copy()
    values[row, col] = value
    return values


KNOWN = ["a_chars", "b_chars", "diff_chars", "logratio_chars"]
BAD_FILES = [
    ("NaN", {"values": _with(np.nan, 2, 1)}, "column 'b_chars': 1 value(s) NaN or infinite (first in row 2)"),
    ("infinite", {"values": _with(-np.inf, 3, 2)}, "column 'diff_chars': 1 value(s) NaN or infinite (first in row 3)"),
    ("unknown column", {"columns": ["a_chars", "b_chars", "diff_charz"]}, "column 'diff_charz' is not one of the"),
    ("repeated column", {"columns": ["a_chars", "a_chars", "diff_chars"]}, "column 'a_chars' appears 2 times"),
    ("text values", {"values": np.full((4, 3), "x")}, "values of type <U1, expected numbers"),
]


@pytest.mark.parametrize(("case", "change", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_reference_file_is_refused_naming_file_and_column(tmp_path, case, change, message):
    path = _save(tmp_path / SHIFT_REFERENCE, _reference(), **change)
    with pytest.raises(ValueError, match="shift_reference.npz") as caught:
        ShiftReference.load(path, KNOWN)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(BundleError) as bundle_error:  # as a bundle's load reports it: one BundleError line
        load_shift_reference(tmp_path, KNOWN)
    assert str(bundle_error.value).startswith(str(path)) and message in str(bundle_error.value)


def test_a_good_reference_file_loads_as_saved(tmp_path):
    reference = _reference()
    again = ShiftReference.load(reference.save(tmp_path / SHIFT_REFERENCE), KNOWN)
    assert again.features.equals(reference.features) and (again.source == reference.source).all()
    assert ShiftReference.load(tmp_path / SHIFT_REFERENCE).features.equals(reference.features)  # no known columns


def test_a_reference_saved_by_a_fit_holds_only_the_model_s_columns_and_finite_values(sample, tmp_path):
    X, groups = sample
    path = ShiftReference.sample(X, np.repeat(["s1", "s2"], [150, 150]), groups).save(tmp_path / SHIFT_REFERENCE)
    assert len(ShiftReference.load(path, list(X.columns)).features) == 300
