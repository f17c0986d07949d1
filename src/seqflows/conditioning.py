r"""Conditioning on what is known: per-step actions or covariates c_{1:T} beside the frames.

A conditioned model (``condition_dim`` A > 0 in its configuration) takes, beside sequences x of
shape (B, T, *event_shape), conditions c of shape (B, T, A) aligned with them: c_t is what is
known when x_t is produced (the action taken at step t, the covariates of step t). Which steps
each part of a model sees:

* A transform's shift and scale at step t depend on the window x_{t-k}, ..., x_{t-1} and on
  c_{t-k+1}, ..., c_t: the k conditions ending with the current one. The density stays causal
  in x (x_t enters no shift or scale of steps <= t) and c_t changes nothing before step t.
  In ``padded`` mode the k learned initial frames have zero conditions.
* The SLVM's prior p(z_t | z_{<t}, c_{<=t}), posterior q(z_t | v_{<=t}, z_{<t}, c_{<=t}) and
  likelihood p(v_t | z_t, c_t) see c_t at step t (and the earlier ones through the LSTM states).

Every conditioned network adds a linear projection of its conditions to an input it already
has (:func:`projection`), so an unconditioned model (A = 0) has exactly the parameters, state
dict keys and results it had before conditioning existed, and a conditioned model whose
projections are zero computes what the unconditioned model with its other parameters computes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "check_conditions",
    "condition_windows",
    "projection",
]


def projection(inputs: int, outputs: int) -> nn.Linear | None:
    r"""The linear map (inputs -> outputs) of (a window of) conditions that a network adds to
    one of its inputs; None for an unconditioned network (inputs = 0)."""
    if inputs < 0:
        raise ValueError(f"a condition projection needs at least 0 inputs, got {inputs}")
    return nn.Linear(inputs, outputs) if inputs else None


def check_conditions(
    conditions: Tensor | None,
    condition_dim: int,
    batch: int,
    length: int,
    name: str = "conditions",
) -> None:
    r"""Refuses conditions that do not fit a model with ``condition_dim`` A and its sequences.

    Arguments:
        conditions: None, or a floating-point tensor (B, T, A) of finite values.
        condition_dim: A (0: an unconditioned model, which takes no conditions).
        batch: B, the sequences they go with.
        length: T, the frames they go with.
        name: The argument's name in the messages.

    Raises:
        ValueError: Conditions missing for a conditioned model, given to an unconditioned one,
            of the wrong shape, or holding NaN or infinite values.
        TypeError: Conditions that are not a floating-point tensor.
    """
    if conditions is None:
        if condition_dim:
            raise ValueError(
                f"this model is conditioned (condition_dim={condition_dim}): pass {name} "
                f"shaped (B, T, {condition_dim}) beside the sequences"
            )
        return
    if not condition_dim:
        raise ValueError(
            f"this model is not conditioned (condition_dim=0) but {name} were given; build it "
            "with condition_dim=A to use them"
        )
    if not isinstance(conditions, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(conditions).__name__}")
    if not conditions.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {conditions.dtype}")
    expected = (batch, length, condition_dim)
    if tuple(conditions.shape) != expected:
        raise ValueError(
            f"{name} must be shaped (B, T, A) = {expected} for {batch} sequences of {length} "
            f"frames, got {tuple(conditions.shape)}"
        )
    if not bool(torch.isfinite(conditions).all()):
        raise ValueError(f"{name} hold NaN or infinite values")


def condition_windows(conditions: Tensor, window: int, steps: int) -> Tensor:
    r"""The conditions of every step of the density direction, k per step.

    Arguments:
        conditions: Conditions aligned with a history of S + k inputs, (B, S + k, A).
        window: k.
        steps: S; step s transforms input s + k.

    Returns:
        Windows (B, S, k, A): step s holds c_{s+1}, ..., c_{s+k}, the last its own.
    """
    return torch.stack([conditions[:, 1 + j : 1 + j + steps] for j in range(window)], dim=2)
