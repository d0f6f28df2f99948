"""Score new battles with a saved model bundle (``<run>/model``, written by pipelines.full_run).

python -m pipelines.predict --model outputs/run/model --test test.csv --out submission.csv
   [--source NAME=TEST_PROBA_FILE ...]       # the same extra sources the model was trained with
   [--encoder-base NAME=MODEL_DIR ...]       # where an encoder's base weights live now (e.g. on Kaggle)
   [--features-only]                         # skip the encoders even if the chosen stacker uses them
   [--config predict.json]                   # these options in a "predict" section: {"predict": {"model": ...}}
   [--stacker {chosen,features,full}]        # default: what the run submitted (the class prior, when its
                                             # prior guard rejected the stacker; else the chosen stacker)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pipelines.cli import add_test_calibration_arg
from pipelines.model.bundle_scoring import predict_file
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, command_parser, parse_command, setup_logging
from pipelines.runtime.errors import UsageError, run_command

log = logging.getLogger("arena_pref")


def _pairs(specs: list[str], flag: str) -> dict[str, str]:
    bad = [s for s in specs if "=" not in s or not s.split("=", 1)[0] or not s.split("=", 1)[1]]
    if bad:
        raise UsageError(f"{flag} expects NAME=PATH, got {bad[0]!r}")
    pairs = [s.split("=", 1) for s in specs]
    names = [name for name, _ in pairs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"{flag}: {twice[0]!r} given more than once")
    return dict(pairs)


def check_arguments(args, sources: dict[str, str], bases: dict[str, str]) -> None:
    """Every argument checked before the bundle and the test are read (one line, exit 2 otherwise)."""
    from pipelines.data.tables import read_proba_file
    from pipelines.stages.preflight import check_readable_file, check_submission_path, check_writable_dir

    if args.n_jobs < 1:
        raise UsageError(f"--n-jobs {args.n_jobs}: must be at least 1")
    if not Path(args.model).is_dir():
        raise UsageError(f"--model {args.model}: no such folder (the <run>/model bundle full_run writes)")
    check_readable_file(args.test, "--test")
    check_writable_dir(Path(args.out).parent, "--out folder")
    check_submission_path(args.out)
    for name, path in sources.items():
        check_readable_file(path, f"--source {name}")
        read_proba_file(path)
    for name, path in bases.items():
        if not (Path(path) / "config.json").is_file():
            raise UsageError(f"--encoder-base {name}={path}: not a Hugging Face model folder (no config.json)")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = command_parser("pipelines.predict", __doc__)
    add_config_arg(p, SECTION_HELP.format("predict"))
    p.add_argument("--model", required=True, help="model bundle written by pipelines.full_run (<run>/model)")
    p.add_argument("--test", required=True, help="test.csv in the Kaggle schema")
    p.add_argument("--out", required=True, help="where to write submission.csv")
    p.add_argument("--source", action="append", default=[], metavar="NAME=FILE")
    p.add_argument("--encoder-base", action="append", default=[], metavar="NAME=MODEL_DIR")
    p.add_argument("--features-only", action="store_true", help="use the features-only stacker")
    p.add_argument(
        "--stacker",
        choices=("chosen", "features", "full"),
        help="score with this stacker (default: what the run submitted: the class prior when its prior guard"
        " rejected the stacker, else the chosen stacker)",
    )
    p.add_argument("--n-jobs", type=int, default=2)
    add_test_calibration_arg(p)
    args = parse_command(p, argv, "predict")
    sources, bases = _pairs(args.source, "--source"), _pairs(args.encoder_base, "--encoder-base")
    check_arguments(args, sources, bases)
    frame = predict_file(
        args.model,
        args.test,
        args.out,
        sources,
        args.n_jobs,
        encoder_base_paths=bases,
        use_encoders=not args.features_only,
        stacker=args.stacker,
        calibration=args.test_calibration or "auto",
    )
    log.info("wrote %s (%d rows)", args.out, len(frame))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
