"""Build the bundled sample (``pipelines/sample_data/``) from the real data in ``shared/data``.

    python -m pipelines.make_sample --data ../shared/data

Train: a seeded draw from LLMEval², PandaLM and hh-rlhf (converted by ``pipelines.convert``).
Test: the 100 real Chatbot Arena rows (king398), labels removed; their labels go to
``test_labels.csv`` so a run can score itself with ``--test-labels``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from arena_schema import CLASS_COLUMNS, TEXT_COLUMNS
from pipelines.formats import convert
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, command_parser, parse_command, setup_logging
from pipelines.runtime.paths import SAMPLE_DIR

TRAIN_DRAW = {"llmeval2": 300, "pandalm": 150, "hh-rlhf": 150}
SOURCES = {
    "llmeval2": ["llmeval2/LLMEval2_benchmark.json.zip"],
    "pandalm": ["pandalm/testset-v1.json"],
    "hh-rlhf": [
        f"hh-rlhf/{s}/test.jsonl.gz"
        for s in ("harmless-base", "helpful-base", "helpful-online", "helpful-rejection-sampled")
    ],
}
KAGGLE_TRAIN = ["id", "model_a", "model_b", *TEXT_COLUMNS, *CLASS_COLUMNS]


def build(data_dir: Path, out_dir: Path, seed: int = 0) -> None:
    parts = []
    for fmt, n in TRAIN_DRAW.items():
        frame = convert(fmt, [data_dir / p for p in SOURCES[fmt]], seed=seed)
        parts.append(frame.sample(n=n, random_state=seed))
    train = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed)
    arena = convert("arena", [data_dir / "arena-snippets-king398" / "batch_input.jsonl"], seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    train[KAGGLE_TRAIN].to_csv(out_dir / "train.csv", index=False)
    arena[["id", *TEXT_COLUMNS]].to_csv(out_dir / "test.csv", index=False)
    arena[["id", *CLASS_COLUMNS]].to_csv(out_dir / "test_labels.csv", index=False)
    counts = train["source"].str.split("/").str[0].value_counts().to_dict()
    (out_dir / "SOURCE.md").write_text(
        "# Bundled sample\n\n"
        f"Built by `python -m pipelines.make_sample --seed {seed}` from `shared/data/` "
        "(see each folder's SOURCE.txt).\n\n"
        f"- `train.csv`: {len(train)} rows drawn at random: {counts}. LLMEval² (MIT), PandaLM (Apache-2.0),"
        " Anthropic hh-rlhf test splits (MIT; A/B order shuffled with the seed, no ties).\n"
        f"- `test.csv`: {len(arena)} real Chatbot Arena battles (LMSYS arena-55k texts, embedded in"
        " github.com/king398/lmsys-scoring batch_input.jsonl; some responses truncated there; no licence stated).\n"
        "- `test_labels.csv`: their labels, for `--test-labels` only.\n\n"
        "Small on purpose: it shows the pipeline working end to end; its scores say little.\n"
    )


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = command_parser("pipelines.make_sample", __doc__)
    p.add_argument("--data", required=True, help="the shared/data folder")
    p.add_argument("--out", default=str(SAMPLE_DIR))
    p.add_argument("--seed", type=int, default=0)
    add_config_arg(p, SECTION_HELP.format("make_sample"))
    args = parse_command(p, argv, "make_sample")
    build(Path(args.data), Path(args.out), args.seed)
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    raise SystemExit(run_command(main))
