r"""Argument checks the models share: sequences (shape, dtype, finite values), event shapes, sizes.

Each raises the exception a PyTorch user expects (``TypeError`` for a wrong type or dtype,
``ValueError`` for a wrong value) with a message that names the argument and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .conditioning import check_conditions
from .errors import DataError

__all__ = [
    "check_dtype",
    "check_event_shape",
    "check_finite",
    "check_sample_arguments",
    "check_sequence",
    "check_sizes",
]


def check_sizes(**sizes: int) -> None:
    """Raises a ValueError naming the first size (layers, units, channels) below 1."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def check_event_shape(event_shape: Sequence[int]) -> tuple[int, ...]:
    """``event_shape`` as a tuple of ints, every size at least 1."""
    shape = tuple(int(size) for size in event_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"event_shape must hold sizes of at least 1, got {tuple(event_shape)}")
    return shape


def check_sequence(x: Tensor, event_shape: tuple[int, ...], name: str) -> None:
    """Refuses anything but a floating-point tensor shaped (B, T, *event_shape)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {x.dtype}; scale uint8 frames to "
            "[0, 1] first"
        )
    if x.dim() != 2 + len(event_shape) or tuple(x.shape[2:]) != event_shape:
        dims = ", ".join(str(size) for size in event_shape)
        raise ValueError(
            f"{name} must be shaped (B, T, {dims}) for event shape {event_shape}, "
            f"got {tuple(x.shape)}"
        )


def check_dtype(x: Tensor, module: nn.Module, name: str) -> None:
    r"""Refuses input of another floating-point dtype than the module's parameters.

    PyTorch's layers refuse it too (``mat1 and mat2 must have the same dtype``); this says
    which argument and what to do. Under ``torch.autocast`` the parameters and the input stay
    float32, so mixed precision passes.
    """
    reference = next(module.parameters(), None)
    if reference is not None and x.dtype != reference.dtype:
        raise TypeError(
            f"{name} is {x.dtype} but the model's parameters are {reference.dtype}: convert "
            f"one to the other (e.g. {name}.to({reference.dtype}) or model.to({x.dtype}))"
        )


def check_finite(x: Tensor, name: str) -> None:
    r"""Refuses NaN or infinite values, with the (sequence, frame) of the first one.

    One ``isfinite`` reduction per call (on a GPU it waits for the input: once per batch). In
    training mode a NaN would reach the BatchNorm running statistics and spoil every later
    evaluation of the model, so the check runs before anything else. Tensors without values
    (on the ``meta`` device, which propagates shapes, dtypes and devices only) pass.
    """
    if x.device.type == "meta":
        return
    finite = torch.isfinite(x.flatten(2)).all(-1)  # (B, T)
    if not bool(finite.all()):
        sequence, frame = (int(index) for index in (~finite).nonzero()[0])
        raise DataError(
            f"{name} holds NaN or infinite values (first in sequence {sequence}, frame {frame})"
        )


def check_sample_arguments(
    model: nn.Module,
    num_sequences: int,
    length: int,
    context: Tensor | None,
    conditions: Tensor | None,
) -> int:
    r"""The checks of a model's ``sample(num_sequences, length, context, ..., conditions)``.

    Refuses sizes below 1, a context that is not (B, c, *event_shape) of the model's dtype with
    B = ``num_sequences``, and conditions that do not fit (B, c + length, A). ``model`` has
    ``event_shape`` and ``condition_dim``. Returns c, the context's frames (0 without one).
    """
    check_sizes(num_sequences=num_sequences, length=length)
    known = 0
    if context is not None:
        check_sequence(context, model.event_shape, "context")
        check_dtype(context, model, "context")
        if context.shape[0] != num_sequences:
            raise ValueError(
                f"num_sequences is {num_sequences} but context has {context.shape[0]} sequences"
            )
        known = context.shape[1]
    check_conditions(conditions, model.condition_dim, num_sequences, known + length)
    return known
