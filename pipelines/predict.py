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
import logging
import sys

from pipelines.cli import add_dataclass_args, overrides_from_args
from pipelines.model.prediction import PredictConfig, predict
from pipelines.preflight import check_predict_bundle, check_predict_inputs
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, command_parser, parse_command, setup_logging
from pipelines.runtime.errors import arguments_checked, run_command

log = logging.getLogger("arena_pref")


def build_parser() -> argparse.ArgumentParser:
    p = command_parser("pipelines.predict", __doc__)
    add_config_arg(p, SECTION_HELP.format("predict"))
    add_dataclass_args(p, PredictConfig, keep_defaults=True)
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = parse_command(build_parser(), argv, "predict")
    with arguments_checked():
        config = PredictConfig(**overrides_from_args(args, PredictConfig))
    check_predict_inputs(config)
    check_predict_bundle(config)
    frame = predict(config)
    log.info("wrote %s (%d rows)", config.out, len(frame))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
