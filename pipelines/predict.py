"""Score new battles with a saved model bundle (``<run>/model``, written by pipelines.full_run).

python -m pipelines.predict --model outputs/run/model --test test.csv --out submission.csv
   [--source NAME=TEST_PROBA_FILE ...]       # the same extra sources the model was trained with
   [--encoder-base NAME=MODEL_DIR ...]       # where an encoder's base weights live now (e.g. on Kaggle)
   [--features-only]                         # skip the encoders even if the chosen stacker uses them
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd

from pipelines.cli import add_test_calibration_arg
from pipelines.command_setup import command_parser, setup_logging
from pipelines.data import load_battles
from pipelines.errors import run_command
from pipelines.estimator import ArenaPreferenceModel
from pipelines.submission import write_submission

log = logging.getLogger("arena_pref")


def predict_file(
    model_dir: str | Path,
    test_path: str | Path,
    out_path: str | Path,
    sources: dict[str, str] | None = None,
    n_jobs: int = 2,
    progress: bool = True,
    *,
    encoder_base_paths: dict[str, str] | None = None,
    use_encoders: bool = True,
    calibration: str | None = None,
) -> pd.DataFrame:
    """Score ``test_path`` with the bundle; ``calibration``: None (the bundle's setting), ``auto``,
    ``in-source`` or ``new-source`` (what ``auto`` chose is logged)."""
    model = ArenaPreferenceModel.load(model_dir, encoder_base_paths=encoder_base_paths)
    model.set_params(n_jobs=n_jobs, progress=progress)
    test, _ = load_battles(test_path, labelled=False)
    proba = model.predict_proba(test, use_encoders=use_encoders, sources=sources or {}, calibration=calibration)
    choice = model.last_calibration_
    log.info("calibration: %s (%s)", choice["calibration"], choice["why"])
    return write_submission(test["id"], proba, out_path)


def _pairs(specs: list[str], flag: str) -> dict[str, str]:
    bad = [s for s in specs if "=" not in s]
    if bad:
        raise SystemExit(f"{flag} expects NAME=PATH, got {bad[0]!r}")
    return dict(s.split("=", 1) for s in specs)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = command_parser("pipelines.predict", __doc__)
    p.add_argument("--model", required=True, help="model bundle written by pipelines.full_run (<run>/model)")
    p.add_argument("--test", required=True, help="test.csv in the Kaggle schema")
    p.add_argument("--out", required=True, help="where to write submission.csv")
    p.add_argument("--source", action="append", default=[], metavar="NAME=FILE")
    p.add_argument("--encoder-base", action="append", default=[], metavar="NAME=MODEL_DIR")
    p.add_argument("--features-only", action="store_true", help="use the features-only stacker")
    p.add_argument("--n-jobs", type=int, default=2)
    add_test_calibration_arg(p)
    args = p.parse_args(argv)
    frame = predict_file(
        args.model,
        args.test,
        args.out,
        _pairs(args.source, "--source"),
        args.n_jobs,
        encoder_base_paths=_pairs(args.encoder_base, "--encoder-base"),
        use_encoders=not args.features_only,
        calibration=args.test_calibration,
    )
    log.info("wrote %s (%d rows)", args.out, len(frame))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
