"""Score battles with saved fold models on several GPUs: one process per device, rows split in order.

Prediction needs no gradients, so plain process-per-device with ``CUDA_VISIBLE_DEVICES`` is enough
(no process group): each process scores one contiguous chunk of rows and the chunks are joined
in order. With zero or one GPU it runs in this process. ``n_processes`` on a machine without
GPUs starts CPU processes, so the splitting path is testable anywhere.

    python -m encoders.parallel_predict --models DIR --rows IN.parquet --out OUT.npy [--options JSON]

Rows travel to the worker processes as parquet (id and the turn lists), probabilities come back as
``.npy`` read with ``allow_pickle=False``: neither format can run code when it is loaded, so a file
swapped in the temporary folder cannot make a worker (or this process) execute anything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from encoders.fold_models import EncoderFoldModels

ROOT = Path(__file__).resolve().parents[1]
ROW_COLUMNS = ("id", "prompt_turns", "a_turns", "b_turns")  # what the fold models read from a battle


def write_rows(battles: pd.DataFrame, path: Path) -> None:
    """The columns the encoders read, as parquet (lists of str stay lists of str)."""
    battles[list(ROW_COLUMNS)].assign(id=battles["id"].astype(str)).reset_index(drop=True).to_parquet(path)


def read_rows(path: str | Path) -> pd.DataFrame:
    """:func:`write_rows`' frame back, the turn lists as Python lists (parquet gives numpy arrays)."""
    frame = pd.read_parquet(path)
    for column in ROW_COLUMNS[1:]:
        frame[column] = [list(turns) for turns in frame[column]]
    return frame


def visible_gpus() -> list[str]:
    """The CUDA device ids a child process may be given, as ``CUDA_VISIBLE_DEVICES`` names them."""
    try:
        import torch

        count = torch.cuda.device_count()
    except ImportError:
        count = 0
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def _child_env(device: str | None, n_processes: int) -> dict[str, str]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # not a data-parallel group: each process alone
        env.pop(key, None)
    if device is None:  # CPU processes share the cores
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n_processes)))
    else:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


def predict_proba_multi_gpu(
    directory: str | Path,
    battles: pd.DataFrame,
    *,
    base_path: str | Path | None = None,
    n_processes: int | None = None,
    batch_size: int | None = None,
    precision: str | None = None,
    load_in_bits: int | None = None,
) -> np.ndarray:
    """(n, 3) probabilities of the fold models in ``directory``; one process per visible GPU.

    ``n_processes``: at most that many GPU processes; without GPUs, that many CPU processes.
    """
    gpus = visible_gpus()
    n = len(gpus) if n_processes is None else (min(n_processes, len(gpus)) if gpus else n_processes)
    n = min(n, len(battles))
    if n <= 1:
        return EncoderFoldModels.load(directory, base_path).predict_proba(
            battles, batch_size=batch_size, precision=precision, load_in_bits=load_in_bits
        )
    options = {"batch_size": batch_size, "precision": precision, "load_in_bits": load_in_bits}
    chunks = np.array_split(np.arange(len(battles)), n)
    with tempfile.TemporaryDirectory(prefix="arena_pref_predict_") as tmp_name:
        tmp = Path(tmp_name)
        procs = []
        for i, rows in enumerate(chunks):
            write_rows(battles.iloc[rows], tmp / f"rows_{i}.parquet")
            cmd = [
                sys.executable,
                "-m",
                "encoders.parallel_predict",
                "--models",
                str(directory),
                "--rows",
                str(tmp / f"rows_{i}.parquet"),
                "--out",
                str(tmp / f"proba_{i}.npy"),
                "--options",
                json.dumps({**options, "base_path": None if base_path is None else str(base_path)}),
            ]
            log_file = open(tmp / f"log_{i}.txt", "w")  # noqa: SIM115 (closed after the wait)
            env = _child_env(gpus[i] if gpus else None, n)
            procs.append((subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log_file, stderr=log_file), log_file))
        for i, (proc, log_file) in enumerate(procs):
            rc = proc.wait()
            log_file.close()
            if rc != 0:
                tail = (tmp / f"log_{i}.txt").read_text()[-3000:]
                raise RuntimeError(f"prediction process {i} of {n} failed (exit {rc}):\n{tail}")
        return np.concatenate([np.load(tmp / f"proba_{i}.npy", allow_pickle=False) for i in range(n)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m encoders.parallel_predict", description=__doc__)
    p.add_argument("--models", required=True, help="an encoder's fold-model folder (with encoder.json)")
    p.add_argument("--rows", required=True, help="battles as parquet (encoders.parallel_predict.write_rows)")
    p.add_argument("--out", required=True, help="where the (n, 3) probabilities go (.npy)")
    p.add_argument("--options", default="{}", help="JSON: base_path, batch_size, precision, load_in_bits")
    args = p.parse_args(argv)
    options = json.loads(args.options)
    models = EncoderFoldModels.load(args.models, options.pop("base_path", None))
    np.save(args.out, models.predict_proba(read_rows(args.rows), **options), allow_pickle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
