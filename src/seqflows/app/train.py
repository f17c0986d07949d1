r"""``seqflows train``: a configuration in, a run folder out.

The run folder holds ``config.yaml`` (the resolved configuration), ``checkpoints/last.ckpt``
(every ``train.checkpoint_every`` steps and at the end), ``checkpoints/best.ckpt`` (best
validation nats/dim), and ``logs/version_N/`` (CSV and TensorBoard). ``--resume`` continues from
``last.ckpt`` (or a given checkpoint) with the optimizer, loop and data-stream state.
"""

from __future__ import annotations

import math
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomically
from .checkpoints import checkpoint_step
from .config import Config
from .datasets import build_source, event_shape_of
from .objectives import model_label
from .runtime import check_batch_fits, retain_freed_memory

__all__ = [
    "train",
]


def train(
    config: Config, out: str | Path, resume: str | None = None, progress: bool = True
) -> dict[str, Any]:
    r"""Trains the model of ``config`` with Lightning and writes the run folder ``out``.

    Arguments:
        config: The experiment.
        out: Run folder (created).
        resume: ``"last"`` (``out/checkpoints/last.ckpt`` when it exists), a checkpoint path, or
            None (start afresh).
        progress: Show the progress bar.

    Returns:
        Paths of the checkpoints, the best validation score and throughput measurements.
    """
    try:
        import lightning.pytorch as pl
    except ModuleNotFoundError:
        raise RuntimeError(
            "seqflows train needs Lightning: pip install 'seqflows[train]'"
        ) from None
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from .task import (
        AtomicCheckpointIO,
        DivergenceMonitor,
        LastCheckpoint,
        SequenceDataModule,
        SequenceTask,
        StepTimer,
    )

    train_config = config.train
    allocator = train_config.allocator == "retain" and retain_freed_memory()
    out = Path(out)
    checkpoint_path = _resume_path(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "config.yaml", _to_yaml(config))
    pl.seed_everything(train_config.seed, workers=True, verbose=False)

    event_shape = event_shape_of(build_source(config.data, "train"), config)
    check_batch_fits(config, event_shape)
    task = SequenceTask(config.to_dict(), list(event_shape))
    datamodule = SequenceDataModule(config)
    start_step = 0 if checkpoint_path is None else checkpoint_step(checkpoint_path)
    if start_step >= train_config.max_steps:
        print(
            f"seqflows: {checkpoint_path} is already at step {start_step} "
            f"(train.max_steps={train_config.max_steps}): nothing to train",
            flush=True,
        )
        return {"run": str(out), "last_checkpoint": str(checkpoint_path), "steps": start_step}
    scored = config.data.length - task.model.burn_in
    if scored < 1:
        raise ValueError(
            f"data.length={config.data.length} leaves no frame to score: the model uses "
            f"{task.model.burn_in} context frames"
        )
    timer = StepTimer(scored)
    checkpoints = out / "checkpoints"
    best = ModelCheckpoint(
        dirpath=checkpoints,
        filename="best",
        monitor="val/nats_per_dim",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = LastCheckpoint(checkpoints / "last.ckpt", train_config.checkpoint_every)
    divergence = DivergenceMonitor(best)
    csv_logger = CSVLogger(out, name="logs")
    loggers = [csv_logger, TensorBoardLogger(out, name="logs", version=csv_logger.version)]
    trainer = pl.Trainer(
        default_root_dir=out,
        max_steps=train_config.max_steps,
        max_epochs=-1,
        accelerator=train_config.accelerator,
        devices=train_config.devices,
        num_nodes=train_config.num_nodes,
        strategy=train_config.strategy,
        sync_batchnorm=train_config.sync_batchnorm,
        precision=train_config.precision,
        val_check_interval=min(train_config.val_every, train_config.max_steps),
        check_val_every_n_epoch=None,
        log_every_n_steps=train_config.log_every,
        num_sanity_val_steps=1,
        callbacks=[best, last, timer, divergence, LearningRateMonitor(logging_interval="step")],
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        enable_progress_bar=progress,
        enable_model_summary=progress,
    )
    if trainer.is_global_zero:
        _print_start(config, task, trainer, allocator, start_step)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.13
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # resuming
        trainer.fit(task, datamodule=datamodule, ckpt_path=checkpoint_path, weights_only=True)
    best_score = None if best.best_model_score is None else float(best.best_model_score)
    return {
        "run": str(out),
        "last_checkpoint": str(checkpoints / "last.ckpt"),
        "best_checkpoint": best.best_model_path or None,
        "best_validation_nats_per_dim": best_score
        if best_score is not None and math.isfinite(best_score)
        else None,
        "warnings": divergence.warnings,
        "steps": trainer.global_step,
        "throughput": timer.history,
        "log_dir": csv_logger.log_dir,
        "is_global_zero": trainer.is_global_zero,
    }


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


def _print_start(
    config: Config, task: Any, trainer: Any, allocator: bool, start_step: int
) -> None:
    """Says where and how training runs (users silently train on CPU for days otherwise)."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    parameters = sum(p.numel() for p in task.model.parameters())
    print(
        f"seqflows: training {model_label(task.model)} ({parameters:,} parameters) on "
        f"{config.data.dataset} {list(task.event_shape)}; device {device} ({name or 'cpu'}), "
        f"{trainer.world_size} process(es), precision {config.train.precision}, "
        f"{torch.get_num_threads()} threads, allocator "
        f"{'retain' if allocator else 'system'}; steps {start_step} -> {config.train.max_steps}",
        flush=True,
    )


def _to_yaml(config: Config) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
