r"""The data of a training run: the training stream and the validation set, split across
processes (:class:`SequenceDataModule`), and the frames and conditions of a batch
(:func:`split_batch`).
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

__all__ = ["SequenceDataModule", "split_batch"]


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


class SequenceDataModule(pl.LightningDataModule):
    r"""The training stream and the validation set of a configuration, split across processes.

    ``data``: what :func:`~seqflows.app.resolution.resolve_data` read for training (None: read
    when the module is built); ``train_source``: the training sequences, when built already.

    Every process takes ``train.batch_size / world_size`` items of each global batch of the
    stream (:class:`~seqflows.data.StreamSampler`), starting at the restored global step, so a
    resumed run continues with exactly the batches an uninterrupted run would have seen.
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
