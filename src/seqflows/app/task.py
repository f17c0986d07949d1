r"""The Lightning training task: :class:`SequenceTask` trains a flow or an SLVM.

The loss is the paper's: the mean over scored frames and sequences of the per-frame negative
log-likelihood (flows, Eq. 7-9) or negative ELBO (SLVMs, Eq. 20), summed over pixels. Validation
scores are sums and counts reduced across processes
(:class:`~seqflows.app.evaluation.SequenceScores`), and evaluation batches are split between
processes without padding (:mod:`.datamodule`). The posterior samples of SLVMs come from
generators seeded by the seed, the step and the process (:func:`stable_seed`), so that they do
not depend on the global random state. A conditioned model's batches are (frames, conditions)
pairs (``data.conditions``): every step passes the conditions to the model with the frames.
The callbacks of a run are in :mod:`.callbacks`.

One call of :meth:`SequenceTask.training_step` may take several optimizer steps
(``steps_per_call``, :func:`~seqflows.app.runtime.steps_per_call`), each on its own batch of
the stream, by hand (Lightning's manual optimization), so that Lightning's work per call (a few
milliseconds: as long as a step of a small vector model) is shared by them; with one step per
call Lightning's automatic optimization takes it. Lightning's counts of batches are kept at the
optimizer step, so that logging, validation, checkpoints and resuming see the same steps.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..errors import NonFiniteError
from ..layout import cpu_gradient_layout
from ..metrics import temporal_correlation
from ..missing import observed_mean
from ..objective import LossTerms
from ..saving import model_config
from ..version import __version__
from .checkpoints import FORMAT, CheckpointError, build_model
from .config import Config
from .datamodule import split_batch, step_batches
from .evaluation import SequenceScores
from .resolution import ResolvedData, preprocessing_of, resolve_data, settings_in_effect
from .runs import flatten_settings

__all__ = ["SequenceTask", "stable_seed"]


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
        config: The experiment.
        event_shape: Frame shape (C, H, W) or (D,).
        data: What :func:`~seqflows.app.resolution.resolve_data` read for training (None: read
            now). The checkpoints record the settings in effect
            (:func:`~seqflows.app.resolution.settings_in_effect`).
    """

    def __init__(
        self, config: Config, event_shape: Sequence[int], data: ResolvedData | None = None
    ) -> None:
        super().__init__()
        self.config = config
        data = resolve_data(config) if data is None else data
        self.settings = settings_in_effect(config, data)  # stored in every checkpoint
        self.event_shape = tuple(int(size) for size in event_shape)
        self.model = build_model(config, self.event_shape, data.condition_dim)
        self.preprocessing = preprocessing_of(data)  # stored with the model
        self._scores: SequenceScores | None = None
        # set by seqflows.app.train.train (seqflows.app.runtime.steps_per_call) before fit
        self.steps_per_call = 1

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

    @property
    def automatic_optimization(self) -> bool:
        """Lightning's loop takes the optimizer step where a call takes one step (also every
        data-parallel run); :meth:`training_step` takes them by hand where it takes several."""
        return self.steps_per_call == 1

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        raise AttributeError("set steps_per_call instead (automatic: steps_per_call == 1)")

    def training_step(self, batch: Tensor | Sequence[Tensor], batch_index: int) -> Tensor | None:
        r"""The optimizer steps of one call: the batches of its steps are stacked, (k B, T,
        *event_shape) (or a pair of them and their conditions (k B, T, A)).

        With one step (automatic optimization) its loss (:meth:`step_loss`), which Lightning
        differentiates and steps. With several, each step in order as Lightning does one: the
        loss of its own batch, its gradient, the gradient's clipping
        (:meth:`on_before_optimizer_step`, after mixed precision's unscaling), the optimizer's
        step and the schedule's."""
        optimizer = self.optimizers()
        if self.automatic_optimization:
            self._log_rate(optimizer)
            return self.step_loss(batch)
        schedule = self.lr_schedulers()
        for step_batch in step_batches(batch, self._process_batch_size()):
            self._log_rate(optimizer)
            loss = self.step_loss(step_batch)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            if schedule is not None:
                schedule.step()
        return None

    def _log_rate(self, optimizer: Any) -> None:
        """Logs the learning rate this step uses, as Lightning's learning-rate monitor did
        (``lr-Adam``), where the loggers write this step's values."""
        if self._logs_this_step():
            rate = {f"lr-{type(optimizer.optimizer).__name__}": optimizer.param_groups[0]["lr"]}
            for logger in self.loggers:  # as written (self.log would round it to float32)
                logger.log_metrics(rate, step=self.global_step)

    def step_loss(self, batch: Tensor | Sequence[Tensor]) -> Tensor:
        r"""The model's loss on the batch of one step (B, T, *event_shape) (or a pair of it and
        its conditions (B, T, A)) at the current global step; logs it and its parts."""
        x, conditions = split_batch(batch, self.settings.data.gaps)
        generator = self._generator(self.config.train.seed, self.global_step)
        warmup = self.config.train.kl_warmup
        # KL warm-up: weight step/warmup on the KL (the logged numbers stay the ELBO).
        kl_weight = self.global_step / warmup if self.global_step < warmup else 1.0
        terms = self.model.loss(x, generator, kl_weight=kl_weight, conditions=conditions)
        dims = torch.Size(self.event_shape).numel()
        # logged: minus the log-likelihood or ELBO per frame (with gaps: per observed value x D)
        loss = -observed_mean(terms.objective, terms.observed, dims)
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"non-finite training loss at step {self.global_step}; lower the learning rate "
                "or use model.scale_map=soft"
            )
        if self._logs_this_step():
            # Every process has the same number of sequences: the mean of means is the mean.
            self.log("train/loss", loss, prog_bar=True, sync_dist=True)
            # nats/dim in the data's units, as validation (a standardised series: + log |dz/dx|,
            # with gaps its mean over the dimensions, as if every one were observed)
            per_frame = -loss.detach() + self.preprocessing.log_abs_det
            self.log("train/nats_per_dim", per_frame / dims, sync_dist=True)
            self._log_parts(terms)
        return terms.loss

    def _process_batch_size(self) -> int:
        """Sequences of one step's batch in this process."""
        return self.config.train.batch_size // self.trainer.world_size

    def on_train_batch_start(self, batch: Tensor | Sequence[Tensor], batch_index: int) -> None:
        r"""Sets Lightning's counts of batches to those of the last step of this call: one
        optimizer step per batch, as Lightning counts with automatic optimization. Logging
        (every ``log_every`` batches that stepped), validation (every ``val_every`` batches) and
        the end of the epoch then fall after the call that ends on their step
        (:func:`~seqflows.app.datamodule.call_bounds`), and the logs carry the optimizer step.
        """
        steps = split_batch(batch)[0].shape[0] // self._process_batch_size()
        loop = self.trainer.fit_loop.epoch_loop
        last = self.global_step + steps - 1  # the index of the call's last step
        loop._batches_that_stepped = last
        for counts in (loop.batch_progress.total, loop.batch_progress.current):
            counts.ready = last + 1
            counts.started = counts.processed = counts.completed = last  # incremented after

    def _logs_this_step(self) -> bool:
        r"""Whether the loggers write this step's values, by Lightning's rule (every
        ``train.log_every``-th optimizer step, counted from 1), or the step is the last.

        A ``self.log`` call costs Lightning's bookkeeping (a walk over the logged metric's
        state) whether it is written or not; for the default ``my_time_series`` model the three
        per-step values cost about as much CPU as its whole step (benchmarks/train_speed.py).
        They are logged only where they are written, and on the last step (whose loss the
        progress shows at the end): the progress bar's loss is that of the last logged step.
        Every process decides alike (the global step), so the reductions of ``sync_dist`` stay
        matched.
        """
        trainer = self._trainer
        if trainer is None:  # a task called on its own: self.log warns that it logs nothing
            return True
        step = self.global_step + 1  # Lightning's count of batches that stepped, + 1
        every = trainer.log_every_n_steps
        logged = every > 0 and step % every == 0
        return logged or step >= trainer.max_steps or trainer.should_stop

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

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clips the gradient norm at ``train.gradient_clip`` (after mixed precision's
        unscaling) and logs it before."""
        limit = self.config.train.gradient_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm=limit)
        if self._logs_this_step():
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
        if not self.automatic_optimization:  # training_step steps it
            return {"optimizer": optimizer, "lr_scheduler": schedule}
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step"},
        }

    def on_validation_epoch_start(self) -> None:
        self._scores = SequenceScores(self.event_shape, preprocessing=self.preprocessing)

    def validation_step(self, batch: Tensor | Sequence[Tensor], batch_index: int) -> None:
        x, conditions = split_batch(batch, self.settings.data.gaps)
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
            "config": self.settings.to_dict(),
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
        stored = flatten_settings(dataclasses.asdict(model_config(info["config"]["model"])))
        current = flatten_settings(self.settings.to_dict()["model"])
        different = sorted(
            key
            for key in current.keys() | stored.keys()
            if stored.get(key) != current.get(key) and key not in MEMORY_SETTINGS
        )
        if different or list(info["event_shape"]) != list(self.event_shape):
            details = ", ".join(
                f"{key}: {stored.get(key)!r} vs {current.get(key)!r}" for key in different
            )
            raise CheckpointError(
                "the checkpoint holds another model than the configuration "
                f"(checkpoint vs configuration: {details or 'event_shape'} "
                f"{info['event_shape']} vs {list(self.event_shape)})"
            )
        _step_counts(checkpoint, self.automatic_optimization)
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def _step_counts(checkpoint: dict[str, Any], automatic: bool) -> None:
    r"""Lightning counts the optimizer steps (the global step) in the progress of the
    automatic optimization or in the manual one's: a checkpoint written in the other mode
    (another ``train.steps_per_call``, or before there was one) has its count moved over."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic_progress = loop.get("epoch_loop.automatic_optimization.optim_progress", {})
    automatic_steps = automatic_progress.get("optimizer", {}).get("step")
    manual_steps = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    if automatic_steps is None or manual_steps is None:
        return
    source, target = (
        (manual_steps, automatic_steps) if automatic else (automatic_steps, manual_steps)
    )
    if source["total"]["completed"] and not target["total"]["completed"]:
        for key in ("total", "current"):
            target[key] = copy.deepcopy(source[key])
