"""The engine of ``python -m pipelines.data_report``: one file's (or a train/test pair's) summary as
Markdown + HTML + JSON + PNGs, read with the project's own reader so it counts what a run would see."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pipelines.data.battles import load_battles_frame, read_battle_csv
from pipelines.reports import data_report_plots as plots
from pipelines.reports.data_summary import SummaryConfig, compare, prompt_overlap, summarise
from pipelines.reports.report_blocks import render_html, render_markdown

EXTRA_COLUMNS = ("source", "model_a", "model_b")


def load_file(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """Parsed battles, the file's source/model columns (which the loader drops), and the parse report."""
    raw = read_battle_csv(path)
    battles, report = load_battles_frame(raw.frame, str(path), lines=raw.lines, notes=raw.notes)
    extra = raw.frame[[c for c in EXTRA_COLUMNS if c in raw.frame.columns]].reset_index(drop=True)
    extra = extra.apply(lambda col: col.str.strip())
    return battles.reset_index(drop=True), extra, report


def _n(x: float) -> str:
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _length_rows(summary: dict) -> list[list[str]]:
    rows = []
    for col, d in summary["lengths"].items():
        if d.get("n"):
            rows.append([col, f"{d['mean']:,.1f}", _n(d["p5"]), _n(d["p25"]), _n(d["p50"]), _n(d["p75"]),
                         _n(d["p95"]), _n(d["p99"]), _n(d["min"]), _n(d["max"])])  # fmt: skip
    return rows


def _mean_answer(s: dict) -> float:
    return (s["lengths"]["a_chars"]["mean"] + s["lengths"]["b_chars"]["mean"]) / 2


def _describe_data(s: dict) -> str:
    mean = _mean_answer(s)
    sources = f", sources: {', '.join(s['rows_per_source'])}" if "rows_per_source" in s else ""
    return f"`{s['name']}`: {s['rows']:,} rows{sources}; mean answer length {mean:,.0f} characters (all turns)."


def file_blocks(s: dict, images: dict[str, str], label: str) -> list[tuple]:
    """The report's sections for one file."""
    blocks: list[tuple] = [("h2", f"{label}: {Path(s['name']).name}"), ("p", _describe_data(s))]
    if s["read_notes"]:
        blocks.append(("p", "Read with: " + "; ".join(s["read_notes"]) + "."))
    return [
        *blocks,
        *_class_blocks(s, images),
        *_length_blocks(s, images),
        ("h3", "Turns per battle"),
        ("table", ["prompt turns", "battles"], [[k, _n(v)] for k, v in s["turns"].items()]),
        *_repair_blocks(s),
        *_model_blocks(s, images),
    ]


def _class_blocks(s: dict, images: dict[str, str]) -> list[tuple]:
    """Class shares overall and per source, with mean answer length (labelled files only)."""
    if "classes" not in s:
        return []
    header = ["group", "rows", "mean answer chars", "A wins", "B wins", "tie"]
    shares = {"all": s["classes"], **s.get("classes_per_source", {})}
    means = {"all": _mean_answer(s), **s.get("mean_chars_per_source", {})}
    rows = [
        [name, _n(c["rows"]), _n(means[name]), _pct(c["a"]), _pct(c["b"]), _pct(c["tie"])] for name, c in shares.items()
    ]
    blocks: list[tuple] = [("h3", "Class shares"), ("table", header, rows)]
    if "classes" in images:
        blocks.append(("img", images["classes"], "class shares"))
    return blocks


def _length_blocks(s: dict, images: dict[str, str]) -> list[tuple]:
    """Length quantiles, empty answers and the outcome per A - B length decile (the verbosity bias)."""
    blocks: list[tuple] = [
        ("h3", "Lengths (characters, all turns)"),
        ("table", ["column", "mean", "p5", "p25", "median", "p75", "p95", "p99", "min", "max"], _length_rows(s)),
        ("p", f"Empty answers: A {s['empty_answers']['a']:,}, B {s['empty_answers']['b']:,}."),
    ]
    if "outcome_by_length_diff" in s and s["outcome_by_length_diff"]:
        bins = s["outcome_by_length_diff"]
        blocks += [
            ("p", "Class shares per decile of A - B characters (the known verbosity bias: does the longer answer win"
                  " more often?):"),
            ("table", ["A - B from", "to", "rows", "A wins", "B wins", "tie"],
             [[_n(b["diff_low"]), _n(b["diff_high"]), _n(b["rows"]), _pct(b["a"]), _pct(b["b"]), _pct(b["tie"])]
              for b in bins]),
        ]  # fmt: skip
    if "length_diff" in images:
        blocks.append(("img", images["length_diff"], "A - B length and outcome"))
    return blocks


def _repair_blocks(s: dict) -> list[tuple]:
    """What the loader repaired and what repeats: the rows a run sees differ from the file's by these."""
    p, d = s["parse"], s["duplicates"]
    cols = list(p["invalid_json"])
    return [
        ("h3", "What loading repaired"),
        ("table", ["column", "invalid JSON (kept as one raw turn)", "null turns (became empty)", "lone surrogates"],
         [[c, _n(p["invalid_json"][c]), _n(p["null_turns"][c]), _n(p["surrogates"][c])] for c in cols]),
        ("h3", "Duplicates (whitespace and case normalised)"),
        ("table", ["what", "rows repeating an earlier one", "distinct repeated keys"],
         [["prompt", _n(d["prompt_rows"]), _n(d["prompt_groups"])],
          ["prompt + answer pair (either order)", _n(d["pair_rows"]), _n(d["pair_groups"])]]),
        ("p", f"Pairs that recur with A and B swapped: {d['pairs_swapped']:,}; rows with identical answers: "
              f"{d['identical_answers']:,}. Folds are grouped by prompt (and answer pair across sources), so "
              "repeats never straddle a fold."),
    ]  # fmt: skip


def _model_blocks(s: dict, images: dict[str, str]) -> list[tuple]:
    """Per-model battles, win and tie rates (train files with model names; nothing for a test file)."""
    models = s.get("models")
    if models is None:
        return [("h3", "Models"), ("p", "No model_a/model_b columns in this file.")] if s["labelled"] else []
    if not models["table"]:
        return [("h3", "Models"), ("p", "The model columns are empty in every row.")]
    table = models["table"]
    shown = [m for m in table if m["battles"] >= s["_min_model_battles"]][: s["_top_models"]]
    blocks: list[tuple] = [
        ("h3", "Models (train only: test files have no model names, so no feature uses them)"),
        ("p", f"{models['named_rows']:,} rows name both models; {len(table)} models. Shown: the "
              f"{len(shown)} with the most battles (at least {s['_min_model_battles']}); 95% Wilson "
              "intervals. The full table is in the JSON."),
        ("table", ["model", "battles", "win rate", "win 95%", "tie rate", "tie 95%"],
         [[m["model"], _n(m["battles"]), _pct(m["win_rate"]), f"{_pct(m['win_low'])}–{_pct(m['win_high'])}",
           _pct(m["tie_rate"]), f"{_pct(m['tie_low'])}–{_pct(m['tie_high'])}"] for m in shown]),
    ]  # fmt: skip
    if "models" in images:
        blocks.append(("img", images["models"], "win and tie rates per model"))
    return blocks


def check_summary_config(config: SummaryConfig, name: Callable[[str], str] = str) -> None:
    """Refuse limits that would silently show nothing or everything (a negative minimum, no models);
    ``name``: how a field is named in the error (a command passes its flag)."""
    for field_name, lowest in (("min_model_battles", 0), ("top_models", 1)):
        value = getattr(config, field_name)
        if not value >= lowest:
            raise ValueError(f"{name(field_name)} {value}: must be at least {lowest}")


def build_report(train: Path, test: Path | None, out: Path, config: SummaryConfig | None = None) -> dict:
    """Summarise ``train`` (and ``test``), draw the figures, write ``data_report.{json,md,html}``; return the JSON."""
    config = config or SummaryConfig()
    check_summary_config(config)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder (the report is a folder of files)")
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": train} | ({"test": test} if test is not None else {})
    summaries, lengths, battles = {}, {}, {}
    for label, path in files.items():
        parsed, extra, report = load_file(path)
        summaries[label], lengths[label] = summarise(parsed, extra, report, config)  # type: ignore[arg-type]
        battles[label] = parsed
    images = {label: _file_figures(label, s, lengths[label], out, config) for label, s in summaries.items()}
    sizes = ", ".join(
        f"{k} {v['rows']:,} rows (mean answer {_mean_answer(v):,.0f} chars)" for k, v in summaries.items()
    )
    shared = {
        "lengths": plots.length_histograms(lengths, out / "lengths.png", f"Lengths ({sizes})"),
        "turns": plots.turns({k: v["turns"] for k, v in summaries.items()}, out / "turns.png", f"Turns ({sizes})"),
    }
    result: dict = {"files": summaries, "config": asdict(config)}
    blocks: list[tuple] = [("h1", "Data report"), ("p", f"Files: {sizes}. Lengths are characters of all turns.")]
    blocks += [("img", shared["lengths"], "length distributions"), ("img", shared["turns"], "turns per battle")]
    for label, s in summaries.items():
        s_render = dict(s, _min_model_battles=config.min_model_battles, _top_models=config.top_models)
        blocks += file_blocks(s_render, images[label], label)
    if test is not None:
        diffs = compare(summaries["train"], summaries["test"], lengths["train"], lengths["test"])
        overlap = prompt_overlap(battles["train"], battles["test"])
        result["train_vs_test"] = {"lengths": diffs, "prompt_overlap": overlap}
        blocks += _train_vs_test_blocks(diffs, overlap, summaries)
    result["images"] = {"shared": shared, **images}
    (out / "data_report.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (out / "data_report.md").write_text(render_markdown(blocks))
    (out / "data_report.html").write_text(render_html(blocks, "arena-pref data report"))
    return result


def _file_figures(label: str, s: dict, lengths: pd.DataFrame, out: Path, config: SummaryConfig) -> dict[str, str]:
    """One file's PNGs (class shares, A - B length and outcome, models) -> image name by kind."""
    images: dict[str, str] = {}
    what = f"{label}: {s['rows']:,} rows, mean answer {_mean_answer(s):,.0f} chars"
    if "classes" in s:
        shares = {"all": s["classes"], **s.get("classes_per_source", {})}
        images["classes"] = plots.class_shares(shares, out / f"{label}_classes.png", f"Class shares, {what}")
        images["length_diff"] = plots.length_diff(
            lengths["diff_chars"], s["outcome_by_length_diff"], out / f"{label}_length_diff.png",
            f"A - B characters and outcome, {what}",
        )  # fmt: skip
    table = s.get("models", {}).get("table", [])
    shown = [m for m in table if m["battles"] >= config.min_model_battles][: config.top_models]
    if shown:
        images["models"] = plots.models(shown, out / f"{label}_models.png", f"Models, {what}")
    return images


def _train_vs_test_blocks(diffs: list[dict], overlap: dict, summaries: dict) -> list[tuple]:
    """Length shifts (KS), shared prompts and the tie shares: how far test is from train."""
    blocks: list[tuple] = [
        ("h2", "Train vs test"),
        ("table", ["column", "train median", "test median", "train mean", "test mean", "KS statistic", "KS p"],
         [[d["column"], _n(d["train_median"]), _n(d["test_median"]), f"{d['train_mean']:,.1f}",
           f"{d['test_mean']:,.1f}", f"{d['ks_statistic']:.3f}", f"{d['ks_pvalue']:.2g}"] for d in diffs]),
        ("p", f"Test rows whose prompt is also a train prompt: {overlap['test_rows_prompt_in_train']:,} of "
              f"{overlap['test_rows']:,}. KS statistic: the largest gap between the two cumulative "
              "distributions (0 = same shape)."),
    ]  # fmt: skip
    if "classes" in summaries["test"]:
        a, b = summaries["train"].get("classes"), summaries["test"]["classes"]
        if a:
            blocks.append(("p", f"Tie share: train {_pct(a['tie'])}, test {_pct(b['tie'])}."))
    return blocks
