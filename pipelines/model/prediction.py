"""The engine of ``python -m pipelines.predict``: its settings (:class:`PredictConfig`; the command's flags are
built from its fields, and ``pipelines.preflight`` checks every path before any work) and :func:`predict`, which
scores the test file with the saved bundle (:func:`pipelines.model.bundle_scoring.predict_file`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from pipelines.model.bundle_scoring import predict_file
from stacking.calibration_choice import TEST_CALIBRATION_HELP, TestCalibration, validate_test_calibration

STACKER_HELP = (
    "score with this stacker; none given: what the run submitted (the class prior when its prior guard rejected"
    " the stacker, else the chosen stacker)"
)


def named_paths(specs: tuple[str, ...], flag: str) -> dict[str, str]:
    """``NAME=PATH`` specs as a dict; a spec without both parts, or a name given twice, is refused."""
    bad = [s for s in specs if not all(s.partition("=")[::2])]
    if bad:
        raise ValueError(f"{flag} expects NAME=PATH, got {bad[0]!r}")
    pairs = [s.split("=", 1) for s in specs]
    names = [name for name, _ in pairs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{flag}: {twice[0]!r} given more than once")
    return dict(pairs)


@dataclass(kw_only=True)
class PredictConfig:
    """Which bundle scores which battles, and how (the stacker, the calibrator, the extra inputs it needs)."""

    model: str = field(metadata={"help": "model bundle written by pipelines.full_run (<run>/model)"})
    test: str = field(metadata={"help": "test.csv in the Kaggle schema"})
    out: str = field(metadata={"help": "where to write submission.csv"})
    source: tuple[str, ...] = field(
        default=(),
        metadata={"help": "test probabilities of an extra source the model was trained with", "metavar": "NAME=FILE"},
    )
    encoder_base: tuple[str, ...] = field(
        default=(),
        metadata={"help": "where an encoder's base weights live now (e.g. on Kaggle)", "metavar": "NAME=MODEL_DIR"},
    )
    features_only: bool = field(default=False, metadata={"help": "use the features-only stacker"})
    stacker: Literal["chosen", "features", "full"] | None = field(default=None, metadata={"help": STACKER_HELP})
    n_jobs: int = field(default=2, metadata={"help": "feature extraction processes"})
    test_calibration: TestCalibration = field(default="auto", metadata={"help": TEST_CALIBRATION_HELP})
    require_signature: bool = field(
        default=False,
        metadata={
            "help": "refuse a bundle not signed under ARENA_PREF_BUNDLE_KEY (a plain sha256 digest anyone can"
            " recompute after an edit); ARENA_PREF_REQUIRE_SIGNATURE=1 asks the same"
        },
    )

    def __post_init__(self) -> None:
        self.source, self.encoder_base = tuple(self.source), tuple(self.encoder_base)
        named_paths(self.source, "--source")  # a bad spec fails here, before any work
        named_paths(self.encoder_base, "--encoder-base")
        if self.n_jobs < 1:
            raise ValueError(f"--n-jobs {self.n_jobs}: must be at least 1")
        if self.stacker not in (None, "chosen", "features", "full"):
            raise ValueError(f"--stacker {self.stacker!r}: must be chosen, features or full")
        validate_test_calibration(self.test_calibration)

    @property
    def sources(self) -> dict[str, str]:
        """Extra probability source name -> its test probability file."""
        return named_paths(self.source, "--source")

    @property
    def encoder_base_paths(self) -> dict[str, str]:
        """Encoder name -> the folder holding its base weights now."""
        return named_paths(self.encoder_base, "--encoder-base")


def predict(config: PredictConfig, progress: bool = True) -> pd.DataFrame:
    """Score ``config.test`` and write the submission to ``config.out`` (the written frame is returned)."""
    return predict_file(
        config.model,
        config.test,
        config.out,
        config.sources,
        config.n_jobs,
        progress,
        encoder_base_paths=config.encoder_base_paths,
        use_encoders=not config.features_only,
        stacker=config.stacker,
        test_calibration=config.test_calibration,
        require_signature=config.require_signature,
    )
