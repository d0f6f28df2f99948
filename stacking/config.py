"""The stacker's settings and their defaults, in the one place every caller reads them from."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from stacking.tie_registry import check_choice, choices

Calibration = Literal["none", "temperature", "vector"]
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)


@dataclass
class StackerConfig:
    """How one LightGBM stacker is fitted and calibrated (CLI flags are built from these fields)."""

    params: dict = field(
        default_factory=dict, metadata={"help": "overrides of stacking.lgbm.DEFAULT_PARAMS", "cli": False}
    )
    num_boost_round: int = field(default=3000, metadata={"help": "most boosting rounds per fold"})
    early_stopping_rounds: int = field(
        default=100, metadata={"help": "stop after this many rounds without gain on the inner split"}
    )
    inner_valid_fraction: float = field(
        default=0.15, metadata={"help": "share of each fold's training prompts held out for early stopping"}
    )
    swap_augment: bool = field(default=True, metadata={"help": "train on A/B-swapped copies too"})
    calibration: Calibration = field(
        default="temperature", metadata={"help": "calibration fitted on nested OOF predictions"}
    )
    tie_handling: str = field(
        default="auto",
        metadata={
            "help": "how rows of sources without ties train (stacking.tie_handling): auto = masked_tie when any "
            "training row comes from such a source (chosen by benchmarks/results/loso), else plain",
            "choices": choices,  # the registered options, read when a parser is built
        },
    )
    num_threads: int = field(
        default=2,
        metadata={"help": "LightGBM threads; 1 is much faster on a machine whose cores are busy with other work"},
    )

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        check_choice(self.tie_handling)
        if not 0.0 < self.inner_valid_fraction < 1.0:
            raise ValueError(f"inner_valid_fraction must be in (0, 1), got {self.inner_valid_fraction}")
        if self.num_boost_round < 1 or self.early_stopping_rounds < 1 or self.num_threads < 1:
            raise ValueError("num_boost_round, early_stopping_rounds and num_threads must be >= 1")

    @classmethod
    def from_dict(cls, data: dict) -> StackerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
