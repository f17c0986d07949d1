r"""The data of a training run: the training stream and the validation set, split across
processes (:class:`SequenceDataModule`), the frames and conditions of a batch
(:func:`split_batch`), and the batches of the steps of one call (:func:`call_bounds`,
:func:`step_batches`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from ..data import Source
from ..data.samplers import EvaluationSampler, StreamSampler
from ..errors import ConfigError
from ..missing import observation_conditions
from .config import Config
from .datasets import evaluation_set, training_set
from .resolution import ResolvedData, resolve_data

__all__ = ["SequenceDataModule", "call_bounds", "split_batch", "step_batches"]


def split_batch(
    batch: Tensor | Sequence[Tensor], gaps: bool | None = False
) -> tuple[Tensor, Tensor | None]:
    r"""The frames (B, T, *event_shape) and the conditions (B, T, A) of a batch, None for a
    batch of frames alone; with ``gaps`` (``data.gaps``) the conditions end with the
    observation masks of each step and the one before
    (:func:`~seqflows.missing.observation_conditions`), (B, T, A + 2 D)."""
    frames, conditions = (batch, None) if isinstance(batch, Tensor) else batch
    if gaps:
        conditions = observation_conditions(frames, conditions)
    return frames, conditions


def step_batches(batch: Tensor | Sequence[Tensor], batch_size: int) -> list[Any]:
    r"""The batches of the steps of one call: a call's batch (k B, T, ...) (or a pair of it and
    its conditions) cut into k batches of ``batch_size`` B sequences, in order (views)."""
    if isinstance(batch, Tensor):
        return list(batch.split(batch_size))
    return [list(parts) for parts in zip(*(part.split(batch_size) for part in batch), strict=True)]


def call_bounds(
    start: int, stop: int, steps_per_call: int, cadences: Sequence[int]
) -> Iterator[tuple[int, int]]:
    r"""The steps [first, end) of each call from step ``start`` to ``stop``: at most
    ``steps_per_call`` steps, and a call ends at every multiple of each cadence (logging,
    validation, checkpoints), so that each of those falls after a call as with one step per call.

    Example:
        >>> list(call_bounds(3, 12, 4, [5]))
        [(3, 5), (5, 9), (9, 10), (10, 12)]
    """
    step = start
    while step < stop:
        end = min([stop, step + steps_per_call, *((step // c + 1) * c for c in cadences)])
        yield step, end
        step = end


class SequenceDataModule(pl.LightningDataModule):
    r"""The training stream and the validation set of a configuration, split across processes.

    ``data``: what :func:`~seqflows.app.resolution.resolve_data` read for training (None: read
    when the module is built); ``train_source``: the training sequences, when built already.

    Every process takes ``train.batch_size / world_size`` items of each global batch of the
    stream (:class:`~seqflows.data.StreamSampler`), starting at the restored global step, so a
    resumed run continues with exactly the batches an uninterrupted run would have seen. The
    loader yields the batches of the steps of one call of the task together
    (``steps_per_call`` of the task, :func:`call_bounds`), stacked.
    """

    def __init__(
        self,
        config: Config,
        data: ResolvedData | None = None,
        train_source: Source | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.data = resolve_data(config) if data is None else data
        self.train_source = train_source

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = training_set(self.config, self.data, self.train_source)
        self.validation_set = evaluation_set(
            self.config,
            "validation",
            count=self.config.train.val_sequences,
            conditions=bool(self.config.data.conditions),
            data=self.data,
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
        train = self.config.train
        cadences = [trainer.log_every_n_steps, train.val_every, train.checkpoint_every]
        steps = getattr(trainer.lightning_module, "steps_per_call", 1)
        calls = _Calls(sampler, steps, cadences)
        return self._loader(self.train_set, batch_sampler=calls)

    def val_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = EvaluationSampler(
            len(self.validation_set), rank=trainer.global_rank, world_size=trainer.world_size
        )
        batch_size = self.config.evaluate.batch_size
        return self._loader(self.validation_set, batch_size=batch_size, sampler=sampler)

    def _loader(self, dataset: Any, **batching: Any) -> DataLoader:
        """A loader of ``dataset`` with this run's workers; ``batching``: its ``batch_size`` and
        ``sampler``, or its ``batch_sampler``."""
        workers = self.config.data.num_workers
        return DataLoader(
            dataset,
            **batching,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )


class _Calls(Sampler[list[int]]):
    r"""The training run as one epoch: the indices of the batches of each call
    (:func:`call_bounds`) from the stream's ``start_step``, resumed at the restored step.

    Its length is the whole run's steps: on resume Lightning restores its count of batches (the
    task keeps it at the optimizer step, :meth:`~seqflows.app.task.SequenceTask.
    on_train_batch_start`) and ends the epoch when that count reaches the loader's length.
    """

    def __init__(self, stream: StreamSampler, steps_per_call: int, cadences: list[int]) -> None:
        self.stream = stream
        self.steps_per_call = steps_per_call
        self.cadences = cadences

    def __iter__(self) -> Iterator[list[int]]:
        indices = iter(self.stream)
        size = self.stream.batch_size
        bounds = call_bounds(
            self.stream.start_step, self.stream.num_steps, self.steps_per_call, self.cadences
        )
        for first, end in bounds:
            yield [next(indices) for _ in range((end - first) * size)]

    def __len__(self) -> int:
        return self.stream.num_steps
