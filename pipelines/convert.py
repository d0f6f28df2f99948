"""Convert external human-preference data into the Kaggle train.csv schema (formats: ``pipelines.formats``).

python -m pipelines.convert --format hh-rlhf a.jsonl.gz b.jsonl.gz --out train.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines.formats import COLUMNS, CONVERTERS, ConversionError, convert, label_counts
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, parse_command, setup_logging

__all__ = ["COLUMNS", "ConversionError", "convert", "main"]

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.convert", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--format", required=True, choices=sorted(CONVERTERS))
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("--out", required=True, type=Path, help="output CSV (train.csv schema)")
    parser.add_argument("--seed", type=int, default=0, help="A/B shuffle seed (hh-rlhf)")
    add_config_arg(parser, SECTION_HELP.format("convert"))
    args = parse_command(parser, argv, "convert")
    setup_logging()
    try:
        df = convert(args.format, args.inputs, seed=args.seed)
    except ConversionError as exc:
        log.error("%s", exc)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    counts = " ".join(f"{k}={v}" for k, v in label_counts(df).items())
    print(f"{args.format}: {len(df)} rows from {len(args.inputs)} file(s) -> {args.out} | {counts}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
