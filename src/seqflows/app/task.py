r"""Lightning pieces: the training task, the data module, callbacks and atomic checkpoint I/O.

The loss is the paper's: the mean over scored frames and sequences of the per-frame negative
log-likelihood (flows, Eq. 7-9) or negative ELBO (SLVMs, Eq. 20), summed over pixels. Validation
scores are sums and counts reduced across processes
(:class:`~seqflows.app.evaluation.SequenceScores`), and evaluation batches are split between
processes without padding. The posterior samples of SLVMs come from generators seeded by the
seed, the step and the process, so that they do not depend on the global random state.
A conditioned model's batches are (frames, conditions) pairs (``data.conditions``): every step
passes the conditions to the model with the frames.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, ProgressBar
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from ..data import Source
from ..data.samplers import EvaluationSampler, StreamSampler
from ..errors import ConfigError, NonFiniteError
from ..layout import cpu_gradient_layout
from ..metrics import temporal_correlation
from ..objective import LossTerms
from ..saving import model_config
from ..version import __version__
from .checkpoints import FORMAT, CheckpointError, build_model, read_checkpoint, save_checkpoint
from .config import Config
from .datasets import evaluation_set, preprocessing_of, training_set
from .evaluation import SequenceScores
from .interrupt import Interrupted, StopRequest
from .progress import Progress, estimate_line

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
    "SequenceDataModule",
    "SequenceTask",
    "StepTimer",
    "split_batch",
    "stable_seed",
]


def split_batch(batch: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor | None]:
    r"""The frames (B, T, *event_shape) and the conditions (B, T, A) of a batch, None for a
    batch of frames alone."""
    if isinstance(batch, Tensor):
        return batch, None
    frames, conditions = batch
    return frames, conditions


_XXPRIME_1, _XXPRIME_2, _XXPRIME_5 = (
    11400714785074694791,
    14029467366897019727,
    2870177450012600261,
)
_MASK = 2**64 - 1


def stable_seed(*keys: int) -> int:
    r"""A seed in [0, 2^63) from non-negative integer ``keys`` (step, process rank, ...).

    The xxHash-style combination that CPython 3.8+ uses to hash a tuple of small non-negative
    ints, written out so that the seeds never depend on the interpreter: the posterior samples
    of every run since seqflows 0.1 (which called ``hash``) stay the same.

    Example:
        >>> stable_seed(0, 10, 0) == hash((0, 10, 0)) % 2**63
        True
    """
    acc = _XXPRIME_5
    for key in keys:
        if not 0 <= key < 2**61 - 1:
            raise ValueError(f"seed keys must be integers in [0, 2^61 - 1), got {key}")
        acc = (acc + key * _XXPRIME_2) & _MASK
        acc = ((acc << 31) | (acc >> 33)) & _MASK
        acc = (acc * _XXPRIME_1) & _MASK
    acc = (acc + (len(keys) ^ (_XXPRIME_5 ^ 3527539))) & _MASK
    signed = acc - 2**64 if acc >= 2**63 else acc
    if signed == -1:
        signed = 1546275796
    return signed % 2**63


# Model settings that change how much memory training takes, not the model: a run may resume
# with another value.
MEMORY_SETTINGS = frozenset({"checkpoint_activations"})


class SequenceTask(pl.LightningModule):
    r"""Trains a flow (:class:`~seqflows.FlowModel`, by maximum likelihood) or an SLVM
    (:class:`~seqflows.SLVM`, by the ELBO).

    Arguments:
        config: The experiment, as :meth:`Config.to_dict` gives it (stored in checkpoints).
        event_shape: Frame shape (C, H, W) or (D,).
    """

    def __init__(self, config: Config, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.config = config  # stored once in every checkpoint, by on_save_checkpoint
        self.event_shape = tuple(int(size) for size in event_shape)
        self.model = build_model(self.config, self.event_shape)
        self.preprocessing = preprocessing_of(config.data)  # stored with the model
        self._scores: SequenceScores | None = None

    def setup(self, stage: str) -> None:
        """Before the strategy wraps the model (DDP): training on the CPU, the convolution
        weights take the strides of their gradients (:func:`~seqflows.layout.cpu_gradient_layout`),
        so that DDP's gradient buckets match them."""
        if self.trainer.strategy.root_device.type == "cpu":
            cpu_gradient_layout(self.model)

    def _generator(self, *keys: int) -> torch.Generator:
        """A generator seeded by ``keys`` and the process rank (SLVM posterior samples)."""
        seed = stable_seed(*keys, self.global_rank)
        return torch.Generator(device=self.device).manual_seed(seed)

    def training_step(self, batch: Tensor | Sequence[Tensor], batch_index: int) -> Tensor:
        r"""The model's loss on a batch (B, T, *event_shape) (or a pair of it and its
        conditions (B, T, A)); logs it and its parts."""
        x, conditions = split_batch(batch)
        generator = self._generator(self.config.train.seed, self.global_step)
        warmup = self.config.train.kl_warmup
        # KL warm-up: weight step/warmup on the KL (the logged numbers stay the ELBO).
        kl_weight = self.global_step / warmup if self.global_step < warmup else 1.0
        if conditions is None:
            terms = self.model.loss(x, generator, kl_weight=kl_weight)
        else:
            terms = self.model.loss(x, generator, kl_weight=kl_weight, conditions=conditions)
        loss = -terms.objective.mean()  # logged: minus the log-likelihood or ELBO
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"non-finite training loss at step {self.global_step}; lower the learning rate "
                "or use model.scale_map=soft"
            )
        dims = float(torch.Size(self.event_shape).numel())
        # Every process has the same number of sequences: the mean of means is the mean.
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        # nats/dim in the data's units, as validation (a standardised series: + log |dz/dx|)
        per_frame = terms.objective.detach().mean() + self.preprocessing.log_abs_det
        self.log("train/nats_per_dim", per_frame / dims, sync_dist=True)
        if self.global_step % self.config.train.log_every == 0:
            self._log_parts(terms)
        return terms.loss

    def _log_parts(self, terms: LossTerms) -> None:
        """Mean shift and scale of each transform, correlation of the noise, KL per time step."""
        flow = terms.flow
        if flow is not None:
            for index, (shift, scale) in enumerate(zip(flow.shifts, flow.scales, strict=True)):
                self.log(f"train/shift_mean_{index}", shift.detach().float().mean())
                self.log(f"train/scale_mean_{index}", scale.detach().float().mean())
            if flow.noise.shape[1] > 1:
                try:
                    correlation = temporal_correlation(flow.noise.detach().float())
                except ValueError:  # constant noise (a diverged model): undefined, not logged
                    pass
                else:
                    self.log("train/corr_noise", correlation)
        if terms.kl is not None:
            kl = terms.kl.detach().float().mean(0)  # (T',): users ask if it grows
            self.log("train/kl", kl.mean())
            self.log("train/log_likelihood", terms.log_likelihood.detach().float().mean())
            for t, value in enumerate(kl):
                self.log(f"train/kl_t{t}", value)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clips the gradient norm at ``train.gradient_clip`` (really) and logs it before."""
        limit = self.config.train.gradient_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm=limit)
        self.log("train/grad_norm", norm)

    def configure_optimizers(self) -> Any:
        r"""Adam (or SGD) at ``train.learning_rate``; with ``train.lr_schedule=cosine`` the rate
        falls as lr * (1 + cos(pi * step / max_steps)) / 2, to 0 at the last step."""
        train = self.config.train
        if train.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=train.learning_rate)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=train.learning_rate)
        if train.lr_schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.max_steps)
        scheduler = {"scheduler": schedule, "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_validation_epoch_start(self) -> None:
        self._scores = SequenceScores(self.event_shape, preprocessing=self.preprocessing)

    def validation_step(self, batch: Tensor | Sequence[Tensor], batch_index: int) -> None:
        x, conditions = split_batch(batch)
        generator = self._generator(self.config.data.seed, batch_index)
        self._scores.update(self.model, x, generator, conditions)

    def on_validation_epoch_end(self) -> None:
        """Reduces the sums of all processes, then logs nats/dim and the correlations."""
        values = self._scores.as_tensor().to(self.device)
        self._scores.load_tensor(self.trainer.strategy.reduce(values, reduce_op="sum"))
        summary = self._scores.summary()
        keys = ("nats_per_dim", "nats_per_dim_8bit", "bits_per_dim", "corr_x", "corr_noise")
        for key in (*keys, "frames_scored"):
            if summary[key] is not None:
                self.log(f"val/{key}", float(summary[key]), prog_bar=key == "nats_per_dim")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["seqflows"] = {
            "format": FORMAT,
            "version": __version__,
            "model_type": self.config.model.type,
            "config": self.config.to_dict(),
            "event_shape": list(self.event_shape),
            "preprocessing": self.preprocessing.record(),
        }
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuses a checkpoint of another model; restores the random number generators."""
        info = checkpoint.get("seqflows")
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise CheckpointError("not a seqflows checkpoint (no 'seqflows' entry)")
        stored = dataclasses.asdict(model_config(info["config"]["model"]))
        current = self.config.to_dict()["model"]
        different = sorted(
            key
            for key in current
            if stored.get(key) != current[key] and key not in MEMORY_SETTINGS
        )
        if different or list(info["event_shape"]) != list(self.event_shape):
            details = ", ".join(
                f"{key}: {stored.get(key)!r} vs {current[key]!r}" for key in different
            )
            raise CheckpointError(
                "the checkpoint holds another model than the configuration "
                f"(checkpoint vs configuration: {details or 'event_shape'} "
                f"{info['event_shape']} vs {list(self.event_shape)})"
            )
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


class SequenceDataModule(pl.LightningDataModule):
    r"""The training stream and the validation set of a configuration, split across processes.

    Every process takes ``train.batch_size / world_size`` items of each global batch of the
    stream (:class:`~seqflows.data.StreamSampler`), starting at the restored global step, so a
    resumed run continues with exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, config: Config, train_source: Source | None = None) -> None:
        super().__init__()
        self.config = config
        self.train_source = train_source

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = training_set(self.config, self.train_source)
        self.validation_set = evaluation_set(
            self.config,
            "validation",
            count=self.config.train.val_sequences,
            conditions=bool(self.config.data.conditions),
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world, rank = trainer.world_size, trainer.global_rank
        batch_size = self.config.train.batch_size
        if batch_size % world:
            raise ConfigError(
                f"train.batch_size={batch_size} cannot be split evenly between {world} processes"
            )
        sampler = StreamSampler(
            batch_size // world,
            num_steps=self.config.train.max_steps,
            start_step=trainer.global_step,
            rank=rank,
            world_size=world,
        )
        return self._loader(self.train_set, batch_size // world, _WholeRun(sampler))

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = EvaluationSampler(
            len(self.validation_set), rank=trainer.global_rank, world_size=trainer.world_size
        )
        return self._loader(self.validation_set, self.config.evaluate.batch_size, sampler)

    def _loader(self, dataset: Any, batch_size: int, sampler: Any) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )


class _WholeRun(Sampler[int]):
    r"""The training run as one epoch of ``num_steps`` batches, resumed from ``start_step``.

    On resume Lightning restores its count of the batches already seen in the epoch (the
    restored step) and ends the epoch when that count reaches the loader's length: the length
    must therefore be the whole run's, while the iteration yields only the remaining batches.
    """

    def __init__(self, stream: StreamSampler) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[int]:
        return iter(self.stream)

    def __len__(self) -> int:
        return self.stream.num_steps * self.stream.batch_size


class StepTimer(pl.Callback):
    r"""Logs throughput and the share of each step spent waiting for data.

    ``time/data_share`` is the time between the end of a step and the start of the next (the
    data loader, plus Lightning's own work between steps) over the whole time; ``time/frames_per_
    second`` counts the scored frames of all processes.
    """

    def __init__(self, scored_frames_per_sequence: int) -> None:
        self.scored_frames = scored_frames_per_sequence
        self._end: float | None = None
        self._start = 0.0
        self._wait = 0.0
        self._busy = 0.0
        self._steps = 0
        self.history: list[dict[str, float]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Any, batch_index: int
    ) -> None:
        self._start = time.perf_counter()
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
        self._steps += 1
        if self._steps == trainer.log_every_n_steps:
            total = self._wait + self._busy
            sequences = split_batch(batch)[0].shape[0] * trainer.world_size
            rate = self._steps * sequences * self.scored_frames / total
            values = {"time/data_share": self._wait / total, "time/frames_per_second": rate}
            task.log_dict(values)
            self.history.append({"step": float(trainer.global_step), **values})
            self._wait = self._busy = 0.0
            self._steps = 0

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
            print(f"seqflows: warning: {message}", file=sys.stderr, flush=True)


class RunEstimate(pl.Callback):
    r"""Says once, on stderr, how long the run takes, as soon as its first steps are timed::

        seqflows: about 1.2 s a step: the 3000 steps of this run take about 1 h 0 min

    The first step of a session (allocation, warm-up) is not timed; the estimate comes after
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
        self._said = False

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
            self._first_step = trainer.global_step - 1  # the step this session started from
        elif self._last_end is not None:
            self._timed_steps += 1
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
                print(
                    f"seqflows: {estimate_line(per_step, steps, resumed=self._first_step > 0)}",
                    file=sys.stderr,
                    flush=True,
                )

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
    configuration, and logs at the optimizer step.

    * Lightning restores the optimizer's and the scheduler's state, rates included, after the task
      has configured them from the configuration: a rate changed on resume would be silently
      replaced by the stored one. The rate becomes ``learning_rate`` here; a schedule keeps its
      shape and its place: the cosine schedule's current factor ((1 + cos(pi * step / T_max)) / 2)
      is applied to the new rate, and ``T_max`` stays the ``train.max_steps`` the run started
      with. An unchanged rate is not touched (the resume stays bit-exact).
    * The step that logs carry (Lightning's count of batches that stepped) comes out one short
      after a resume from a checkpoint written at the end of a validation when the validation
      cadence differs on resume; it is set to the optimizer step before the first batch logs
      (this callback must come before the learning-rate monitor).
    """

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate
        self._first_batch = True

    def on_train_start(self, trainer: pl.Trainer, task: pl.LightningModule) -> None:
        self._first_batch = True
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

    def on_train_batch_start(
        self, trainer: pl.Trainer, task: pl.LightningModule, batch: Any, batch_index: int
    ) -> None:
        if self._first_batch:  # one optimizer step per batch: the counts are equal
            trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step
            self._first_batch = False


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
