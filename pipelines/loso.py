"""Leave-one-source-out report (the study is :mod:`pipelines.experiments.loso_study`).

    python -m pipelines.loso --data ../shared/data --out benchmarks/results/loso --fold-seeds 3
    python -m pipelines.loso --config loso.json       # {"loso": {"data": ..., "out": ..., "fold_seeds": 3}}
    python -m pipelines.loso --rerender benchmarks/results/loso

Writes ``loso.{json,md,html}`` and reliability PNGs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.cli import FOLD_FEATURE_FLAGS, add_dataclass_args, overrides_from_args
from pipelines.config.run_config import FeatureConfig
from pipelines.experiments.loso_study import LosoConfig, run_study
from pipelines.reports.loso_report import format_ms, rerender
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, parse_command, setup_logging
from pipelines.runtime.errors import arguments_checked

DATA_FIELDS = ("data", "combined")  # one of the two, from the flags or the file (checked by LosoConfig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.loso", description=__doc__.split("\n\n")[0])
    add_config_arg(p, SECTION_HELP.format("loso"))
    add_dataclass_args(p.add_mutually_exclusive_group(), LosoConfig, only=DATA_FIELDS, keep_defaults=True)
    add_dataclass_args(p, LosoConfig, exclude=DATA_FIELDS, keep_defaults=True)
    add_dataclass_args(p.add_argument_group("fold features"), FeatureConfig, only=FOLD_FEATURE_FLAGS)
    return p


def config_from_args(args: argparse.Namespace) -> LosoConfig:
    fold_features = {k: getattr(args, k) for k in FOLD_FEATURE_FLAGS if getattr(args, k) is not None}
    with arguments_checked():
        return LosoConfig(**overrides_from_args(args, LosoConfig), fold_features=FeatureConfig(**fold_features))


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--rerender"]:
        print(f"wrote {rerender(Path(argv[1]))['md']}")
        return 0
    args = parse_command(build_parser(), argv, "loso")
    setup_logging()
    summary, paths = run_study(config_from_args(args), command="python -m pipelines.loso " + " ".join(argv))
    for option, macro in summary["macro"].items():
        v = macro["value"]
        print(f"{option:16s} LOSO {format_ms(v['log_loss'])}  tie-row {format_ms(v['tie_loss'], 3)}")
    print(f"wrote {paths['md']}")
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
