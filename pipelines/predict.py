"""Score new battles with a saved model bundle (``<run>/model``, written by pipelines.full_run).

python -m pipelines.predict --model outputs/run/model --test test.csv --out submission.csv
   [--source NAME=TEST_PROBA_FILE ...]       # the same extra sources the model was trained with
   [--encoder-base NAME=MODEL_DIR ...]       # where an encoder's base weights live now (e.g. on Kaggle)
   [--features-only]                         # skip the encoders even if the chosen stacker uses them
   [--config predict.json]                   # these options in a "predict" section: {"predict": {"model": ...}}
   [--stacker {chosen,features,full}]        # default: what the run submitted (the class prior, when its
                                             # prior guard rejected the stacker; else the chosen stacker)
   [--require-signature]                     # refuse a bundle not signed under ARENA_PREF_BUNDLE_KEY
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipelines.cli import add_dataclass_args, overrides_from_args
from pipelines.model.prediction import PredictConfig, check_inputs, predict
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, command_parser, parse_command, setup_logging
from pipelines.runtime.errors import UsageError, arguments_checked, run_command

log = logging.getLogger("arena_pref")


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.predict", __doc__)
    add_config_arg(p, SECTION_HELP.format("predict"))
    add_dataclass_args(p, PredictConfig, keep_defaults=True)
    return p


def check_new_source(config: PredictConfig) -> None:
    """``--test-calibration new-source`` on a bundle without a new-source calibrator (one tie-bearing training
    source): refused from its manifest before the test's features; the load verifies the bundle itself."""
    from pipelines.bundle.store import MANIFEST

    if config.test_calibration != "new-source":
        return
    try:
        manifest = json.loads((Path(config.model) / MANIFEST).read_text())
        fits = manifest["fit_report"]["calibration"]["new_source"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not a readable bundle: its load says why
    entries = [f for f in fits.values() if isinstance(f, dict)] if isinstance(fits, dict) else []
    if entries and not any(f.get("fitted") for f in entries):
        raise UsageError(
            f"--test-calibration new-source: the model {config.model} has no new-source calibrator"
            f" ({entries[0].get('why', 'none was fitted')}); use auto or in-source"
        )


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_command(build_parser(), argv, "predict")
    with arguments_checked():
        config = PredictConfig(**overrides_from_args(args, PredictConfig))
    check_inputs(config)
    check_new_source(config)
    frame = predict(config)
    log.info("wrote %s (%d rows)", config.out, len(frame))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
