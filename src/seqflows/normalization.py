r"""BatchNorm statistics in training mode: pooled over all time steps, or one set per time step.

The conditioners (Appendix B) and the SLVM's encoder and decoder (Fig. 6) normalize their
activations with BatchNorm. In evaluation mode BatchNorm uses running statistics and every
choice below computes the same function. In training mode the statistics come from the batch,
and which activations share statistics is a modelling choice:

* ``"pooled"``: one set of statistics over every frame (or window) of the batch, all time steps
  together: B * (T - 1) encoded frames and B * (T - k) windows in a flow's density direction.
  This is what a time-parallel implementation computes for free. A frame's training-mode shift
  and scale then depend on every frame of the batch, later ones and the frame itself included.
* ``"per_step"``: one set of statistics per time step, as the authors' step-by-step loop
  computed them: the encoder normalizes the B * k frames of the windows of step t (a frame
  that sits in k windows is encoded k times, once with each step's statistics), the decoder the
  B windows of step t, the SLVM's networks the B frames (or latents) of step t. The density of
  frame t in training mode then depends on no later frame. The running statistics receive one
  momentum update per time step, in time order, as the separate calls of that loop made them.

:func:`run_stack` runs an ``nn.Sequential`` whose BatchNorm layers use per-step statistics
when given the number of steps; its input holds the steps one after the other (step-major).

Activation checkpointing (``model.checkpoint_activations``). With ``checkpoint=True``,
:func:`run_stack` keeps only the input of each block (a convolution or linear layer and the
normalization and activation after it) for the backward pass, and the backward pass computes the
block again (:func:`recompute_in_backward`): less memory for one more forward pass of the stack.
The recomputation normalizes with the same batch statistics, and BatchNorm's running statistics
(and its count of batches) are not updated a second time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.utils.checkpoint import checkpoint as recompute_checkpoint

__all__ = [
    "batch_norm_per_step",
    "frozen_running_statistics",
    "recompute_in_backward",
    "run_stack",
]


def batch_norm_per_step(layer: _BatchNorm, x: Tensor, steps: int) -> Tensor:
    r"""``layer`` in training mode with one set of batch statistics per time step.

    Calls the layer once per time step, in time order, as the authors' step loop did: each
    step is normalized with its own batch statistics, and the running statistics get one
    momentum update per step. (One native call per step is faster on CPU than reductions over
    a grouped view, in the forward and the backward pass.)

    Arguments:
        layer: A BatchNorm layer (``nn.BatchNorm1d`` on (N, C) or ``nn.BatchNorm2d``).
        x: Activations of ``steps`` time steps one after the other, with shape
            (steps * N, C, *spatial): rows s * N .. (s + 1) * N - 1 belong to step s.
        steps: Number of time steps.

    Returns:
        The normalized activations, with the shape and memory format of ``x``.
    """
    if x.shape[0] % steps:
        raise ValueError(f"{x.shape[0]} rows cannot be split into {steps} time steps")
    per_step = [layer(step) for step in x.split(x.shape[0] // steps)]  # each step contiguous
    return torch.cat(per_step)


def run_stack(
    stack: nn.Sequential, x: Tensor, steps: int | None = None, checkpoint: bool = False
) -> Tensor:
    r"""Runs ``stack`` on x; with ``steps``, its BatchNorm layers in training mode normalize
    each time step with that step's statistics (:func:`batch_norm_per_step`).

    Arguments:
        stack: Layers applied one after the other.
        x: Input (steps * N, ...), step-major when ``steps`` is given.
        steps: Number of time steps in x, or None for pooled statistics (``stack(x)``).
        checkpoint: Keep only each block's input for the backward pass and recompute the
            block there (:func:`recompute_in_backward`); only while gradients are recorded.
    """
    if checkpoint and torch.is_grad_enabled():
        for block in _blocks(stack):
            x = recompute_in_backward(_run_layers, block, x, steps, modules=block)
        return x
    if steps is None:
        return stack(x)
    return _run_layers(list(stack), x, steps)


def _run_layers(layers: Sequence[nn.Module], x: Tensor, steps: int | None) -> Tensor:
    for layer in layers:
        if steps is not None and isinstance(layer, _BatchNorm) and layer.training:
            x = batch_norm_per_step(layer, x, steps)
        else:
            x = layer(x)
    return x


def _blocks(stack: nn.Sequential) -> list[list[nn.Module]]:
    """The layers of ``stack`` in blocks that each start with a convolution or linear layer."""
    blocks: list[list[nn.Module]] = []
    for layer in stack:
        if not blocks or isinstance(layer, (_ConvNd, nn.Linear)):
            blocks.append([])
        blocks[-1].append(layer)
    return [block for block in blocks if block]


def recompute_in_backward(
    function: Callable[..., Tensor], *args: object, modules: Sequence[nn.Module] = ()
) -> Tensor:
    r"""``function(*args)``, whose intermediate activations the backward pass recomputes.

    :func:`torch.utils.checkpoint.checkpoint` (non-reentrant): the forward pass keeps only the
    inputs; the backward pass runs ``function`` again (same autocast state and random state)
    and differentiates that. The BatchNorm layers in ``modules`` (and in their submodules)
    normalize the recomputation as the first pass did, but leave their running statistics
    alone (:func:`frozen_running_statistics`): they move once per step.
    """

    def contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), frozen_running_statistics(modules)

    return recompute_checkpoint(function, *args, use_reentrant=False, context_fn=contexts)


@contextlib.contextmanager
def frozen_running_statistics(modules: Sequence[nn.Module]) -> Iterator[None]:
    r"""Inside, the BatchNorm layers of ``modules`` (and of their submodules) update copies of
    their running statistics and count of batches, which are dropped on the way out: the layers
    compute what they compute outside (the same tensors, saved for the backward pass alike), and
    their buffers do not change."""
    names = ("running_mean", "running_var", "num_batches_tracked")
    layers = [
        layer for module in modules for layer in module.modules() if isinstance(layer, _BatchNorm)
    ]
    kept = [{name: getattr(layer, name) for name in names} for layer in layers]
    for layer, buffers in zip(layers, kept, strict=True):
        for name, buffer in buffers.items():
            if buffer is not None:
                setattr(layer, name, buffer.clone())
    try:
        yield
    finally:
        for layer, buffers in zip(layers, kept, strict=True):
            for name, buffer in buffers.items():
                if buffer is not None:
                    setattr(layer, name, buffer)
