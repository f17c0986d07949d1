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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "batch_norm_per_step",
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


def run_stack(stack: nn.Sequential, x: Tensor, steps: int | None = None) -> Tensor:
    r"""Runs ``stack`` on x; with ``steps``, its BatchNorm layers in training mode normalize
    each time step with that step's statistics (:func:`batch_norm_per_step`).

    Arguments:
        stack: Layers applied one after the other.
        x: Input (steps * N, ...), step-major when ``steps`` is given.
        steps: Number of time steps in x, or None for pooled statistics (``stack(x)``).
    """
    if steps is None:
        return stack(x)
    for layer in stack:
        if isinstance(layer, _BatchNorm) and layer.training:
            x = batch_norm_per_step(layer, x, steps)
        else:
            x = layer(x)
    return x
