"""The numbers of the data report: plain dicts of counts, shares and quantiles, computed once.

Why a module of its own: the report's Markdown, HTML, JSON and figures all show these numbers and
nothing else, so a test can check the counts without reading a picture. Every pass over the rows is
a vectorised pandas/numpy operation or one Python loop, so time and memory are linear in rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from arena_schema import A_WINS, B_WINS, CLASS_NAMES, TIE
from pipelines.data.battles import ParseReport

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class SummaryConfig:
    """How much the report lists: models with fewer battles than ``min_model_battles`` are left out
    of the per-model table (their interval would be uninformative), at most ``top_models`` shown."""

    min_model_battles: int = field(default=20, metadata={"help": "models with fewer battles are left out"})
    top_models: int = field(default=30, metadata={"help": "most models in the per-model table"})
    confidence: float = 0.95
    length_bins: int = 10


def joined(turns: pd.Series) -> pd.Series:
    """Each cell's turns as one text (turns separated by a blank line, as the features see them)."""
    return turns.map(lambda t: "\n\n".join(t))


def normalised(text: pd.Series) -> pd.Series:
    """Lower case, whitespace collapsed: what makes two prompts the same prompt."""
    return text.map(lambda s: _SPACE.sub(" ", s).strip().lower())


def text_lengths(battles: pd.DataFrame) -> pd.DataFrame:
    """Characters of the prompt and of each response (all turns), A - B, and turns per battle."""
    out = pd.DataFrame(
        {
            "prompt_chars": joined(battles["prompt_turns"]).str.len(),
            "a_chars": joined(battles["a_turns"]).str.len(),
            "b_chars": joined(battles["b_turns"]).str.len(),
            "turns": battles["prompt_turns"].map(len),
        },
        index=battles.index,
    )
    out["diff_chars"] = out["a_chars"] - out["b_chars"]
    return out


def describe(values: pd.Series) -> dict[str, float]:
    """Mean and quantiles of one numeric column (empty: no keys but ``n``)."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return {"n": 0}
    out = {"n": int(len(values)), "mean": float(values.mean()), "min": float(values.min())}
    out.update({f"p{round(q * 100)}": float(values.quantile(q)) for q in QUANTILES})
    out["max"] = float(values.max())
    return out


def class_shares(labels: pd.Series) -> dict[str, float]:
    """Rows and the share of each class (0 = A wins, 1 = B wins, 2 = tie)."""
    counts = np.bincount(labels.to_numpy(dtype=np.int64), minlength=len(CLASS_NAMES))
    total = int(counts.sum())
    shares = {name: (float(c) / total if total else 0.0) for name, c in zip(CLASS_NAMES, counts)}
    return {"rows": total, **shares}


def duplicates(battles: pd.DataFrame) -> dict[str, int]:
    """Repeated prompts and repeated (prompt, unordered answer pair)s, after normalising whitespace and case.

    ``*_rows`` counts rows whose key appeared before (so a prompt seen 3 times counts 2); ``*_groups``
    counts keys seen more than once. ``pairs_swapped`` are pairs that recur with A and B exchanged.
    """
    prompt = normalised(joined(battles["prompt_turns"]))
    a, b = normalised(joined(battles["a_turns"])), normalised(joined(battles["b_turns"]))
    ordered = pd.Series(list(zip(prompt, a, b)), index=battles.index)
    unordered = pd.Series([(p, x, y) if x <= y else (p, y, x) for p, x, y in zip(prompt, a, b)], index=battles.index)
    prompt_counts, pair_counts = prompt.value_counts(), unordered.value_counts()
    return {
        "prompt_rows": int(prompt.duplicated().sum()),
        "prompt_groups": int((prompt_counts > 1).sum()),
        "pair_rows": int(unordered.duplicated().sum()),
        "pair_groups": int((pair_counts > 1).sum()),
        "pairs_swapped": int(unordered.duplicated().sum() - ordered.duplicated().sum()),
        "identical_answers": int((a == b).sum()),
    }


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (scipy's), sensible near 0 and 1 and for small n."""
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def model_table(models: pd.DataFrame, labels: pd.Series, config: SummaryConfig) -> list[dict]:
    """Per model name: battles (as A or B), win / tie / loss rates, Wilson intervals; most battles first.

    Rows without both names are left out; a model's win rate counts its battles on either side.
    """
    keep = (models["model_a"].str.strip() != "") & (models["model_b"].str.strip() != "")
    if not keep.any():
        return []
    a, b = models.loc[keep, "model_a"].str.strip(), models.loc[keep, "model_b"].str.strip()
    y = labels[keep].to_numpy()
    long = pd.DataFrame(
        {
            "model": np.concatenate([a.to_numpy(dtype=object), b.to_numpy(dtype=object)]),
            "win": np.concatenate([y == A_WINS, y == B_WINS]),
            "tie": np.concatenate([y == TIE, y == TIE]),
        }
    )
    grouped = long.groupby("model").agg(battles=("win", "size"), wins=("win", "sum"), ties=("tie", "sum"))
    grouped = grouped.sort_values(["battles", "wins"], ascending=False)
    rows = []
    for name, r in grouped.iterrows():
        n, wins, ties = int(r["battles"]), int(r["wins"]), int(r["ties"])
        row = {"model": str(name), "battles": n, "wins": wins, "ties": ties, "losses": n - wins - ties}
        row["win_rate"], row["tie_rate"] = wins / n, ties / n
        row["win_low"], row["win_high"] = wilson(wins, n, config.confidence)
        row["tie_low"], row["tie_high"] = wilson(ties, n, config.confidence)
        rows.append(row)
    return rows


def outcome_by_length_diff(lengths: pd.DataFrame, labels: pd.Series, bins: int) -> list[dict]:
    """Class shares per quantile bin of A - B characters: the verbosity bias, read off the data."""
    diff = lengths["diff_chars"]
    if diff.nunique() < 2:
        return []
    codes = pd.qcut(diff.rank(method="first"), q=min(bins, len(diff)), labels=False)
    rows = []
    for code in sorted(codes.unique()):
        mask = (codes == code).to_numpy()
        part = diff[mask]
        rows.append(
            {"bin": int(code), "diff_low": float(part.min()), "diff_high": float(part.max())}
            | class_shares(labels[mask])
        )
    return rows


def parse_counts(report: ParseReport) -> dict[str, dict[str, int]]:
    """What loading repaired, per text column: invalid JSON, null turns, lone surrogates."""
    return {
        "invalid_json": dict(report.invalid_json),
        "null_turns": dict(report.null_turns),
        "surrogates": dict(report.surrogates),
    }


def summarise(
    battles: pd.DataFrame, extra: pd.DataFrame, report: ParseReport, config: SummaryConfig
) -> tuple[dict, pd.DataFrame]:
    """All the report's numbers for one file, and its per-row lengths (for the figures).

    ``battles`` comes from :func:`pipelines.data.battles.load_battles_frame`; ``extra`` holds the file's
    ``source``/``model_a``/``model_b`` columns when present (the loader drops them on purpose).
    """
    lengths = text_lengths(battles)
    out: dict = {
        "name": report.path,
        "rows": len(battles),
        "labelled": "label" in battles,
        "read_notes": list(report.notes),
        "parse": parse_counts(report),
        "empty_answers": {
            "a": int((lengths["a_chars"] == 0).sum()),
            "b": int((lengths["b_chars"] == 0).sum()),
        },
        "lengths": {col: describe(lengths[col]) for col in lengths.columns},
        "turns": {str(k): int(v) for k, v in lengths["turns"].value_counts().sort_index().items()},
        "duplicates": duplicates(battles),
    }
    if "source" in extra:
        out["rows_per_source"] = {str(k): int(v) for k, v in extra["source"].value_counts().sort_index().items()}
        out["mean_chars_per_source"] = {
            str(s): float(lengths.loc[(extra["source"] == s).to_numpy(), ["a_chars", "b_chars"]].to_numpy().mean())
            for s in out["rows_per_source"]
        }
    if out["labelled"]:
        labels = battles["label"]
        out["classes"] = class_shares(labels)
        if "source" in extra:
            out["classes_per_source"] = {
                str(s): class_shares(labels[(extra["source"] == s).to_numpy()])
                for s in sorted(extra["source"].unique())
            }
        out["outcome_by_length_diff"] = outcome_by_length_diff(lengths, labels, config.length_bins)
        if {"model_a", "model_b"} <= set(extra.columns):
            models = model_table(
                extra[["model_a", "model_b"]].reset_index(drop=True), labels.reset_index(drop=True), config
            )
            out["models"] = {"named_rows": int(sum(m["battles"] for m in models) // 2), "table": models}
    return out, lengths


def compare(train: dict, test: dict, train_lengths: pd.DataFrame, test_lengths: pd.DataFrame) -> list[dict]:
    """Train vs test, per length column: medians, means and the two-sample Kolmogorov-Smirnov statistic
    (the largest gap between the two cumulative distributions; 0 = same shape)."""
    rows = []
    for col in ("prompt_chars", "a_chars", "b_chars", "diff_chars", "turns"):
        x, y = train_lengths[col].to_numpy(), test_lengths[col].to_numpy()
        ks = stats.ks_2samp(x, y)
        rows.append(
            {
                "column": col,
                "train_median": float(np.median(x)),
                "test_median": float(np.median(y)),
                "train_mean": float(x.mean()),
                "test_mean": float(y.mean()),
                "ks_statistic": float(ks.statistic),
                "ks_pvalue": float(ks.pvalue),
            }
        )
    return rows


def prompt_overlap(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, int]:
    """Test rows whose normalised prompt is also a train prompt (leakage, or a repeated benchmark)."""
    seen = set(normalised(joined(train["prompt_turns"])))
    test_prompts = normalised(joined(test["prompt_turns"]))
    return {"test_rows": len(test), "test_rows_prompt_in_train": int(test_prompts.isin(seen).sum())}
