"""Do the opt-in feature groups (sentiment, spelling) earn a place in the defaults? One table from
the runs that answer it.

    python benchmarks/opt_in_groups.py --ablation RUN/ablation/ablation.json \
        --loso default=DIR/loso.json --loso sentiment=DIR2/loso.json ... \
        --cost benchmarks/results/features_opt_in.json --out docs/sentiment_spelling

Reads (never refits): the ablation report (drop-one and only-this-group, paired per fold within
each fold seed, over default + both groups), one leave-one-source-out report per feature set (same
option, seeds and settings; ``default`` is the base), and the feature-cost JSON of
``benchmarks/features.py --opt-in-cost``. Writes ``evidence.{json,md}`` and ``evidence.png`` (per
seed deltas). The rule: a group becomes a default only if removing it hurts on *every* fold seed of the
ablation, it does not make leave-one-source-out worse on average, and it slows the features by at most
``--max-slowdown`` (30%) on arena-length rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stacking.config import STUDY_PRESET

GROUPS = ("sentiment", "spelling")


def ablation_rows(ablation: dict) -> dict[str, dict]:
    """Per opt-in group: drop-one and only-this deltas per seed (variant - full; drop > 0 = it helps)."""
    out = {}
    for g in GROUPS:
        drop, only = ablation["variants"].get(f"drop:{g}"), ablation["variants"].get(f"only:{g}")
        if drop is None:
            continue
        out[g] = {
            "n_columns": len(ablation["groups"][g]),
            "drop_delta_per_seed": drop["diff_vs_full"]["per_seed"],
            "drop_folds_worse": drop["diff_vs_full"]["folds_worse"],
            "n_folds": drop["diff_vs_full"]["n_folds"],
            "only_log_loss_per_seed": only["seed_log_loss"] if only else None,
            "helps_every_seed": all(d > 0 for d in drop["diff_vs_full"]["per_seed"]),
        }
    return out


def loso_macro(report: dict, option: str) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Per seed, the mean LOSO log loss over the held-out sources with ties; and per source, per seed."""
    runs = report["runs"]["loso"][option]
    has_ties = report["runs"]["has_ties"]
    per_source = {s: [r["log_loss"] for r in v] for s, v in runs.items() if v and has_ties.get(s)}
    seeds = min(len(v) for v in per_source.values())
    macro = np.mean([v[:seeds] for v in per_source.values()], axis=0)
    return macro, per_source


def loso_rows(reports: dict[str, dict], option: str) -> dict[str, dict]:
    base, base_sources = loso_macro(reports["default"], option)
    out = {"default": {"macro_per_seed": base.tolist(), "per_source_mean": _means(base_sources)}}
    for name, report in reports.items():
        if name == "default":
            continue
        macro, sources = loso_macro(report, option)
        n = min(len(macro), len(base))
        delta = macro[:n] - base[:n]
        out[name] = {
            "macro_per_seed": macro.tolist(),
            "delta_per_seed": delta.tolist(),
            "delta_mean": float(delta.mean()),
            "per_source_mean": _means(sources),
            "per_source_delta": {s: float(np.mean(sources[s][:n]) - np.mean(base_sources[s][:n])) for s in sources},
        }
    return out


def _means(per_source: dict[str, list[float]]) -> dict[str, float]:
    return {s: float(np.mean(v)) for s, v in per_source.items()}


def plot(abl: dict, loso: dict, path: Path, title: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    width = 0.35
    for i, g in enumerate(abl):
        d = abl[g]["drop_delta_per_seed"]
        left.bar(np.arange(len(d)) + i * width, d, width, label=g)
        left.set_xticks(np.arange(len(d)) + width / 2, [f"seed {k}" for k in range(len(d))])
    left.axhline(0, color="black", lw=0.8)
    left.set_title("ablation (full = default + both)", fontsize=8)
    left.set_ylabel("drop-one Δ log loss (> 0: group helps)")
    left.legend(fontsize=8)
    names = [n for n in loso if n != "default"]
    step = 0.7 / max(len(names), 1)
    for i, n in enumerate(names):
        d = loso[n]["delta_per_seed"]
        right.bar(np.arange(len(d)) + i * step, d, step, label=f"default + {n}")
        right.set_xticks(np.arange(len(d)) + step * (len(names) - 1) / 2, [f"seed {k}" for k in range(len(d))])
    right.axhline(0, color="black", lw=0.8)
    right.set_title("leave-one-source-out, macro over 4 held-out sources", fontsize=8)
    right.set_ylabel("LOSO Δ vs default (< 0: better)")
    right.legend(fontsize=7)
    fig.suptitle(textwrap.fill(title, 120), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _f(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}f}"


def markdown(result: dict) -> str:
    """The evidence as tables (every number from the JSON beside it)."""
    lines = _ablation_lines(result) + _loso_lines(result) + _cost_lines(result.get("cost"))
    lines += ["", "Verdict: " + "; ".join(
        f"{g}: {'default' if v['default'] else 'opt-in'} (helps on every seed: {v['helps_every_seed']}, "
        f"LOSO not worse on average: {v['loso_not_worse']}, feature time within the bar: {v['cheap_enough']})"
        for g, v in result["verdict"].items()
    ) + ".", ""]  # fmt: skip
    if result["loso"]:
        lines += ["![per-seed deltas](evidence.png)", ""]
    return "\n".join(lines)


def _ablation_lines(result: dict) -> list[str]:
    """The title, the ablation's settings and its drop-one / only-this table per group."""
    abl, cfg = result["ablation"], result["config"]
    full = result["full_log_loss_per_seed"]
    lines = [
        "# Opt-in groups: the evidence",
        "",
        f"Ablation: {result['data']}; {cfg['n_folds']} folds grouped by prompt / answer pair, tie-less sources train "
        f"only (masked_tie), calibrated nested OOF log loss of the scored rows; learning rate "
        f"{cfg['params'].get('learning_rate')}, at most {cfg['stacker']['num_boost_round']} rounds, early stopping "
        f"{cfg['stacker']['early_stopping_rounds']}. Full model = default groups + sentiment + spelling; its log loss "
        f"per seed: {', '.join(f'{x:.4f}' for x in full)}.",
        "",
        "| group | columns | drop-one Δ per seed (> 0: it helps) | folds worse without it "
        "| only-this log loss per seed | helps on every seed |",
        "|---|---|---|---|---|---|",
    ]
    for g, r in abl.items():
        only = ", ".join(f"{x:.4f}" for x in r["only_log_loss_per_seed"] or [])
        lines.append(
            f"| {g} | {r['n_columns']} | {', '.join(_f(d) for d in r['drop_delta_per_seed'])} | "
            f"{r['drop_folds_worse']} of {r['n_folds']} | {only} | {'yes' if r['helps_every_seed'] else 'no'} |"
        )
    return lines


def _loso_lines(result: dict) -> list[str]:
    """Leave-one-source-out per feature set: macro per seed, deltas against the default groups, per source."""
    loso = result["loso"]
    if not loso:
        return []
    sources = list(loso["default"]["per_source_mean"])
    lines = [
        "",
        "Leave-one-source-out (held out: " + ", ".join(sources) + "; macro mean over them per seed; "
        f"option {result['loso_option']}; each feature set its own run, same seeds and settings):",
        "",
        "| features | LOSO log loss per seed | Δ vs default per seed | mean Δ | " + " | ".join(sources) + " |",
        "|---|---|---|---|" + "---|" * len(sources),
    ]
    for name, r in loso.items():
        per_seed = ", ".join(f"{x:.4f}" for x in r["macro_per_seed"])
        if name == "default":
            cells = [f"{r['per_source_mean'][s]:.4f}" for s in sources]
            lines.append(f"| default | {per_seed} | – | – | " + " | ".join(cells) + " |")
        else:
            cells = [f"{r['per_source_mean'][s]:.4f} ({_f(r['per_source_delta'][s])})" for s in sources]
            deltas = ", ".join(_f(d) for d in r["delta_per_seed"])
            lines.append(
                f"| default + {name} | {per_seed} | {deltas} | {_f(r['delta_mean'])} | " + " | ".join(cells) + " |"
            )
    return lines


def _cost_lines(cost: dict | None) -> list[str]:
    """What each opt-in group costs per arena-length row (``benchmarks/features.py --opt-in-cost``)."""
    if not cost:
        return []
    return [
        "",
        f"Cost (CPU time, one process, best of {cost['repeat']}, {cost['arena_like']['rows']:,} arena-length rows, "
        f"mean answer {cost['arena_like']['mean_response_chars']:,.0f} chars): default groups "
        f"{cost['default_ms_per_row']:.2f} ms/row; "
        + "; ".join(
            f"+ {g}: {c['ms_per_row_with_default']:.2f} ms/row ({100 * c['slowdown_vs_default']:+.0f}%)"
            for g, c in cost["opt_in"].items()
        )
        + f"; + both: {cost['all_opt_in']['ms_per_row_with_default']:.2f} ms/row "
        f"({100 * cost['all_opt_in']['slowdown_vs_default']:+.0f}%).",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ablation", type=Path, required=True)
    p.add_argument("--loso", action="append", default=[], metavar="NAME=loso.json", help="'default=...' is the base")
    p.add_argument("--loso-option", default=STUDY_PRESET.option)
    p.add_argument("--cost", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-note", default="", help="what the rows are (sources, mean length), for the figure")
    p.add_argument("--max-slowdown", type=float, default=0.30, help="feature-time bar for a default group")
    args = p.parse_args(argv)
    ablation = json.loads(args.ablation.read_text())
    reports = {k: json.loads(Path(v).read_text()) for k, v in (s.split("=", 1) for s in args.loso)}
    abl = ablation_rows(ablation)
    loso = loso_rows(reports, args.loso_option) if "default" in reports else {}
    cost = json.loads(args.cost.read_text()) if args.cost else None
    verdict = {}
    for g, row in abl.items():
        loso_ok = g in loso and loso[g]["delta_mean"] <= 0
        slowdown = cost["opt_in"][g]["slowdown_vs_default"] if cost and g in cost["opt_in"] else None
        cheap = slowdown is not None and slowdown <= args.max_slowdown
        verdict[g] = {"helps_every_seed": row["helps_every_seed"], "loso_not_worse": loso_ok, "cheap_enough": cheap}
        verdict[g]["default"] = row["helps_every_seed"] and loso_ok and cheap
    cfg = ablation["config"]
    note = f" ({args.data_note})" if args.data_note else ""
    data = f"{cfg['rows']:,} scored rows of {Path(cfg['train']).name}{note}, {cfg['fold_seeds']} fold seeds"
    result = {
        "ablation": abl,
        "loso": loso,
        "loso_option": args.loso_option,
        "cost": cost,
        "verdict": verdict,
        "data": data,
        "config": cfg,
        "full_log_loss_per_seed": ablation["variants"]["full"]["seed_log_loss"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evidence.json").write_text(json.dumps(result, indent=1) + "\n")
    if loso:
        plot(abl, loso, args.out / "evidence.png", f"Opt-in groups: ablation ({data}) and LOSO")
    (args.out / "evidence.md").write_text(markdown(result))
    print(json.dumps(verdict, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
