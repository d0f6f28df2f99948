"""A first look at the data before modelling: one command, Markdown + HTML + JSON + PNGs.

    python -m pipelines.data_report --train train.csv [--test test.csv] --out DIR

Class shares (overall and per ``source``), lengths of prompt and answers and A - B (the verbosity
bias), turns per battle, what loading repaired (invalid JSON, null turns, lone surrogates),
duplicate prompts and answer pairs, per-model battles and win / tie rates with Wilson intervals
(when ``model_a``/``model_b`` exist; test files have none, so no model uses them), and train vs
test differences. Files are read with the project's own reader, so the report counts exactly
what a run would see.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines.cli import add_dataclass_args, overrides_from_args
from pipelines.preflight import check_writable_dir
from pipelines.reports.data_report import build_report, check_summary_config
from pipelines.reports.data_summary import SummaryConfig
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, command_parser, parse_command, setup_logging
from pipelines.runtime.errors import arguments_checked


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("pipelines.data_report", __doc__)
    parser.add_argument("--train", type=Path, required=True, help="train.csv (Kaggle schema; source column optional)")
    parser.add_argument("--test", type=Path, help="test.csv to compare with")
    parser.add_argument("--out", type=Path, required=True, help="folder for data_report.{md,html,json} and PNGs")
    add_dataclass_args(parser, SummaryConfig, only=("min_model_battles", "top_models"))
    add_config_arg(parser, SECTION_HELP.format("data_report"))
    args = parse_command(parser, argv, "data_report")
    setup_logging()
    with arguments_checked():
        config = SummaryConfig(**overrides_from_args(args, SummaryConfig))
        check_summary_config(config, lambda name: "--" + name.replace("_", "-"))
    check_writable_dir(args.out, "--out")  # an existing file, not a folder, is refused here
    build_report(args.train, args.test, args.out, config)
    print(f"wrote {args.out / 'data_report.md'}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
