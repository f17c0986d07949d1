r"""The training and evaluation sets of a run: the endless training stream of random crops and
the fixed validation and test sets, built from the configuration and what
:func:`~seqflows.app.resolution.resolve_data` read from the data.

Training crops and noise come from ``train.seed``; the fixed sets draw theirs from
``data.seed``, so evaluation is deterministic (the authors' was not). With ``data.conditions``
the items are (frames, conditions) pairs, crops of both from the same frames.
"""

from __future__ import annotations

from ..data import FixedSequences, Source, TrainingSequences
from .config import Config
from .resolution import ResolvedData, event_shape_of, preprocessing_of, resolve_data
from .sources import build_source

__all__ = ["evaluation_set", "training_set"]


def training_set(
    config: Config, data: ResolvedData | None = None, source: Source | None = None
) -> TrainingSequences:
    r"""The endless, reproducible training stream (random crops of ``data.length`` frames).

    Arguments:
        config: The experiment.
        data: What :func:`~seqflows.app.resolution.resolve_data` read for training (None: read
            now).
        source: The training sequences when the caller has built them already (checked
            against the data then), else built from ``config.data``.
    """
    if data is None:
        data = resolve_data(config)
    if source is None:
        source = build_source(config.data, "train")
    event_shape_of(source, config, data)
    return TrainingSequences(
        source,
        length=data.length,
        seed=config.train.seed,
        preprocessing=preprocessing_of(data),
        conditions=bool(config.data.conditions),
    )


def evaluation_set(
    config: Config,
    split: str,
    count: int | None = None,
    conditions: bool = False,
    data: ResolvedData | None = None,
) -> FixedSequences:
    r"""A fixed evaluation set: the same crops and noise every time (seed ``data.seed``).

    Arguments:
        config: The experiment.
        split: ``validation``, ``test``, ``train`` (fixed crops of training sequences, to
            measure overfitting as the paper's Table 3; simulators draw them from the ``train``
            stream of ``data.seed``, which training never sees) or ``all`` (every sequence of
            an array).
        count: Sequences (None: the whole split, or the configured number for simulators).
        conditions: Items are (frames, conditions (length, A)) pairs (``data.conditions`` must
            name them); without it, the frames alone, whose conditions
            :meth:`~seqflows.data.FixedSequences.with_conditions` still gives.
        data: What :func:`~seqflows.app.resolution.resolve_data` read for this split, or for
            training when ``split`` is ``validation`` (None: read now, for ``split``).
    """
    if data is None:
        data = resolve_data(config, split)
    source = build_source(config.data, split)
    event_shape_of(source, config, data)
    if count is None and source.stored:  # a file or a store: all of it
        count = len(source)
    elif count is None:
        count = data.validation_sequences if split == "validation" else data.test_sequences
    return FixedSequences(
        source,
        length=data.evaluation_length,
        seed=config.data.seed,
        stream=split,
        count=count,
        crop=config.evaluate.crop,
        preprocessing=preprocessing_of(data),
        conditions=conditions,
    )
