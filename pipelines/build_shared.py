"""Write every shared human-preference set as one train.csv-schema file with a ``source`` column.

    python -m pipelines.build_shared --data ../shared/data --out combined.csv

Why: the leave-one-source-out report and ``--extra-train`` runs all read the same rows, so they
are converted once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arena_schema import CLASS_COLUMNS
from pipelines.data.training_sets import combined_shared_data
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, parse_command, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.build_shared", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    add_config_arg(parser, SECTION_HELP.format("build_shared"))
    args = parse_command(parser, argv, "build_shared")
    setup_logging()
    frame = combined_shared_data(args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    counts = frame.groupby("source")[list(CLASS_COLUMNS)].sum()
    counts["rows"] = counts.sum(axis=1)
    counts["tie_rate"] = (counts["winner_tie"] / counts["rows"]).round(3)
    print(counts.to_string())
    print(f"{len(frame)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
