r"""What every sequence model offers a training loop and an evaluation: its loss and its scores.

Both model families implement the same small protocol (:class:`SequenceModel`), so that a
training step, an evaluation or a benchmark calls the model and never asks which model it is:

* ``model.loss(x, generator=None, kl_weight=1.0, *, conditions=None)`` -> :class:`LossTerms`:
  the scalar to minimise and the per-frame terms to log. For flows
  (:class:`~seqflows.flows.FlowModel`) minus the mean exact log-likelihood of the scored frames
  (Eq. 7-9); for SLVMs (:class:`~seqflows.slvm.SLVM`) minus the mean ELBO (Eq. 18-20) of the
  frames it trains on.
* ``model.scores(x, generator=None, *, conditions=None)`` -> :class:`FrameScores`: the
  per-frame log-likelihood (or its ELBO) of the scored frames, what evaluation sums, and the
  flow's noise (Eq. 31's y).
* ``model.bound(x, num_samples, ...)``: per sequence, the exact log-likelihood of a flow or the
  importance-weighted bound of an SLVM; ``model.exact`` tells which.
* ``model.scores_and_bound(x, num_samples=0, ...)``: what evaluation reports, in one call:
  :meth:`scores` and, with ``num_samples`` >= 1, :meth:`bound` (None with 0).
* ``conditions``: keyword-only on every method above, (B, T, A) for a conditioned model, None
  (the default) otherwise: callers pass what they have and never branch on it.
* ``model.burn_in``: the context frames that are not scored.

Each family keeps one public name per idea beside these: a flow's per-frame log-likelihood is
``log_prob`` and an SLVM's per-frame ELBO ``elbo`` (with its terms, ``elbo_terms``); both sample
with ``sample``. What figures show (their rows, the paper's name of a model) is computed in
:mod:`seqflows.app.figures` from these outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "FlowOutput",
    "FrameScores",
    "LossTerms",
    "SequenceModel",
]


@dataclass
class FlowOutput:
    r"""What :meth:`~seqflows.flows.FlowModel.normalize` computes, aligned on the scored frames.

    Attributes:
        noise: y = u^M, with shape (B, T - burn_in, *event_shape).
        shifts: shift_m of each transform (outermost first), each (B, T - burn_in, *event_shape).
        scales: scale_m of each transform (outermost first), same shapes.
        log_abs_det: log |det dy_t/dx_t| of the whole stack per frame, with shape
            (B, T - burn_in): minus the sum over transforms and dimensions of log scale.
        inputs: The input u^m of each transform (outermost first: u^0 = x, u^1, ...), same
            shapes: with ``shifts`` and ``scales`` they give the rows of Fig. 4 and Fig. 9.
        element_log_abs_det: log |dy_{t,i}/dx_{t,i}| of every value (the stack is element-wise
            within a step), (B, T - burn_in, *event_shape): ``log_abs_det`` is its sum per
            frame; None where not computed.
    """

    noise: Tensor
    shifts: tuple[Tensor, ...]
    scales: tuple[Tensor, ...]
    log_abs_det: Tensor
    inputs: tuple[Tensor, ...]
    element_log_abs_det: Tensor | None = None


@dataclass
class LossTerms:
    r"""The training objective of a batch and its parts.

    Attributes:
        loss: The scalar to minimise: minus the mean per-frame objective, with the KL weighted
            by ``kl_weight`` for SLVMs (KL warm-up).
        objective: Per-frame objective of the trained frames, nats, (B, T'): log p(x_t | x_<t)
            for flows, the ELBO term (log-likelihood - KL + log-determinant) for SLVMs.
        flow: The flow's outputs (shift, scale, noise of every transform), or None.
        kl: Per-frame KL term of an SLVM, (B, T'), or None.
        log_likelihood: Per-frame log p(v_t | z_t) of an SLVM, (B, T'), or None.
        observed: Per-frame number of observed values of sequences with gaps (NaN cells,
            :mod:`seqflows.missing`), (B, T'): ``objective`` sums over those only and ``loss``
            is minus its sum per observed value times the values per frame; None: all observed.
    """

    loss: Tensor
    objective: Tensor
    flow: FlowOutput | None = None
    kl: Tensor | None = None
    log_likelihood: Tensor | None = None
    observed: Tensor | None = None


@dataclass
class FrameScores:
    r"""Per-frame scores of the scored frames (those after ``burn_in``), and what gave them.

    Attributes:
        log_prob: log p(x_t | x_<t) (flows, exact) or its ELBO (SLVMs), nats, (B, T - burn_in).
        noise: The flow's noise y of the same frames, (B, T - burn_in, *event_shape), or None.
        flow: The flow's outputs on those frames (shift, scale, input of every transform, Eq.
            15), or None (an SLVM without a flow).
        likelihood_loc: An SLVM's loc of p(v_t | z_t) at the posterior sample (v = y with a
            flow, else x), (B, T - burn_in, *event_shape); None for a flow.
        likelihood_scale: Its scale, same shape, or None.
        observed: The number of observed values of each scored frame of sequences with gaps
            (B, T - burn_in), whose ``log_prob`` covers those only; None: all observed.
    """

    log_prob: Tensor
    noise: Tensor | None = None
    flow: FlowOutput | None = None
    likelihood_loc: Tensor | None = None
    likelihood_scale: Tensor | None = None
    observed: Tensor | None = None


@runtime_checkable
class SequenceModel(Protocol):
    r"""The protocol of :class:`~seqflows.flows.FlowModel` and :class:`~seqflows.slvm.SLVM`."""

    event_shape: tuple[int, ...]
    exact: bool

    @property
    def burn_in(self) -> int: ...

    def loss(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
        *,
        conditions: Tensor | None = None,
    ) -> LossTerms: ...

    def scores(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> FrameScores: ...

    def bound(
        self,
        x: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        scored: int | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> Tensor: ...

    def scores_and_bound(
        self,
        x: Tensor,
        num_samples: int = 0,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        scored: int | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> tuple[FrameScores, Tensor | None]: ...
