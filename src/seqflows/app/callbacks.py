r"""The callbacks of a training run and its checkpoint I/O plugin.

* :class:`StepTimer` logs throughput and the share of time spent waiting for data;
  :class:`ProgressLines` writes progress lines for a log and :class:`RunEstimate` says once how
  long the run takes;
* :class:`DivergenceMonitor` warns of a diverged model whose numbers are still finite;
* :class:`LastCheckpoint` writes the resume point ``last.ckpt`` (also on a stop request),
  :class:`BestCheckpoint` keeps ``best.ckpt`` across moved run folders, and :class:`ResumedRun`
  applies the configuration's learning rate on resume;
* :class:`AtomicCheckpointIO` writes and reads every checkpoint through
  :mod:`seqflows.app.checkpoints` (atomic, checked).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, ProgressBar

from .checkpoints import read_checkpoint, save_checkpoint
from .datamodule import split_batch
from .interrupt import Interrupted, StopRequest
from .progress import Progress, estimate_line, say

__all__ = [
    "DIVERGED_BELOW",
    "DIVERGED_DROP",
    "AtomicCheckpointIO",
    "BestCheckpoint",
    "DivergenceMonitor",
    "LastCheckpoint",
    "ProgressLines",
    "ResumedRun",
    "RunEstimate",
    "StepTimer",
]


class StepTimer(pl.Callback):
    r"""Logs throughput and the share of each step spent waiting for data.

    ``time/data_share`` is the time between the end of a call of the task (one or more steps)
    and the start of the next (the data loader, plus Lightning's own work between calls) over
    the whole time; ``time/frames_per_second`` counts the scored frames of all processes. Both
    are logged once ``log_every`` steps were timed.
    """

    def __init__(self, scored_frames_per_sequence: int) -> None:
        self.scored_frames = scored_frames_per_sequence
        self._end: float | None = None
        self._start = 0.0
        self._wait = 0.0
        self._busy = 0.0
        self._steps = 0
        self._sequences = 0
        self._first_step = 0
        self.history: list[dict[str, float]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Any, batch_index: int
    ) -> None:
        self._start = time.perf_counter()
        self._first_step = trainer.global_step
        if self._end is not None:
            self._wait += self._start - self._end

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        task: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_index: int,
    ) -> None:
        self._end = time.perf_counter()
        self._busy += self._end - self._start
        self._steps += trainer.global_step - self._first_step
        self._sequences += split_batch(batch)[0].shape[0] * trainer.world_size  # of all steps
        if self._steps >= trainer.log_every_n_steps:
            total = self._wait + self._busy
            rate = self._sequences * self.scored_frames / total
            values = {"time/data_share": self._wait / total, "time/frames_per_second": rate}
            task.log_dict(values)
            self.history.append({"step": float(trainer.global_step), **values})
            self._wait = self._busy = 0.0
            self._steps = self._sequences = 0

    def on_validation_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self._end = None  # validation is not time spent waiting for training data


class ProgressLines(ProgressBar):
    r"""Training progress for a log (where a redrawn bar would be one endless line): a line
    every ``interval`` seconds and one at the end, on stderr, with the step, the share done, the
    time elapsed and left (at the rate of this session), the loss and the validation score::

        train: 200/600 steps (33%), 0:45 elapsed, 1:30 left, loss 61.2, validation nats/dim 2.31

    Lightning's own bar (tqdm) serves terminals; this one replaces it elsewhere.
    """

    NAMES = {"train/loss": "loss", "val/nats_per_dim": "validation nats/dim"}

    def __init__(self, interval: float = 15.0) -> None:
        super().__init__()
        self.interval = interval
        self.enabled = True
        self._progress: Progress | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if self.enabled:
            self._progress = Progress(
                trainer.max_steps,
                "train",
                "steps",
                initial=trainer.global_step,
                interval=self.interval,
                bar=False,
            )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        task: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_index: int,
    ) -> None:
        if self._progress is not None:
            # The metrics are read (on a GPU: waited for) only for a line that is written.
            if self._progress.due():
                self._progress.set_postfix(self._metrics(trainer))
            self._progress.update_to(trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if self._progress is not None and not trainer.sanity_checking:
            self._progress.set_postfix(self._metrics(trainer))

    def on_train_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if self._progress is not None:
            self._progress.set_postfix(self._metrics(trainer))
            self._progress.close()
            self._progress = None

    def _metrics(self, trainer: pl.Trainer) -> str:
        values = trainer.progress_bar_metrics
        return ", ".join(
            f"{self.NAMES.get(key, key)} {float(value):.4g}" for key, value in values.items()
        )


DIVERGED_BELOW = -50.0
DIVERGED_DROP = 20.0


class DivergenceMonitor(pl.Callback):
    r"""Warns when a validation score shows a diverged model whose numbers are still finite.

    Frames and series are scaled to [0, 1]: an untrained model scores about -1 nats/dim (an
    identity flow on its N(0, 1) base: between -1.42 and -0.92) and training raises the score,
    so no sane model scores below ``DIVERGED_BELOW`` (-50) nats/dim or falls more than
    ``DIVERGED_DROP`` (20) nats/dim below its best validation so far. A large learning rate
    gets there with finite numbers (lr 10 reached -1e24): the run goes on (it may recover, and
    non-finite states stop it anyway), but each such validation prints a warning, and
    ``warnings`` collects them for the training summary.

    Arguments:
        best: The callback that keeps the best validation score so far (``best_model_score``),
            restored on resume.
    """

    def __init__(self, best: Any) -> None:
        self.best = best
        self.warnings: list[str] = []

    def on_validation_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        score = trainer.callback_metrics.get("val/nats_per_dim")
        if trainer.sanity_checking or score is None:
            return
        score = float(score)
        previous = self.best.best_model_score  # updated after this hook (checkpoints go last)
        best = None if previous is None else float(previous)
        if math.isnan(score):
            reason = "not a number"
        elif score < DIVERGED_BELOW:
            reason = f"below {DIVERGED_BELOW:g}, which no sane model reaches"
        elif best is not None and score < best - DIVERGED_DROP:
            reason = f"{best - score:.3g} below the best so far ({best:.4g})"
        else:
            return
        message = (
            f"validation at step {trainer.global_step} scores {score:.4g} nats/dim, {reason}: "
            "the training has diverged; lower train.learning_rate"
        )
        self.warnings.append(message)
        if trainer.is_global_zero:
            say(f"warning: {message}")


class RunEstimate(pl.Callback):
    r"""Says once, on stderr, how long the run takes, as soon as its first steps are timed::

        seqflows: about 1.2 s a step: the 3000 steps of this run take about 1 h 0 min

    The first call of a session (allocation, warm-up) is not timed; the estimate comes after
    ``steps`` timed steps, or earlier once they took ``seconds`` (a slow step is known after
    one). A step that follows a validation is not timed, and validations are not counted.
    """

    def __init__(self, steps: int = 5, seconds: float = 10.0) -> None:
        self.steps = steps
        self.seconds = seconds
        self._timed_steps = 0
        self._timed_seconds = 0.0
        self._last_end: float | None = None
        self._first_step: int | None = None
        self._call_start = 0  # the global step at the start of the current call
        self._said = False

    def on_train_batch_start(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Any, batch_index: int
    ) -> None:
        self._call_start = trainer.global_step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        task: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_index: int,
    ) -> None:
        if self._said:
            return
        now = time.perf_counter()
        if self._first_step is None:
            self._first_step = self._call_start  # the step this session started from
        elif self._last_end is not None:
            self._timed_steps += trainer.global_step - self._call_start
            self._timed_seconds += now - self._last_end
        self._last_end = now
        enough = self._timed_steps >= self.steps or (
            self._timed_steps >= 1 and self._timed_seconds >= self.seconds
        )
        if enough and trainer.global_step < trainer.max_steps:
            self._said = True
            if trainer.is_global_zero:
                per_step = self._timed_seconds / self._timed_steps
                steps = trainer.max_steps - self._first_step
                say(estimate_line(per_step, steps, resumed=self._first_step > 0))

    def on_validation_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self._last_end = None  # the next step's time would hold the validation's


class LastCheckpoint(Checkpoint):
    r"""Writes ``last.ckpt``, the resume point: every ``every`` steps, at the last step, and when a
    stop was requested (SIGTERM, SIGINT: ``stop``, see :mod:`seqflows.app.interrupt`).

    A resume point is a step boundary after that step's validation: when a validation falls on the
    step (every ``val_every`` steps), the write waits for its end, so that a run killed in between
    and resumed validates that step as an uninterrupted run does and selects the same best
    checkpoint. Being a :class:`~lightning.pytorch.callbacks.Checkpoint`, it comes after the
    best-checkpoint callback, whose state (best score and path) ``last.ckpt`` therefore holds.

    On a stop request every process stops at the same step (the request is reduced over them):
    ``last.ckpt`` is written and :class:`~seqflows.app.interrupt.Interrupted` raised.
    """

    def __init__(
        self, path: Path, every: int, val_every: int, stop: StopRequest | None = None
    ) -> None:
        self.path = Path(path)
        self.every = every
        self.val_every = val_every
        self.stop = stop
        self._saved_step = -1
        self._pending = False  # a write waits for the end of this step's validation

    def _save(self, trainer: pl.Trainer) -> None:
        self._pending = False
        if trainer.global_step != self._saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # full: a resume point
            self._saved_step = trainer.global_step

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if self.stop is not None:
            self.stop.install()  # over Lightning's SIGTERM handler, which stops mid-validation

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        task: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_index: int,
    ) -> None:
        step = trainer.global_step
        if self._pending:  # the validation that was due did not run
            self._save(trainer)
        # The last step too: a checkpoint of the end of the training loop would not continue
        # cleanly when max_steps is raised on resume.
        due = step % self.every == 0 or step >= trainer.max_steps
        if step % min(self.val_every, trainer.max_steps) == 0 and trainer.enable_validation:
            self._pending = due
            return  # after the validation: on_validation_end
        if due:
            self._save(trainer)
        self._stop_if_requested(trainer)

    def on_validation_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self._pending:
            self._save(trainer)
        self._stop_if_requested(trainer)

    def on_train_end(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self._save(trainer)

    def _stop_if_requested(self, trainer: pl.Trainer) -> None:
        if self.stop is None or trainer.global_step >= trainer.max_steps:
            return  # a finished run ends normally
        requested = self.stop.signal_number or 0
        if trainer.world_size > 1:  # every process stops at the same step
            mine = torch.tensor(requested, device=trainer.strategy.root_device)
            requested = int(trainer.strategy.reduce(mine, reduce_op="max"))
        if requested:
            self._save(trainer)
            for logger in trainer.loggers:  # the curves up to this step (CSV buffers them)
                logger.save()
            raise Interrupted(requested)


class BestCheckpoint(ModelCheckpoint):
    r"""``best.ckpt``: a :class:`~lightning.pytorch.callbacks.ModelCheckpoint` whose state (best
    score and path) a resume restores also when the run folder has moved.

    Lightning keeps that state only when the folder is the one the checkpoint was written in, and
    would then replace ``best.ckpt`` at the next validation, better or not. Here the state is kept
    whenever this folder holds ``best.ckpt``, with its paths moved here; without ``best.ckpt`` (a
    resume from another run's checkpoint) the next validation writes one.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        folder = Path(self.dirpath)
        if not (folder / f"{self.filename}{self.FILE_EXTENSION}").is_file():
            return

        def here(path: Any) -> Any:
            return str(folder / Path(path).name) if path else path

        state = dict(state_dict)
        state["dirpath"] = self.dirpath
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = here(state[key])
        if "best_k_models" in state:
            state["best_k_models"] = {here(k): v for k, v in state["best_k_models"].items()}
        super().load_state_dict(state)


class ResumedRun(pl.Callback):
    r"""What a resumed run needs beyond Lightning's restore: the learning rate of the
    configuration. (The logs carry the optimizer step: the task keeps Lightning's count of
    batches that stepped at it, :meth:`~seqflows.app.task.SequenceTask.on_train_batch_start`.)

    Lightning restores the optimizer's and the scheduler's state, rates included, after the task
    has configured them from the configuration: a rate changed on resume would be silently
    replaced by the stored one. The rate becomes ``learning_rate`` here; a schedule keeps its
    shape and its place: the cosine schedule's current factor ((1 + cos(pi * step / T_max)) / 2)
    is applied to the new rate, and ``T_max`` stays the ``train.max_steps`` the run started
    with. An unchanged rate is not touched (the resume stays bit-exact).
    """

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                base = group.get("initial_lr", group["lr"])
                if base == self.learning_rate:
                    continue
                group["lr"] = self.learning_rate * (group["lr"] / base if base else 1.0)
                if "initial_lr" in group:
                    group["initial_lr"] = self.learning_rate
        for scheduler_config in trainer.lr_scheduler_configs:
            scheduler = scheduler_config.scheduler
            scheduler.base_lrs = [self.learning_rate for _ in scheduler.base_lrs]
            scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


class AtomicCheckpointIO(TorchCheckpointIO):
    r"""Writes checkpoints through :func:`~seqflows.app.checkpoints.save_checkpoint` (finite
    state only, weights' checksum, temporary file and rename); reads with ``weights_only``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        save_checkpoint(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path, map_location=map_location or "cpu")
