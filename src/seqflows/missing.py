r"""Missing values of real-valued series: a NaN cell is a value that was not observed.

A model given sequences x (B, T, *event_shape) with NaN cells scores the observed values only:

* the inputs its networks see are *filled*: every NaN becomes 0, which after the standardisation
  of a series (z = (x - mean) / std, fitted on the observed training values) is the training
  mean of that dimension (:func:`split_missing`);
* the density of a step is the product over its dimensions given the past for the element-wise
  transforms of this package (affine, Eq. 5-6, and spline) and for the SLVM's diagonal
  p(v_t | z_t): log p(x_t | x_<t) = sum_d log p(x_{t,d} | x_<t). Leaving a missing x_{t,d} out
  of the sum is then its exact marginalisation, given the (filled) past
  (:func:`observed_sum`). This holds for a stack of M transforms too (2-AF): every transform is
  element-wise within a step, so y_{t,d} depends on x_{t,d} and the past only, and the inner
  transforms' windows hold the outer ones' outputs at missing cells, deterministic functions
  of the filled past: the density is exact for the model that conditions on the filled past;
* which values are missing is given to the conditioners as per-step conditions
  (:func:`observation_conditions`): at step t, the observation masks m_{t-1} and m_t (1:
  observed), so that a transform's window of conditions c_{t-k+1:t} holds the masks of every
  past value it sees and the SLVM's posterior at t knows which of v_t are real.

The SLVM's bound (ELBO, importance-weighted) leaves out the same terms of its diagonal
likelihood and element-wise flow; its KL terms stay (a bound on the observed values).

A transform that ties the dimensions of one step together (a flow within the step) has no such
factorisation: a missing dimension cannot be left out exactly. Such a model sets
``exact_marginals = False`` and :func:`require_elementwise` refuses gaps for it, naming the
model (the fallback hook: impute first, or train on complete steps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import check_finite
from .errors import DataError

__all__ = [
    "generation_masks",
    "observation_conditions",
    "observed_mean",
    "observed_sum",
    "require_elementwise",
    "split_missing",
]


def split_missing(x: Tensor, name: str = "x") -> tuple[Tensor, Tensor | None]:
    r"""The filled values and the observation mask of sequences with NaN gaps.

    Arguments:
        x: Sequences, with shape (B, T, *event_shape); NaN marks a missing value.
        name: The argument's name in the messages.

    Returns:
        x with every NaN replaced by 0 (the same tensor when nothing is missing) and the mask
        (B, T, *event_shape), True where a value is observed; None when nothing is missing.

    Raises:
        DataError: An infinite value (only NaN means missing), with its sequence and frame.

    Example:
        >>> filled, observed = split_missing(torch.tensor([[[1.0, float("nan")]]]))
        >>> filled.tolist(), observed.tolist()
        ([[[1.0, 0.0]]], [[[True, False]]])
    """
    if x.device.type == "meta" or not x.is_floating_point():
        return x, None
    missing = torch.isnan(x)
    if not bool(missing.any()):
        return x, None
    filled = torch.where(missing, torch.zeros((), dtype=x.dtype, device=x.device), x)
    check_finite(filled, name)
    return filled, ~missing


def observed_sum(terms: Tensor, observed: Tensor | None, event_dims: int) -> Tensor:
    r"""Per-frame sums of per-value log-density terms over the observed values only.

    Arguments:
        terms: (*, *event) per-value terms, e.g. (B, T', D).
        observed: The mask of the same values (True: observed), or None (all observed).
        event_dims: How many trailing dimensions form a frame.

    Returns:
        (*): the sums over each frame's observed values (0 for a frame with none).
    """
    if observed is not None:
        terms = torch.where(observed, terms, 0.0)
    return terms.flatten(-event_dims).sum(-1) if event_dims else terms


def observed_mean(objective: Tensor, observed: Tensor | None, values_per_frame: int) -> Tensor:
    r"""The training objective's mean per frame with gaps: sum(objective) * values_per_frame /
    (observed values), which is ``objective.mean()`` when ``observed`` (the per-frame counts,
    same shape as ``objective``) is None and 0 when nothing is observed (no gradient).

    Every observed value weighs the same, whatever the gaps of its frame.
    """
    if observed is None:
        return objective.mean()
    count = observed.sum().clamp(min=1).to(objective.dtype)
    return objective.sum() * values_per_frame / count


def observation_conditions(x: Tensor, conditions: Tensor | None = None) -> Tensor:
    r"""The conditions of sequences with gaps: ``conditions`` followed by the masks of the
    previous and of the current step, [c_t, m_{t-1}, m_t] (1: observed, 0: missing).

    Arguments:
        x: Sequences of vectors (B, T, D), NaN where missing.
        conditions: Their own conditions (B, T, A), or None.

    Returns:
        (B, T, A + 2 D), in x's floating-point dtype (float32 at least). The first step's
        m_{-1} is 1: no value before a sequence (or a crop) is known to be missing.
    """
    if x.dim() != 3:
        raise DataError(f"observation masks are for vector series (B, T, D), got {x.shape}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    current = (~torch.isnan(x)).to(dtype)
    previous = torch.cat([torch.ones_like(current[:, :1]), current[:, :-1]], dim=1)
    parts = [] if conditions is None else [conditions.to(dtype)]
    return torch.cat([*parts, previous, current], dim=-1)


def generation_masks(context: Tensor, length: int) -> Tensor:
    r"""The observation masks [m_{t-1}, m_t] of a generation from ``context`` (N, c, D), NaN
    where missing: the context's own, and 1 for the ``length`` generated steps, whose values
    are all there. Returns (N, c + length, 2 D)."""
    generated = context.new_zeros(context.shape[0], length, *context.shape[2:])
    return observation_conditions(torch.cat([context, generated], dim=1))


def require_elementwise(model: object, observed: Tensor | None) -> None:
    r"""Refuses gaps (``observed`` not None) for a model whose step density does not factorise
    over the dimensions (``exact_marginals = False``): a missing value cannot be left out."""
    if observed is not None and not getattr(model, "exact_marginals", True):
        raise DataError(
            f"{getattr(model, 'label', type(model).__name__)} ties the dimensions of a step "
            "together: a missing value cannot be left out of its density exactly; fill the "
            "gaps (impute) or train on complete steps"
        )
