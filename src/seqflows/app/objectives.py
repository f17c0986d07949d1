r"""One training objective for every model: per-frame log-likelihood or ELBO, and what to log.

Flows (:class:`~seqflows.flows.FlowModel`) have an exact per-frame log-likelihood (Eq. 7-9);
SLVMs (:class:`~seqflows.slvm.SLVM`) a per-frame ELBO (Eq. 18-20). Either way the loss is minus
the mean over scored frames and sequences, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..flows import FlowModel, FlowOutput
from ..slvm import SLVM

__all__ = [
    "FrameObjective",
    "frame_objective",
    "model_label",
]


@dataclass
class FrameObjective:
    r"""Per-frame objective of the scored frames and its parts.

    Attributes:
        value: log p(x_t | x_<t) (flows) or the ELBO term (SLVMs), nats, (B, T - burn_in).
        flow: The flow's outputs (shift, scale, noise of every transform), or None.
        kl: KL term of each scored frame (SLVMs), (B, T - burn_in), or None.
        log_likelihood: log p(v_t | z_t) of each scored frame (SLVMs), or None.
    """

    value: Tensor
    flow: FlowOutput | None
    kl: Tensor | None = None
    log_likelihood: Tensor | None = None


def frame_objective(
    model: nn.Module,
    x: Tensor,
    generator: torch.Generator | None = None,
    training: bool = False,
) -> FrameObjective:
    r"""The per-frame objective of ``model`` on sequences x (B, T, *event_shape).

    ``generator`` drives the posterior samples of SLVMs (flows are deterministic). With
    ``training``, the frames of the training objective (an SLVM's ``train_frames``: every frame
    of the crop for the baseline, as the authors trained it); otherwise the scored frames.
    """
    if isinstance(model, FlowModel):
        out = model.normalize(x)
        with torch.autocast(x.device.type, enabled=False):  # float32 density (mixed precision)
            value = model.base.log_prob(out.noise.float()) + out.log_abs_det.float()
        return FrameObjective(value, out)
    if isinstance(model, SLVM):
        terms = model.training_terms(x, generator) if training else model.elbo_terms(x, generator)
        return FrameObjective(terms.elbo, terms.flow, terms.kl, terms.log_likelihood)
    raise TypeError(f"no objective for {type(model).__name__}")


def model_label(model: nn.Module) -> str:
    """The paper's name of a model: ``1-AF``, ``2-AF``, ``SLVM``, ``SLVM w/ 1-AF``, ..."""
    if isinstance(model, SLVM):
        return "SLVM" if model.flow is None else f"SLVM w/ {model.num_transforms}-AF"
    return f"{model.num_transforms}-AF"
