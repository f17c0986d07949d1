r"""Samplers: which items each process takes, for training and for evaluation (Appendix B).

:class:`StreamSampler` hands each process its share of every global batch of the endless
training stream (:class:`~seqflows.data.TrainingSequences`), so that the batch of a step is the
same whatever the number of processes, and a resumed run continues the stream exactly.
:class:`EvaluationSampler` splits a fixed set (:class:`~seqflows.data.FixedSequences`) across
processes without the padding of ``DistributedSampler`` (which would count some sequences
twice).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler

__all__ = [
    "EvaluationSampler",
    "StreamSampler",
    "split_indices",
]


class StreamSampler(Sampler[int]):
    r"""This process's indices of the training stream, for steps start_step .. num_steps - 1.

    At step s, process ``rank`` of ``world_size`` takes the items
    (s * world_size + rank) * batch_size + j, j < batch_size: the global batch of step s is
    the same whatever the number of processes, and setting ``start_step`` to the step reached
    continues the stream exactly. (With Lightning, keep it from substituting a
    ``DistributedSampler``: ``Trainer(use_distributed_sampler=False)``.)

    Arguments:
        batch_size: Batch size per process.
        num_steps: Total number of optimisation steps.
        start_step: First step to produce (for resuming); settable.
        rank: Index of this process.
        world_size: Number of processes.

    Example:
        >>> list(StreamSampler(batch_size=2, num_steps=2, rank=1, world_size=2))
        [2, 3, 6, 7]
    """

    def __init__(
        self,
        batch_size: int,
        num_steps: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or num_steps < 0:
            raise ValueError(
                f"batch_size must be positive and num_steps non-negative, got {batch_size} and "
                f"{num_steps}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size - 1, got {rank} of {world_size}")
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    @property
    def start_step(self) -> int:
        """First step produced."""
        return self._start_step

    @start_step.setter
    def start_step(self, step: int) -> None:
        if not 0 <= step <= self.num_steps:
            raise ValueError(f"start_step must be in 0..{self.num_steps}, got {step}")
        self._start_step = int(step)

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.num_steps):
            first = (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)

    def __len__(self) -> int:
        return (self.num_steps - self.start_step) * self.batch_size


def split_indices(count: int, rank: int, world_size: int) -> list[int]:
    r"""Process ``rank``'s share of ``count`` items: rank, rank + W, rank + 2W, ..., no padding.

    Example:
        >>> split_indices(5, 1, 2)
        [1, 3]
    """
    if count < 0 or not 0 <= rank < world_size:
        raise ValueError(
            f"need count >= 0 and 0 <= rank < world_size, got {count}, {rank}, {world_size}"
        )
    return list(range(rank, count, world_size))


class EvaluationSampler(Sampler[int]):
    r"""Process ``rank``'s share of an evaluation set (:func:`split_indices`), without padding:
    every item is counted exactly once over all processes, so reduce sums, not means.

    Example:
        >>> list(EvaluationSampler(5, rank=0, world_size=2))
        [0, 2, 4]
    """

    def __init__(self, count: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = split_indices(count, rank, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
