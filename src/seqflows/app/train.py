r"""``seqflows train``: a configuration in, a run folder out.

The run folder holds ``config.yaml`` (the configuration in effect), ``checkpoints/last.ckpt``
(every ``train.checkpoint_every`` steps, at the end and on SIGTERM or SIGINT),
``checkpoints/best.ckpt`` (best validation nats/dim), ``logs/version_N/`` (CSV and TensorBoard, one
per session), ``resumes.yaml`` (each resume: step, time, changed settings) and ``.lock``.
``--resume`` continues from ``last.ckpt`` (or a given checkpoint) with the optimizer, loop and
data-stream state; :mod:`seqflows.app.runs` has the rules of the folder and of resuming.
"""

from __future__ import annotations

import logging
import math
import platform
import signal
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomically
from ..errors import MissingDependency
from .checkpoints import checkpoint_step, read_checkpoint
from .config import Config
from .figures import model_label
from .interrupt import Interrupted, StopRequest, exit_on_sigint, signal_name
from .precision import emulated_bf16_warning, resolve_precision
from .progress import is_terminal, say
from .resolution import (
    ResolvedData,
    event_shape_of,
    inferred_settings,
    resolve_data,
    settings_in_effect,
)
from .runs import (
    RunFolderError,
    append_resume,
    check_run_folder_path,
    holds_run,
    is_launching_process,
    locked_run_folder,
    remove_run,
    remove_stale_temporaries,
    resume_changes,
)
from .runtime import check_batch_fits, check_model_fits, small_model_threads, steps_per_call
from .sources import build_source

__all__ = [
    "cluster_plugins",
    "train",
]


def train(
    config: Config,
    out: str | Path,
    resume: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    allocator: str | None = None,
) -> dict[str, Any]:
    r"""Trains the model of ``config`` with Lightning and writes the run folder ``out``.

    The folder is locked for the whole run, and removed again when the run is refused while it
    holds only its lock (:func:`~seqflows.app.runs.locked_run_folder`). SIGTERM and
    SIGINT stop the run at the next step boundary (the end of the current call of the task:
    ``train.steps_per_call``) with a resumable ``last.ckpt`` and raise
    :class:`~seqflows.app.interrupt.Interrupted` (:mod:`seqflows.app.interrupt`).

    Arguments:
        config: The experiment.
        out: Run folder (created).
        resume: ``"last"`` (``out/checkpoints/last.ckpt`` when it exists, else a fresh start), a
            checkpoint path, or None (a fresh start: refused in a folder that holds a run).
            Settings may change on resume only as :func:`~seqflows.app.runs.resume_changes`
            allows.
        progress: Show the progress, with the time left: Lightning's bar where stdout is a
            terminal, else a line every 15 s on stderr (a log stays readable).
        overwrite: Replace the run that ``out`` holds (:func:`~seqflows.app.runs.remove_run`).
        allocator: What the caller set the process's memory allocator to (``retain``:
            :func:`~seqflows.app.runtime.retain_freed_memory`), for the log; the library never
            sets it.

    The data settings left unset are read from the data first
    (:func:`~seqflows.app.resolution.resolve_data`), printed, and recorded in ``config.yaml``
    (:func:`~seqflows.app.resolution.settings_in_effect`); everything is checked against the
    data before Lightning starts.

    Returns:
        Paths of the checkpoints, the best validation score and throughput measurements.

    Raises:
        RunFolderError: ``out`` is a file, holds a run (without ``resume`` or ``overwrite``),
            is in use by another run, or its path is not valid UTF-8.
        ConfigError: A setting that does not fit the data, or a resume that changes settings
            it cannot change.
        Interrupted: SIGTERM or SIGINT; ``last.ckpt`` holds the run up to the step it names.
    """
    try:
        with exit_on_sigint():  # Lightning's imports: Ctrl-C ends the process at once
            import lightning.pytorch  # noqa: F401

            from . import task  # noqa: F401
    except ModuleNotFoundError:
        raise MissingDependency(
            "seqflows train needs Lightning: pip install 'seqflows[train]'"
        ) from None
    if resume is not None and overwrite:
        raise RunFolderError(
            "--resume continues the run of --out and --overwrite replaces it: give one"
        )
    out = Path(out)
    check_run_folder_path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file; the run folder must be a folder")
    launching = is_launching_process()
    data = resolve_data(config)  # before anything starts: errors, and what was read
    inferred = inferred_settings(config, data)
    if inferred and launching:
        settings = ", ".join(f"{key}={value}" for key, value in inferred.items())
        say(f"read from the data: {settings}")
    if not launching:  # another process of a data-parallel run: the launching one holds the lock
        return _train(config, data, out, resume, progress, launching, allocator)
    with locked_run_folder(out):  # removed again if refused while it holds only .lock
        if holds_run(out) and resume is None and not overwrite:
            raise RunFolderError(
                f"{out} holds a run already (config.yaml, checkpoints); continue it with --resume "
                "or replace it with --overwrite"
            )
        if overwrite and holds_run(out):
            removed = remove_run(out)
            say(f"--overwrite: removed {', '.join(removed)} of {out}")
        stale = remove_stale_temporaries(out)
        if stale:
            names = ", ".join(str(path.relative_to(out)) for path in stale)
            say(f"removed stale temporary files of killed writes: {names}")
        return _train(config, data, out, resume, progress, launching, allocator)


def _train(
    config: Config,
    data: ResolvedData,
    out: Path,
    resume: str | None,
    progress: bool,
    launching: bool,
    allocator: str | None,
) -> dict[str, Any]:
    """:func:`train` once the folder is ready (``launching``: this process owns it), with what
    was read from the data."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .callbacks import (
        AtomicCheckpointIO,
        BestCheckpoint,
        DivergenceMonitor,
        LastCheckpoint,
        ProgressLines,
        ResumedRun,
        RunEstimate,
        StepTimer,
    )
    from .datamodule import SequenceDataModule
    from .task import SequenceTask

    train_config = config.train
    checkpoint_path = _resume_path(out, resume)
    pl.seed_everything(train_config.seed, workers=True, verbose=False)
    train_source = build_source(config.data, "train")  # once: its frame shape, then its data
    event_shape = event_shape_of(train_source, config, data)
    settings = settings_in_effect(config, data)  # what the run records
    start_step, changes = 0, {}
    if checkpoint_path is not None:
        # Checked before anything else, also when there is nothing left to train.
        checkpoint = read_checkpoint(checkpoint_path)
        info = checkpoint["seqflows"]
        changes = resume_changes(
            info["config"], settings, info["event_shape"], list(event_shape), str(checkpoint_path)
        )
        start_step = int(checkpoint["global_step"])
        del checkpoint
    check_batch_fits(config, event_shape, length=data.length)
    check_model_fits(config, event_shape, condition_dim=data.condition_dim)
    if start_step >= train_config.max_steps:
        say(
            f"{checkpoint_path} is already at step {start_step} "
            f"(train.max_steps={train_config.max_steps}): nothing to train"
        )
        return {
            "run": _absolute(out),
            "last_checkpoint": _absolute(checkpoint_path),
            "steps": start_step,
        }
    if launching:
        write_text_atomically(out / "config.yaml", _to_yaml(settings))  # what is in effect
        if checkpoint_path is not None:
            append_resume(out, start_step, checkpoint_path, changes)

    task = SequenceTask(config, event_shape, data)
    datamodule = SequenceDataModule(config, data, train_source)
    timer = StepTimer(data.length - task.model.burn_in)  # >= 1: resolve_data checked
    checkpoints = out / "checkpoints"
    best = BestCheckpoint(
        dirpath=checkpoints,
        filename="best",
        monitor="val/nats_per_dim",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    csv_logger = CSVLogger(out, name="logs")
    loggers = [csv_logger, TensorBoardLogger(out, name="logs", version=csv_logger.version)]
    one_thread = small_model_threads(task.settings, task.model, event_shape)  # data.length read
    with StopRequest() as stop, _quiet_lightning(), one_thread as small:
        last = LastCheckpoint(
            checkpoints / "last.ckpt", train_config.checkpoint_every, train_config.val_every, stop
        )
        divergence = DivergenceMonitor(best)
        # Lightning's bar on a terminal; lines in a log, where a redrawn bar would be one line.
        lines = [ProgressLines()] if progress and not is_terminal(sys.stdout) else []
        estimate = [RunEstimate()] if progress else []  # the whole run's time, on stderr
        trainer = pl.Trainer(
            default_root_dir=out,
            max_steps=train_config.max_steps,
            max_epochs=-1,
            accelerator=train_config.accelerator,
            devices=train_config.devices,
            num_nodes=train_config.num_nodes,
            strategy=train_config.strategy,
            sync_batchnorm=train_config.sync_batchnorm,
            precision=resolve_precision(train_config.precision, train_config.accelerator),
            val_check_interval=min(train_config.val_every, train_config.max_steps),
            check_val_every_n_epoch=None,
            # not above the run's steps: Lightning warns of a log interval longer than the run
            log_every_n_steps=min(train_config.log_every, train_config.max_steps),
            num_sanity_val_steps=1,
            # best before last: last.ckpt holds the best-checkpoint state of its step
            callbacks=[
                best,
                last,
                timer,
                divergence,
                ResumedRun(train_config.learning_rate),
                *lines,
                *estimate,
            ],
            logger=loggers,
            plugins=[AtomicCheckpointIO(), *cluster_plugins()],
            use_distributed_sampler=False,
            enable_progress_bar=progress,
            enable_model_summary=progress,
        )
        task.steps_per_call = steps_per_call(
            task.settings, task.model, event_shape, trainer.world_size
        )
        if trainer.is_global_zero:
            _print_start(config, data, task, trainer, start_step, allocator, small is not None)
            slow = emulated_bf16_warning(train_config.precision, train_config.accelerator)
            if slow:
                say(f"warning: {slow}")
            if changes:
                changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
                say(f"resumed with changed settings: {changed}")
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
                warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6
                # the folder is ours: locked, and checked for another run above
                warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
                # the loader is resumable: it starts the stream at the restored step
                warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
                trainer.fit(
                    task, datamodule=datamodule, ckpt_path=checkpoint_path, weights_only=True
                )
        except Interrupted as interrupted:
            raise _interruption(interrupted.signal_number, out, trainer, stopped=True) from None
        except (KeyboardInterrupt, SystemExit) as error:
            # A second Ctrl-C (Lightning turns KeyboardInterrupt into exit status 1), or
            # Lightning's own stop on a SIGTERM that came before its handler was replaced.
            if stop.signal_number is None:
                raise
            number = signal.SIGTERM if isinstance(error, SIGTERMException) else signal.SIGINT
            raise _interruption(number, out, trainer, stopped=False) from None
    best_score = None if best.best_model_score is None else float(best.best_model_score)
    return {
        "run": _absolute(out),
        "last_checkpoint": _absolute(checkpoints / "last.ckpt"),
        "best_checkpoint": _absolute(best.best_model_path) if best.best_model_path else None,
        "best_validation_nats_per_dim": best_score
        if best_score is not None and math.isfinite(best_score)
        else None,
        "warnings": divergence.warnings,
        "steps": trainer.global_step,
        "throughput": timer.history,
        "log_dir": _absolute(csv_logger.log_dir),
        "is_global_zero": trainer.is_global_zero,
    }


# What Lightning says that is noise here: its advertisements, accelerators that are not used
# (seqflows prints the device it trains on itself) and the reason of a stop the summary gives.
_LIGHTNING_NOISE = (
    "💡 Tip:",
    "GPU available: False",
    "TPU available: False",
    "HPU available: False",
    "`Trainer.fit` stopped: `max_steps=",
)


class _LightningNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_LIGHTNING_NOISE)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hides the lines of ``_LIGHTNING_NOISE`` from Lightning's log while training."""
    noise = _LightningNoise()
    loggers = [
        logging.getLogger(name)
        for name in (
            "lightning.pytorch.utilities.rank_zero",
            "lightning.fabric.utilities.rank_zero",
        )
    ]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


def cluster_plugins() -> list[Any]:
    r"""Lightning plugins for the cluster: under SLURM, its environment without auto-requeue.

    Lightning's auto-requeue saves a checkpoint from within a signal handler, anywhere in a step,
    and resubmits the job; seqflows stops at a step boundary on SIGTERM instead (exit status 143)
    and the job script resumes with ``--resume`` (:mod:`seqflows.app.interrupt`).
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def _interruption(number: int, out: Path, trainer: Any, stopped: bool) -> Interrupted:
    """The :class:`Interrupted` to raise, with its one line on the first process only."""
    if not trainer.is_global_zero:
        return Interrupted(number)
    last = out / "checkpoints" / "last.ckpt"
    name = signal_name(number)
    if stopped:
        where = f"stopped by {name} at step {trainer.global_step}; {last} holds the run"
    elif last.is_file():
        step = checkpoint_step(last)
        where = f"stopped at once by {name}; {last} holds the run up to step {step}"
    else:
        where = f"stopped at once by {name}, before the first checkpoint"
    return Interrupted(number, f"{where}: run the same command with --resume to continue")


def _resume_path(out: Path, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume == "last":
        path = out / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    return path


def _precision(train_config: Any) -> str:
    """The precision in effect, and ``(auto)`` where ``auto`` chose it."""
    chosen = resolve_precision(train_config.precision, train_config.accelerator)
    return f"{chosen} (auto)" if train_config.precision == "auto" else chosen


def _print_start(
    config: Config,
    data: ResolvedData,
    task: Any,
    trainer: Any,
    start_step: int,
    allocator: str | None,
    small: bool = False,
) -> None:
    """Says where and how training runs (users silently train on CPU for days otherwise)."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    parameters = sum(p.numel() for p in task.model.parameters())
    say(
        f"training {model_label(task.model)} ({parameters:,} parameters) on "
        f"{data.dataset} {list(task.event_shape)}; device {device} ({name or 'cpu'}), "
        f"{trainer.world_size} process(es), precision {_precision(config.train)}, "
        + (
            "1 thread (a small vector model; OMP_NUM_THREADS=N chooses)"
            if small
            else f"{torch.get_num_threads()} threads"
        )
        + (f", allocator {allocator}" if allocator else "")
        + (f", up to {task.steps_per_call} steps per call" if task.steps_per_call > 1 else "")
        + f"; steps {start_step} -> {config.train.max_steps}"
    )


def _absolute(path: str | Path) -> str:
    """The absolute path of ``path`` (the summary's paths are all absolute, symlinks resolved)."""
    return str(Path(path).resolve())


def _to_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
