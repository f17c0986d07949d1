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
  momentum update per time step, in time order, as k separate calls would have made them.

:func:`run_stack` runs an ``nn.Sequential`` whose BatchNorm layers use per-step statistics
when given the number of steps; its input holds the steps one after the other (step-major).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "BATCH_NORM_STATISTICS",
    "BatchNormStatistics",
    "batch_norm_per_step",
    "check_statistics",
    "run_stack",
]

BatchNormStatistics = Literal["pooled", "per_step"]
BATCH_NORM_STATISTICS: tuple[str, ...] = ("pooled", "per_step")


def check_statistics(batch_norm: str) -> None:
    """Raises ValueError unless ``batch_norm`` is one of :data:`BATCH_NORM_STATISTICS`."""
    if batch_norm not in BATCH_NORM_STATISTICS:
        raise ValueError(f"batch_norm must be one of {BATCH_NORM_STATISTICS}, got {batch_norm!r}")


def batch_norm_per_step(layer: _BatchNorm, x: Tensor, steps: int) -> Tensor:
    r"""``layer`` in training mode with one set of batch statistics per time step.

    Arguments:
        layer: A BatchNorm layer (``nn.BatchNorm1d`` on (N, C) or ``nn.BatchNorm2d``).
        x: Activations of ``steps`` time steps one after the other, with shape
            (steps * N, C, *spatial): rows s * N .. (s + 1) * N - 1 belong to step s.
        steps: Number of time steps.

    Returns:
        The normalized activations, same shape (and memory format) as ``x``. The running
        statistics get ``steps`` momentum updates, step 0 first.
    """
    if x.shape[0] % steps:
        raise ValueError(f"{x.shape[0]} rows cannot be split into {steps} time steps")
    grouped = x.unflatten(0, (steps, x.shape[0] // steps))  # (steps, N, C, *spatial)
    reduced = [1] + list(range(3, grouped.dim()))  # N and the spatial dims
    variance, mean = torch.var_mean(grouped, dim=reduced, unbiased=False, keepdim=True)
    normalized = (grouped - mean) * torch.rsqrt(variance + layer.eps)
    if layer.affine:
        shape = (1, 1, -1) + (1,) * (grouped.dim() - 3)
        normalized = normalized * layer.weight.view(shape) + layer.bias.view(shape)
    if layer.track_running_stats and layer.running_mean is not None:
        count = grouped.numel() // (steps * grouped.shape[2])  # values behind each statistic
        _update_running_statistics(
            layer,
            mean.detach().flatten(1).float(),
            variance.detach().flatten(1).float() * count / max(count - 1, 1),
        )
    return normalized.flatten(0, 1)


@torch.no_grad()
def _update_running_statistics(layer: _BatchNorm, means: Tensor, variances: Tensor) -> None:
    r"""``steps`` sequential momentum updates: running <- (1 - m) running + m stat_s, s = 0, 1, ...

    Arguments:
        means, variances: Per-step batch statistics (unbiased variance), (steps, C).
    """
    steps = means.shape[0]
    layer.num_batches_tracked.add_(steps)
    if layer.momentum is None:  # cumulative moving average, one sample per step
        for s in range(steps):
            factor = 1.0 / float(layer.num_batches_tracked - steps + s + 1)
            layer.running_mean.lerp_(means[s].to(layer.running_mean.dtype), factor)
            layer.running_var.lerp_(variances[s].to(layer.running_var.dtype), factor)
        return
    keep = 1.0 - layer.momentum
    # Step s's statistic is later multiplied by keep once per following step.
    weights = layer.momentum * keep ** torch.arange(steps - 1, -1, -1, dtype=means.dtype)
    weights = weights.to(means.device).unsqueeze(1)  # (steps, 1)
    for buffer, values in ((layer.running_mean, means), (layer.running_var, variances)):
        buffer.mul_(keep**steps).add_((weights * values).sum(0).to(buffer.dtype))


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
