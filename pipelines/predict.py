"""Score new battles with a saved stacker directory.

python -m pipelines.predict --model outputs/run/model --test test.csv --out submission.csv
   [--source NAME=TEST_PROBA_FILE ...]   # the same extra sources the model was trained with
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from features.extractor import FeatureExtractor
from pipelines.data import load_battles
from pipelines.submission import write_submission
from stacking.model import StackerModel
from stacking.sources import read_proba_file, source_features

log = logging.getLogger("arena_pref")


def predict_file(
    model_dir: str | Path,
    test_path: str | Path,
    out_path: str | Path,
    sources: dict[str, str] | None = None,
    n_jobs: int = 2,
    progress: bool = True,
) -> pd.DataFrame:
    model = StackerModel.load(model_dir)
    test, _ = load_battles(test_path, labelled=False)
    X = FeatureExtractor(model.feature_config["groups"], n_jobs=n_jobs, progress=progress).transform(test)
    needed = model.feature_config.get("sources", [])
    sources = sources or {}
    missing = [s for s in needed if s not in sources]
    if missing:
        raise SystemExit(f"model was trained with probability source(s) {missing}: pass --source NAME=FILE for each")
    for name in needed:
        X = pd.concat([X, source_features(read_proba_file(sources[name]), test["id"], name, sources[name])], axis=1)
    return write_submission(test["id"], model.predict_proba(X), out_path)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(
        prog="python -m pipelines.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="model directory written by pipelines.full_run (<run>/model)")
    p.add_argument("--test", required=True, help="test.csv in the Kaggle schema")
    p.add_argument("--out", required=True, help="where to write submission.csv")
    p.add_argument("--source", action="append", default=[], metavar="NAME=FILE")
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args(argv)
    sources = dict(s.split("=", 1) for s in args.source)
    frame = predict_file(args.model, args.test, args.out, sources, args.n_jobs)
    log.info("wrote %s (%d rows)", args.out, len(frame))
    return 0


if __name__ == "__main__":
    from pipelines.errors import run_command

    sys.exit(run_command(main))
