"""Run reports a person can read: ``report.json`` (everything) and ``report.md`` (the summary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.runtime.run_dir import atomic_write_text


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _metrics_table(title: str, rows: dict[str, dict]) -> list[str]:
    lines = [
        f"## {title}",
        "",
        "| predictions | log loss | fold mean ± std | A wins | B wins | tie | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        pc = m["per_class"]
        lines.append(
            f"| {name} | {_fmt(m['log_loss'])} | {_fmt(m['fold_mean'])} ± {_fmt(m['fold_std'])} | "
            f"{_fmt(pc['a'])} | {_fmt(pc['b'])} | {_fmt(pc['tie'])} | {m['accuracy']:.3f} |"
        )
    return lines + [""]


def _plan_lines(plan: dict) -> list[str]:
    """The time-budget plan: which submissions were written when, and what each encoder did."""
    if not plan:
        return []
    budget = plan.get("time_budget_hours")
    lines = ["", "## Plan", "", f"- time budget: {'none' if budget is None else f'{budget} h'}"]
    for write in plan.get("submission_writes", []):
        lines.append(
            f"- submission written at {write['at_s']:.0f}s: stacker over features"
            f"{' + ' + ', '.join(write['sources']) if write['sources'] else ' only'} "
            f"(OOF log loss {write['oof_log_loss']:.4f})"
        )
    for name, enc in (plan.get("encoder_runs") or {}).items():
        length = enc.get("max_length") or {}
        stopped = enc.get("stopped") or {}
        configured = f" (configured {length['configured']})" if length.get("used") != length.get("configured") else ""
        lines.append(
            f"- encoder {name}: folds done {enc.get('folds_done', [])}, test scored by folds "
            f"{enc.get('test_folds', [])}, max_length {length.get('used', '?')}"
            f"{configured}"
            f", {enc.get('wall_s', 0):.0f}s; {'used' if enc.get('used_in_submission') else 'not used'}"
            f"{': ' + stopped['reason'] if stopped.get('reason') else ''}"
            f"{': ' + enc['error'] if enc.get('error') else ''}"
        )
    return lines


def _per_source_lines(report: dict) -> list[str]:
    """OOF per training source (uncalibrated); only runs with several sources have it."""
    per_source = report.get("oof_per_source")
    if not per_source:
        return []
    sources = report.get("training_sources", {})
    lines = [
        "## Out-of-fold per training source (uncalibrated)",
        "",
        f"Tie handling: {sources.get('tie_handling')}; scored (primary) sources: "
        f"{', '.join(sources.get('scored_sources', []))}. Pairwise = log loss of P(A)/(P(A)+P(B)).",
        "",
        "| source | rows | log loss | pairwise | tie rate | mean P(tie) | accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in per_source.items():
        lines.append(
            f"| {name} | {s['rows']} | {_fmt(s['log_loss'])} | {_fmt(s['pairwise'])} | {_fmt(s['tie_rate'])} |"
            f" {_fmt(s['mean_p_tie'])} | {_fmt(s['accuracy'])} |"
        )
    return [*lines, ""]


def _calibration_lines(report: dict) -> list[str]:
    """Which calibrator scored the test rows and why; the new-source calibrator's held-out figures."""
    cal = report.get("calibration") or {}
    choice, new = cal.get("test_choice"), cal.get("new_source") or {}
    if not choice and not new:
        return []
    lines = ["## Test calibration", ""]
    if choice:
        lines.append(f"- asked: {choice['requested']}; used: **{choice['calibration']}** ({choice['why']})")
        shift = choice.get("shift")
        if shift:
            per = ", ".join(f"{k} {v['auc']:.3f}" for k, v in shift["per_source"].items())
            lines.append(f"- adversarial validation AUC per training source: {per}")
    for key, info in new.items():
        if not info.get("fitted"):
            lines.append(f"- new-source calibrator ({key} stacker): none ({info.get('why')})")
            continue
        fitted = info["calibrator"]["calibrator"]
        lines.append(
            f"- new-source calibrator ({key} stacker): {info['procedure']}, temperature {fitted['temperature']:.3f},"
            f" tie bias {fitted['tie_bias']:.3f}, smoothing {fitted.get('smoothing', 0.0):.3f}; {info['seconds']:.1f}s"
        )
        lines += [
            "",
            "| held-out source | rows | LOSO log loss, in-source cal. | new-source cal. (in-sample) | fitted alone |",
            "|---|---|---|---|---|",
        ]
        for name, s in info["held_out_sources"].items():
            lines.append(
                f"| {name} | {s['rows']} | {s['loso_log_loss_in_source']:.4f} | {s['loso_log_loss_new_source']:.4f} |"
                f" {_calibrator_parameters(s.get('fitted_alone'))} |"
            )
        lines.append("")
    return [*lines, ""]


def render_markdown(report: dict) -> str:
    lines = [
        "# arena-pref run report",
        "",
        f"- train: `{report['data']['train']['path']}` ({report['data']['train']['rows']} rows)",
        f"- test: `{report['data']['test']['path']}` ({report['data']['test']['rows']} rows)",
        f"- folds: {report['folds']['n_folds']} (grouped by prompt, stratified by label)",
        f"- features: {report['features']['n_columns']} columns from groups {', '.join(report['features']['groups'])}",
        f"- extra sources: {', '.join(report['features']['sources']) or 'none'}",
        f"- calibration: {report['calibration']['kind']} {report['calibration']['fitted']}",
        "",
    ]
    guard = report.get("prior_guard") or {}
    if guard.get("worse_than_prior"):
        lines += [
            f"**WARNING: the stacker's OOF log loss ({guard['stacker_oof_log_loss']:.4f}) is not better than the"
            f" class prior's ({guard['prior_oof_log_loss']:.4f}); the submission is "
            + ("the stacker anyway (--allow-worse-than-prior).**" if guard.get("allowed") else "the class prior.**"),
            "",
        ]
    lines += _metrics_table("Out-of-fold log loss (lower is better)", report["oof"])
    lines.append(
        "Every figure above is out-of-fold: each row is scored by models (and a calibrator and prior)"
        " fitted without its fold."
    )
    lines.append("")
    lines += _per_source_lines(report)
    lines += _calibration_lines(report)
    if report.get("holdout"):
        lines += _metrics_table("Labelled test set (evaluation only)", {k: v for k, v in report["holdout"].items()})
    lines += [
        "## Parse problems",
        "",
        "| file | column | invalid JSON (kept as one turn) | null turns | lone surrogates |",
        "|---|---|---|---|---|",
    ]
    for side in ("train", "test"):
        parse = report["data"][side]["parse"]
        for col in parse["invalid_json"]:
            lines.append(
                f"| {side} | {col} | {parse['invalid_json'][col]} | {parse['null_turns'][col]} | "
                f"{parse['surrogates'][col]} |"
            )
    lines += _plan_lines(report.get("plan") or {})
    lines += ["", "## Timings (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["timings"].items()]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path, names: Any = None) -> tuple[Path, Path]:
    """``report.json`` and ``report.md`` in ``out_dir``, or at ``names.path("report.json"/"report.md")``
    (a run's staged outputs, ``pipelines.runtime.run_dir.StagedOutputs``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    if names is not None:
        json_path, md_path = names.path("report.json"), names.path("report.md")
    atomic_write_text(json_path, json.dumps(report, indent=2, default=str))
    atomic_write_text(md_path, render_markdown(report))
    return json_path, md_path


def _calibrator_parameters(fitted: dict | None) -> str:
    """A calibrator's fitted parameters in a few characters ("–" for reports written before they were kept)."""
    if not fitted:
        return "–"
    if fitted["kind"] == "smoothing":
        return f"eps {fitted['smoothing']:.3f}"
    bias = f", tie bias {fitted['tie_bias']:.3f}" if fitted["kind"] == "vector" else ""
    return f"T {fitted['temperature']:.3f}{bias}"
