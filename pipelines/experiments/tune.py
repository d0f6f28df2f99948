"""The engine of ``python -m pipelines.tune``: an Optuna study over the stacker's LightGBM parameters and
calibration, each trial scored by the calibrated, nested out-of-fold log loss on the run's saved folds."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import optuna
from optuna.trial import TrialState

from pipelines.config.run_config import RunConfig
from pipelines.data.training_sets import TrainingSourcesConfig
from pipelines.experiments.fold_seeds import fit_seed, repeated_folds
from pipelines.model.model_inputs import ModelInputs, model_inputs, require_extras_loaded
from pipelines.runtime.errors import UsageError
from pipelines.runtime.run_dir import atomic_write_text
from pipelines.runtime.storage import known_dead, rdb_storage, storage_errors, worker_identity
from pipelines.stages.stacker_inputs import StackerInputs
from stacking.config import StackerConfig
from stacking.tuning import FoldResult, evaluate_repeated, searched_config, split_trial_params, suggest_stacker

log = logging.getLogger("arena_pref.tune")


@dataclass
class TuneConfig:
    """Settings of one ``pipelines.tune`` invocation (the data side is a ``RunConfig``)."""

    n_trials: int | None = field(
        default=30, metadata={"help": "trials to add in this invocation (the study keeps earlier ones)"}
    )
    timeout: float | None = field(default=None, metadata={"help": "stop starting new trials after this many seconds"})
    study: str = field(default="stacker", metadata={"help": "study name in the storage"})
    storage: str | None = field(
        default=None,
        metadata={"help": "Optuna RDB URL (default sqlite:///<out>/optuna.db), e.g. postgresql://..."},
    )
    sampler_seed: int | None = field(
        default=None,
        metadata={
            "help": "TPE seed (default --seed); --seed also seeds folds and LightGBM, which every worker of one "
            "study must share; give each worker of a shared study its own"
        },
    )
    pruner_startup_trials: int = field(default=5, metadata={"cli": False})
    pruner_warmup_steps: int = field(default=1, metadata={"cli": False})

    def __post_init__(self) -> None:
        if self.n_trials is not None and self.n_trials < 1:
            raise ValueError(f"--n-trials {self.n_trials}: must be at least 1")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"--timeout {self.timeout}: must be positive (seconds)")
        if not self.study.strip():
            raise ValueError("--study: give the study a name")


@dataclass
class Evaluation:
    """What every trial is scored on: the run's model inputs (``pipelines.model.model_inputs``: every feature,
    fold feature, source and weight the flags ask for), the fold sets (one per fold seed) and their fit seeds."""

    model: ModelInputs
    fold_sets: list[np.ndarray]
    seeds: list[int]

    @property
    def inputs(self) -> StackerInputs:
        return self.model.inputs

    @classmethod
    def of(cls, model: ModelInputs, config: RunConfig, fold_seeds: int = 1) -> Evaluation:
        fold_sets = repeated_folds(model.inputs.train, model.inputs.folds, fold_seeds, config.seed)
        seeds = [fit_seed(config.seed, i) for i in range(fold_seeds)]
        return cls(model, fold_sets, seeds)

    def __call__(self, stacker: StackerConfig, report=None) -> FoldResult:
        i, kwargs = self.inputs, self.model.fit_kwargs()
        groups = kwargs.pop("groups")
        return evaluate_repeated(i.X, i.y, self.fold_sets, groups, stacker, self.seeds, report, **kwargs)


# --------------------------------------------------------------------------- study


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'optuna.db').resolve()}"


def setup_key(evaluation: Evaluation, config: RunConfig) -> dict:
    """What makes trials comparable: the data, its folds (every fold seed's) and the fixed fit settings.

    A study resumed on anything else would rank losses of different problems against each other.
    """
    inputs = evaluation.inputs
    h = hashlib.sha256()
    h.update(",".join(inputs.X.columns).encode())
    h.update(np.ascontiguousarray(inputs.X.to_numpy(dtype=np.float32)).tobytes())
    h.update(np.asarray(inputs.y, dtype=np.int64).tobytes())
    for folds in evaluation.fold_sets:
        h.update(np.asarray(folds, dtype=np.int64).tobytes())
    fit_kwargs = evaluation.model.fit_kwargs()
    for name in sorted(k for k in fit_kwargs if k not in ("groups", "fold_features", "battles", "fold_cache")):
        h.update(name.encode() + np.asarray(fit_kwargs[name]).astype(str).tobytes())
    # searched (calibration) and per-machine (num_threads) settings are not part of the problem
    settings = {k: v for k, v in asdict(config.stacker).items() if k not in ("calibration", "num_threads")}
    key = {
        "data_sha256": h.hexdigest()[:20],
        "rows": len(inputs.y),
        "n_features": int(inputs.X.shape[1]),
        "fit": {"seed": config.seed, **settings},
    }
    if evaluation.model.fold_features:  # fitted per fold in every trial; absent key: a study from before them
        key["fold_features"] = {"specs": evaluation.model.describe(), "embedder": config.features.embedder}
    return key


class TrialSeededTPESampler(optuna.samplers.BaseSampler):
    """TPE whose random stream is drawn afresh for every trial from ``(seed, trial number)``.

    Trial numbers are handed out by the shared storage, so no two trials of a study (from any worker,
    same seed or not, resumed or not) draw from the same stream. Seeding one sampler per process with
    ``seed + len(study.trials)`` did not have that property: worker seeds 100 and 101 opening the study
    at 1 and 0 trials both used 101 and proposed the same startup trials. Only public sampler API is
    used: a fresh ``TPESampler`` per trial, which keeps no state between trials that matters here (TPE
    reads the history from the study each time).
    """

    def __init__(self, seed: int, **tpe_kwargs) -> None:
        self.seed = seed
        self._tpe_kwargs = tpe_kwargs
        self._current = optuna.samplers.TPESampler(seed=self.trial_seed(-1), **tpe_kwargs)

    def trial_seed(self, number: int) -> int:
        return int(np.random.SeedSequence([self.seed, number + 1]).generate_state(1)[0])

    def before_trial(self, study, trial) -> None:
        self._current = optuna.samplers.TPESampler(seed=self.trial_seed(trial.number), **self._tpe_kwargs)
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()


def open_study(storage: str, name: str, seed: int, tune: TuneConfig):
    """Create the study or resume it. Each trial's sampler stream comes from ``(seed, trial number)``
    (:class:`TrialSeededTPESampler`), so neither a resumed study nor a second worker replays earlier
    trials. ``seed`` seeds only the sampler: the fit's seed is part of the problem (see :func:`setup_key`)."""
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=tune.pruner_warmup_steps
    )
    # rdb_storage connects first (an unreachable server is one line), retries the schema race, and sends
    # heartbeats that free a killed worker's trial on other machines
    study = optuna.create_study(
        storage=rdb_storage(storage), study_name=name, direction="minimize", pruner=pruner, load_if_exists=True
    )
    study.sampler = TrialSeededTPESampler(seed)
    return study


def fail_trials_of_dead_workers(study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker is known dead (same machine, process gone: a SIGKILL, a
    crash), so that a resume at once does not wait for Optuna's heartbeat grace period (2 x the interval)
    to free them. A trial of a live or unknown worker (another machine) is left to the heartbeat."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if isinstance(worker, dict) and known_dead(worker):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
    if failed:
        log.warning("trial(s) %s were left RUNNING by a worker that died: marked FAIL", failed)
    return failed


class StopRequested(KeyboardInterrupt):
    """Ctrl-C, raised by the study itself at a fold boundary (never inside LightGBM or the storage); a
    ``KeyboardInterrupt``, so that no ``except Exception`` on the way swallows it."""


class Interrupt:
    """SIGINT while the study runs. The first asks it to stop at the next fold boundary: the running trial
    is marked FAIL, the finished ones are kept and written up, the study resumes later. A second one stops
    the fit at once, but only while a fit runs (:meth:`fitting`): raised inside Optuna's bookkeeping (``tell``,
    the storage), a ``KeyboardInterrupt`` leaves the trial RUNNING and Optuna failing with an
    ``UnboundLocalError``, as it did before; elsewhere it only says that the study is stopping."""

    def __init__(self) -> None:
        self.requested = False
        self.in_fit = False

    def handle(self, signum, frame) -> None:
        if not self.requested:
            self.requested = True
            log.warning("interrupt: stopping at the end of the current fold (Ctrl-C again to stop at once)")
        elif self.in_fit:
            self.in_fit = False
            raise KeyboardInterrupt
        else:
            log.warning("interrupt: already stopping; writing up the finished trials")

    @contextmanager
    def fitting(self, fitting: bool = True) -> Iterator[None]:
        """Mark a stretch of pure computation (``fitting=False``: storage I/O inside one), where a second
        Ctrl-C may raise."""
        outer, self.in_fit = self.in_fit, fitting
        try:
            yield
        finally:
            self.in_fit = outer

    def check(self, *_args) -> None:
        """Called after every fold (a ``report`` callback): stop here when asked."""
        if self.requested:
            self.in_fit = False  # unwinding through Optuna from here
            raise StopRequested("interrupted (Ctrl-C)")

    def stop_study(self, study, _trial) -> None:
        """An ``optimize`` callback: no new trial after an interrupt that came between trials."""
        if self.requested:
            study.stop()


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    """Install :class:`Interrupt` for SIGINT where Python's own handler is in place (the main thread of a
    command; not where SIGINT is ignored or an application has its own), and quiet Optuna's log of the
    trial it stops: one warning, no traceback."""
    interrupt = Interrupt()
    own = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    previous = signal.signal(signal.SIGINT, interrupt.handle) if own else None
    optuna_log = logging.getLogger("optuna.study._optimize")  # where Optuna logs a failed trial
    optuna_log.addFilter(_without_interrupt_traceback)
    try:
        yield interrupt
    finally:
        optuna_log.removeFilter(_without_interrupt_traceback)
        if own:
            signal.signal(signal.SIGINT, previous)


def _without_interrupt_traceback(record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
        record.exc_info, record.exc_text = None, None
    return True


def check_setup(study, key: dict) -> None:
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", key)
    elif stored != key:
        changed = {
            k: (stored.get(k), key.get(k)) for k in sorted(set(stored) | set(key)) if stored.get(k) != key.get(k)
        }
        raise UsageError(
            f"study {study.study_name!r} was run on other data, folds or fit settings "
            f"(stored, now: {changed}); pick another --study or --out"
        )


def ensure_baseline(study, evaluation: Evaluation, config: RunConfig, interrupt: Interrupt | None = None) -> dict:
    """The default parameters' loss (those ``full_run`` uses without ``--params``), computed once
    per study and kept in it, as the bar to beat. ``interrupt`` may stop it after a fold."""
    defaults = StackerConfig()
    interrupt = interrupt or Interrupt()
    if "baseline" not in study.user_attrs:
        log.info("baseline: default parameters, calibration %s", defaults.calibration)
        stacker = searched_config(config.stacker, dict(defaults.params), defaults.calibration)
        with interrupt.fitting():
            result = evaluation(stacker, interrupt.check)
        study.set_user_attr(
            "baseline", {**result.as_dict(), "params": dict(defaults.params), "calibration": defaults.calibration}
        )
        log.info("baseline OOF log loss %.5f", result.log_loss)
    return study.user_attrs["baseline"]


def make_objective(evaluation: Evaluation, config: RunConfig, interrupt: Interrupt | None = None):
    """The trial's loss; ``interrupt`` stops it after a fold (:class:`Interrupt`)."""
    stop = interrupt or Interrupt()

    def objective(trial) -> float:
        trial.set_user_attr("worker", worker_identity())  # a resume can tell this trial's worker died
        params, calibration = suggest_stacker(trial)

        def report(value: float, step: int) -> None:
            stop.check()
            with stop.fitting(False):  # the storage: no KeyboardInterrupt in there
                trial.report(value, step)
                prune = trial.should_prune()
            if prune:
                raise optuna.TrialPruned(f"running log loss {value:.5f} after fold {step}")

        stacker = searched_config(config.stacker, params, calibration)
        with stop.fitting():
            result: FoldResult = evaluation(stacker, report)
        for key, value in result.as_dict().items():
            trial.set_user_attr(key, value)
        return result.log_loss

    return objective


def trial_counts(study) -> dict[str, int]:
    states = [t.state for t in study.trials]
    return {
        "total": len(states),
        **{
            s.name.lower(): states.count(s)
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
        },
    }


def best_choice(study, baseline: dict) -> dict:
    """The best completed trial, or the defaults when no trial beat them (never worse than defaults)."""
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    if best is not None and best.value <= baseline["log_loss"]:
        params, calibration = split_trial_params(best.params)
        return {
            "params": params,
            "calibration": calibration,
            "value": float(best.value),
            "source": f"trial {best.number}",
            "per_fold": best.user_attrs.get("per_fold"),
        }
    return {
        "params": dict(baseline["params"]),
        "calibration": baseline["calibration"],
        "value": float(baseline["log_loss"]),
        "source": "defaults (no trial beat them)",
        "per_fold": baseline["per_fold"],
    }


def param_importances(study) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's (PED-ANOVA) importances, or None and why: they need two completed trials."""
    if trial_counts(study)["complete"] < 2:
        return None, "fewer than 2 completed trials"
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}, None
    except (ValueError, RuntimeError) as exc:  # e.g. every completed trial has the same loss
        return None, f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- outputs


def write_best_params(path: Path, choice: dict, study, baseline: dict) -> Path:
    """In the format ``pipelines.config.params_file.load_params_file`` (and so ``full_run --params``) reads."""
    payload = {
        "params": choice["params"],
        "calibration": choice["calibration"],
        "value": choice["value"],
        "n_trials": len(study.trials),
        "study": study.study_name,
        "source": choice["source"],
        "per_fold": choice["per_fold"],
        "baseline_value": baseline["log_loss"],
    }
    return atomic_write_text(path, json.dumps(payload, indent=2))


def render_report(
    study,
    choice: dict,
    baseline: dict,
    counts: dict,
    wall_s: float,
    importances: dict | None,
    importance_note: str | None,
    plots: dict[str, list[Path]],
    out: Path,
) -> str:
    """The study's Markdown: the gain over the defaults, its trials and time, the best parameters."""
    trials_s = sum((t.duration.total_seconds() for t in study.trials if t.duration is not None), 0.0)
    gain = baseline["log_loss"] - choice["value"]
    lines = [
        f"# Stacker tuning: study `{study.study_name}`",
        "",
        "Objective: calibrated, nested out-of-fold log loss on the run's saved folds (lower is better).",
        "",
        "| | OOF log loss |",
        "|---|---|",
        f"| baseline (default parameters, calibration {baseline['calibration']}) | {baseline['log_loss']:.5f} |",
        f"| best ({choice['source']}, calibration {choice['calibration']}) | {choice['value']:.5f} |",
        f"| improvement | {gain:+.5f} |",
        "",
        (
            f"- trials: {counts['total']} in the study ({counts['complete']} complete, {counts['pruned']} pruned, "
            f"{counts['fail']} failed)"
        ),
        f"- wall time of this invocation: {wall_s:.1f} s; all trials of the study together: {trials_s:.1f} s",
        f"- best per-fold losses: {', '.join(f'{v:.4f}' for v in choice['per_fold'] or [])}",
        f"- fold features, fitted in each training fold of every trial: {fold_feature_note(study)}",
        f"- use it: `python -m pipelines.full_run --params {out / 'best_params.json'}`",
        "",
        "## Best parameters",
        "",
        "| parameter | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in choice["params"].items()],
    ]
    return "\n".join(lines + _importance_lines(importances, importance_note) + _plot_lines(plots)) + "\n"


def _importance_lines(importances: dict | None, note: str | None) -> list[str]:
    """The parameter-importance table, or why it was not computed."""
    lines = ["", "## Parameter importances", ""]
    if importances:
        return lines + [
            "| parameter | importance |",
            "|---|---|",
            *[f"| {k} | {v:.3f} |" for k, v in importances.items()],
        ]
    return lines + [f"Not computed: {note}."]


def _plot_lines(plots: dict[str, list[Path]]) -> list[str]:
    """A link to each plot's files and its first image inline."""
    lines = ["", "## Plots", ""]
    for name, files in plots.items():
        lines.append(f"- {name}: " + ", ".join(f"[{f.name}]({f.name})" for f in files))
        lines.append(f"\n![{name}]({files[0].name})\n")
    return lines


def fold_feature_note(study) -> str:
    """The fold features the study's trials fit (its setup key), by class name; "none" without."""
    specs = (study.user_attrs.get("setup") or {}).get("fold_features", {}).get("specs", [])
    return ", ".join(spec["class"].rsplit(".", 1)[-1] for spec in specs) or "none"


def write_outputs(study, baseline: dict, out: Path, wall_s: float) -> dict:
    from pipelines.reports.plots import save_optuna_plots

    counts = trial_counts(study)
    choice = best_choice(study, baseline)
    best_path = write_best_params(out / "best_params.json", choice, study, baseline)
    importances, note = param_importances(study)
    if note:
        log.info("parameter importances skipped: %s", note)
    plots = save_optuna_plots(study, out, importances, baseline["log_loss"])
    report = render_report(study, choice, baseline, counts, wall_s, importances, note, plots, out)
    atomic_write_text(out / "tuning_report.md", report)
    log.info(
        "best OOF log loss %.5f (%s) vs baseline %.5f; wrote %s",
        choice["value"],
        choice["source"],
        baseline["log_loss"],
        best_path,
    )
    return {
        "choice": choice,
        "baseline": baseline,
        "counts": counts,
        "importances": importances,
        "plots": {k: [str(p) for p in v] for k, v in plots.items()},
        "wall_s": wall_s,
    }


# --------------------------------------------------------------------------- entry points


def tune(
    config: RunConfig, tune_config: TuneConfig, sources: TrainingSourcesConfig | None = None, *, fold_cache: bool = True
) -> dict:
    """Prepare the inputs once, run (or resume) the study, write best_params.json, plots and report.
    ``sources.fold_seeds`` > 1: each trial's loss is the mean over that many grouped CV repetitions.
    ``fold_cache``: fit each fold feature once per fold for all trials (False refits it in every trial,
    with the same results; kept for ``benchmarks/fold_feature_cache.py``)."""
    start = time.perf_counter()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    sources = sources or TrainingSourcesConfig()
    storage = tune_config.storage or default_storage(out)
    sampler_seed = config.seed if tune_config.sampler_seed is None else tune_config.sampler_seed
    with storage_errors(storage):
        study = open_study(storage, tune_config.study, sampler_seed, tune_config)  # connects before any work
    model = model_inputs(config)
    if fold_cache:
        model = model.with_fold_cache()
    require_extras_loaded(model.inputs, sources)
    evaluation = Evaluation.of(model, config, sources.fold_seeds)
    with storage_errors(storage), interruptible() as interrupt:
        check_setup(study, setup_key(evaluation, config))
        fail_trials_of_dead_workers(study)
        log.info(
            "study %r: %d trial(s) so far; adding up to %s trial(s), timeout %s s",
            study.study_name,
            len(study.trials),
            tune_config.n_trials,
            tune_config.timeout,
        )
        baseline = ensure_baseline(study, evaluation, config, interrupt)  # interrupted: nothing to write
        try:
            study.optimize(
                make_objective(evaluation, config, interrupt),
                n_trials=tune_config.n_trials,
                timeout=tune_config.timeout,
                show_progress_bar=config.progress,
                catch=(lgb.basic.LightGBMError,),
                callbacks=[interrupt.stop_study],
            )
        except KeyboardInterrupt:  # the finished trials are in the storage: report them, resume later
            interrupt.requested = True
        if interrupt.requested:
            log.warning("interrupted: writing the results of the trials finished so far")
        summary = write_outputs(study, baseline, out, time.perf_counter() - start)
    summary.update(study=study, interrupted=interrupt.requested)
    return summary
