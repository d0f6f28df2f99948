"""pipelines.cli: flags built from dataclass fields, and the legacy flag names they must keep."""

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from pipelines import full_run
from pipelines.cli import add_dataclass_args, overrides_from_args
from stacking.config import StackerConfig


@dataclass
class _Settings:
    rounds: int = field(default=10, metadata={"help": "how many rounds"})
    rate: float | None = None
    fast: bool = True
    kind: Literal["x", "y"] = "x"
    hidden: dict = field(default_factory=dict, metadata={"cli": False})


def _parser(**kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_dataclass_args(p, _Settings, **kwargs)
    return p


def test_flags_come_from_fields_and_only_given_ones_override():
    p = _parser(prefix="s_")
    assert overrides_from_args(p.parse_args([]), _Settings, "s_") == {}
    args = p.parse_args(["--s-rounds", "3", "--s-rate", "0.5", "--no-s-fast", "--s-kind", "y"])
    assert overrides_from_args(args, _Settings, "s_") == {"rounds": 3, "rate": 0.5, "fast": False, "kind": "y"}
    assert "how many rounds (default 10)" in p.format_help()
    assert "--s-hidden" not in p.format_help()
    with pytest.raises(SystemExit):
        p.parse_args(["--s-kind", "z"])  # Literal fields become choices
    with pytest.raises(ValueError, match="no flag"):
        _parser(only=("rounds", "nope"))


def test_full_run_keeps_every_legacy_flag_name(tmp_path):
    args = full_run.build_parser().parse_args(
        [
            *("--out", str(tmp_path), "--encoder", "m1", "--encoder", "m2"),
            *("--encoder-max-length", "64", "--encoder-epochs", "0.5", "--encoder-batch-size", "2"),
            *("--encoder-max-steps", "3", "--encoder-max-train-rows", "50", "--encoder-probe-steps", "0"),
            *("--encoder-min-max-length", "32", "--calibration", "vector", "--num-threads", "1"),
            *("--num-boost-round", "40", "--early-stopping-rounds", "8"),
        ]
    )
    config, _ = full_run.config_from_args(args)
    assert [e.model_path for e in config.encoders] == ["m1", "m2"]
    for enc in config.encoders:
        assert (enc.max_length, enc.epochs, enc.batch_size, enc.max_steps) == (64, 0.5, 2, 3)
        assert (enc.max_train_rows, enc.probe_steps, enc.min_max_length) == (50, 0, 32)
        assert enc.learning_rate == 2e-5  # untouched fields keep their defaults
    assert config.stacker == StackerConfig(
        calibration="vector", num_threads=1, num_boost_round=40, early_stopping_rounds=8
    )


def test_a_field_without_a_flag_is_never_read_from_a_same_named_argument():
    args = argparse.Namespace(params="best_params.json", num_threads=None, calibration="none")
    assert overrides_from_args(args, StackerConfig) == {"calibration": "none"}
