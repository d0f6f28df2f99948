"""The stacker's settings and their defaults, in the one place every caller reads them from."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from stacking.tie_registry import check_choice, choices

# the in-source calibrator's kind (not the test-time choice between calibrators: stacking.calibration_choice)
CalibrationKind = Literal["none", "temperature", "vector", "smoothing"]
CALIBRATIONS: tuple[str, ...] = get_args(CalibrationKind)


@functools.lru_cache(maxsize=1)
def lightgbm_param_names() -> frozenset[str]:
    """Every parameter name and alias the installed LightGBM knows, from its C library's own table
    (``LGBM_DumpParamAliases``): an unknown name is only a warning there, hidden at ``verbose=-1``."""
    import lightgbm as lgb  # imported only when there are names to check

    aliases = lgb.basic._ConfigAliases._get_all_param_aliases()
    return frozenset(aliases) | frozenset(alias for names in aliases.values() for alias in names)


def check_param_names(params: dict) -> None:
    """Refuse a name LightGBM does not know (``learnin_rate``): it would train with the default and the run
    would record a setting it never used. Names and aliases come from LightGBM itself."""
    if not params:
        return
    known = lightgbm_param_names()
    for name in params:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else " (see LightGBM's Parameters page)"
            raise ValueError(f"unknown LightGBM parameter {name!r}{hint}")


@dataclass
class StackerConfig:
    """How one LightGBM stacker is fitted and calibrated (CLI flags are built from these fields)."""

    params: dict = field(
        default_factory=dict,
        metadata={"help": "overrides of stacking.lgbm.DEFAULT_PARAMS", "cli": False, "check": check_param_names},
    )
    num_boost_round: int = field(default=3000, metadata={"help": "most boosting rounds per fold"})
    early_stopping_rounds: int = field(
        default=100, metadata={"help": "stop after this many rounds without gain on the inner split"}
    )
    inner_valid_fraction: float = field(
        default=0.15, metadata={"help": "share of each fold's training prompts held out for early stopping"}
    )
    swap_augment: bool = field(default=True, metadata={"help": "train on A/B-swapped copies too"})
    calibration: CalibrationKind = field(
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
        if not isinstance(self.params, dict):
            raise ValueError(f"params must be a dict of LightGBM parameters, got {type(self.params).__name__}")
        check_param_names(self.params)
        check_choice(self.tie_handling)
        if not 0.0 < self.inner_valid_fraction < 1.0:
            raise ValueError(f"inner_valid_fraction must be in (0, 1), got {self.inner_valid_fraction}")
        if self.num_boost_round < 1 or self.early_stopping_rounds < 1 or self.num_threads < 1:
            raise ValueError("num_boost_round, early_stopping_rounds and num_threads must be >= 1")

    @classmethod
    def from_dict(cls, data: dict) -> StackerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class StudyPreset:
    """The settings the tie-handling and leave-one-source-out studies share, written once so their
    numbers stay comparable (``pipelines.loso``, ``benchmarks/transformer_gain.py``,
    ``benchmarks/new_source_calibration.py``, ``benchmarks/opt_in_groups.py``): a quicker stacker
    than the product's (higher learning rate, fewer rounds, one thread), fold seed k = 42 + k."""

    option: str = "masked_tie"  # how tie-less sources train (what ``auto`` picks when some source has none)
    baseline: str = "drop_tieless"  # the option every other is paired against
    learning_rate: float = 0.08
    num_boost_round: int = 600
    early_stopping_rounds: int = 30
    num_threads: int = 1
    tieless_weight: float = 0.2  # ``weighted``'s weight of a tie-less row
    first_fold_seed: int = 42
    n_folds: int = 5
    holdouts: tuple[str, ...] = ("llmeval2", "mtbench-human", "pandalm", "qlora-vicuna80")  # tie-bearing, >= 200 rows

    def fold_seed(self, k: int) -> int:
        """The seed of the k-th fold split (it moves the folds, the inner early-stopping split and bagging)."""
        return self.first_fold_seed + k

    def fold_seeds(self, count: int) -> list[int]:
        return [self.fold_seed(k) for k in range(count)]

    def stacker_settings(self) -> dict:
        """Keywords of ``TieAwareStacker`` (and of a study report's ``settings``)."""
        return {
            "params": {"learning_rate": self.learning_rate, "num_threads": self.num_threads},
            "num_boost_round": self.num_boost_round,
            "early_stopping_rounds": self.early_stopping_rounds,
        }


STUDY_PRESET = StudyPreset()
