"""Paired per-seed deltas between LOSO runs of feature variants (the same folds, other feature groups).

    python -m pipelines.loso ... --groups default --out runs/default
    python -m pipelines.loso ... --groups default,failure --out runs/failure
    python benchmarks/loso_variants.py runs/default runs/failure --option masked_tie --out runs/deltas.md

Each run's ``loso.json`` holds per-seed, per-held-out-source log loss and tie-row loss; runs with the same
``--fold-seeds`` use the same folds, so the difference per seed is paired. Prints and writes a Markdown table:
macro mean over held-out sources per seed, the delta against the first run, and the per-source deltas.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def per_seed(run: Path, option: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(held-out sources, log loss [seed, source], tie-row loss [seed, source]) of one LOSO run."""
    runs = json.loads((run / "loso.json").read_text())["runs"]["loso"][option]
    sources = sorted(runs)
    seeds = range(len(runs[sources[0]]))
    loss = np.array([[runs[s][k]["log_loss"] for s in sources] for k in seeds])
    tie = np.array([[runs[s][k]["per_class"]["tie"] for s in sources] for k in seeds])
    return sources, loss, tie


def _fmt(values: np.ndarray, digits: int = 4, sign: bool = False) -> str:
    return ", ".join(f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}" for v in values)


def delta_table(base: Path, variants: list[Path], option: str) -> str:
    sources, base_loss, base_tie = per_seed(base, option)
    lines = [
        f"# LOSO feature variants, paired per seed against `{base.name}` (option `{option}`)",
        "",
        "| variant | macro log loss per seed | Δ per seed | better every seed | tie-row Δ per seed |",
        "|---|---|---|---|---|",
        f"| {base.name} | {_fmt(base_loss.mean(1))} | – | – | – |",
    ]
    per_source = ["", "| variant | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for run in variants:
        other, loss, tie = per_seed(run, option)
        if other != sources or loss.shape != base_loss.shape:
            raise ValueError(f"{run}: held-out sources or seeds differ from {base}")
        delta = loss.mean(1) - base_loss.mean(1)
        better = "yes" if (delta < 0).all() else "no"
        tie_delta = tie.mean(1) - base_tie.mean(1)
        deltas = f"{_fmt(delta, sign=True)} | {better} | {_fmt(tie_delta, 3, True)}"
        lines.append(f"| {run.name} | {_fmt(loss.mean(1))} | {deltas} |")
        cells = [_fmt(loss[:, i] - base_loss[:, i], sign=True) for i in range(len(sources))]
        per_source.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", "Δ log loss per held-out source, per seed:", *per_source, ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path, help="the baseline run's --out folder")
    p.add_argument("variants", type=Path, nargs="+", help="variant runs' --out folders (same fold seeds)")
    p.add_argument("--option", default="masked_tie", help="the tie handling to compare")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown table here too")
    args = p.parse_args(argv)
    text = delta_table(args.base, args.variants, args.option)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
