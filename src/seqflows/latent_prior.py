r"""A flow across time on the latents of an SLVM: a non-Gaussian prior (beyond the paper).

The paper's SLVM prior p(z_t | z_{<t}) is a diagonal Gaussian whose loc and scale an LSTM reads
from z_{<t} (:class:`~seqflows.latent.LatentSequenceModel`). With ``prior_transforms`` that
Gaussian is pushed through M autoregressive transforms across time on z (the paper's future work:
"parameterizing the prior with autoregressive flows"). With transforms P_0 (outermost) ..
P_{M-1} of the latent sequence, each conditioned on a window of k past inputs,

    w^0 = z,  w^{m+1}_t = P_m^{-1}(w^m_t; w^m_{t-k:t-1})       normalize, all t at once
    u = w^M,  u_t ~ N(loc_t, scale_t),  (loc_t, scale_t) = LSTM(z_{<t})
    log p(z_t | z_{<t}) = log N(u_t; loc_t, scale_t) + sum_m log |det dw^{m+1}_t / dw^m_t|

Every transform is an :class:`~seqflows.transforms.AffineAutoregressiveTransform` (or a spline
one) on vectors of size latent_dim with ``context="padded"``: k learned initial latents start
every window, so z_1 has a window too and every step gets a density. Given z (a posterior
sample), u and the log-determinant of every step come out of one time-parallel pass; sampling
steps through time, keeping the window of the k last inputs of every transform, so that each
step costs the same whatever t is. With ``identity_init`` the untrained transforms are the
identity and the prior is the Gaussian one.

The KL term of the ELBO has no closed form under such a prior: the SLVM estimates it at the
posterior sample, KL_t ~ log q(z_t | ...) - log p(z_t | z_{<t}) (an unbiased estimate of the
same KL, so the ELBO's expectation is unchanged). The importance weights of the IWAE bound need
only log p(z_t | z_{<t}), as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from .errors import ConfigError
from .transforms import ConditionerConfig, StackConfig, TransformConfig, build_transform

__all__ = ["LatentFlow", "PriorFlowConfig"]


@dataclass(frozen=True)
class PriorFlowConfig(StackConfig):
    r"""Settings of an SLVM's flow prior: its transforms on z, outermost first, and their
    conditioner (an ``"mlp"`` or ``"linear"`` one; by default an MLP on the k = 1 last
    latents).
    """

    conditioner: ConditionerConfig = field(
        default_factory=lambda: ConditionerConfig(kind="mlp", window=1)
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.conditioner.kind == "conv":
            raise ConfigError(
                "prior.conditioner.kind must be 'mlp' or 'linear' (latents are vectors), got "
                "'conv'"
            )


class LatentFlow(nn.Module):
    r"""M autoregressive transforms across time on latent sequences z (B, T, latent_dim).

    Arguments:
        latent_dim: Size of z_t.
        kinds: The kind of each transform, outermost first (``"affine"`` or ``"spline"``).
        config: Settings of every transform (window k, conditioner ``"mlp"`` or ``"linear"``,
            hidden units, scale bounds, spline bins and bound, identity_init), or of each.

    Example:
        >>> import torch
        >>> flow = LatentFlow(4, ["affine", "spline"], TransformConfig(window=2, hidden=8))
        >>> z = torch.randn(3, 6, 4)
        >>> u, log_abs_det = flow.normalize(z)
        >>> u.shape, log_abs_det.shape
        (torch.Size([3, 6, 4]), torch.Size([3, 6]))
        >>> torch.allclose(u, z)  # identity_init: the untrained flow is the identity
        True
    """

    def __init__(
        self,
        latent_dim: int,
        kinds: Sequence[str],
        config: TransformConfig | Sequence[TransformConfig],
    ) -> None:
        super().__init__()
        if not kinds:
            raise ValueError("a latent flow needs at least one transform")
        self.latent_dim = latent_dim
        settings = [config] * len(kinds) if isinstance(config, TransformConfig) else config
        self.transforms = nn.ModuleList(
            build_transform(kind, (latent_dim,), each, context="padded")
            for kind, each in zip(kinds, settings, strict=True)
        )

    @property
    def kinds(self) -> list[str]:
        """The kind of each transform, outermost first."""
        return [transform.kind for transform in self.transforms]

    def normalize(self, z: Tensor) -> tuple[Tensor, Tensor]:
        r"""Maps latents to the Gaussian's variable, all time steps at once.

        Arguments:
            z: Latent sequences, with shape (B, T, latent_dim).

        Returns:
            u = w^M, with the shape of z, and log |det du_t/dz_t| per step, (B, T).
        """
        u = z
        log_abs_det = z.new_zeros(z.shape[:2])
        for transform in self.transforms:
            out = transform.normalize(u)
            u = out.y
            log_abs_det = log_abs_det + out.log_abs_det
        return u, log_abs_det

    def start(self, history: Tensor) -> list[Tensor]:
        r"""The windows of every transform after the latents ``history`` (B, c, latent_dim).

        Returns:
            The encoded window of each transform (outermost first), each (B, k, features):
            the state that :meth:`generate_step` advances.
        """
        windows = []
        inputs = history
        for index, transform in enumerate(self.transforms):
            windows.append(transform.start_window(inputs))
            if index + 1 < len(self.transforms) and inputs.shape[1] > 0:
                inputs = transform.normalize(inputs).y
        return windows

    def generate_step(self, u: Tensor, windows: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        r"""One step of the inverse: z_t (B, latent_dim) of u_t (B, latent_dim) after windows.

        Returns:
            z_t and the windows advanced by one step (each transform's new input appended).
        """
        inputs: list[Tensor] = [u] * len(self.transforms)
        w = u
        for index in reversed(range(len(self.transforms))):
            w = self.transforms[index].generate_frame(windows[index], w)
            inputs[index] = w  # the input w^index_t of transform index
        advanced = [
            transform.advance(window, frame)
            for transform, window, frame in zip(self.transforms, windows, inputs, strict=True)
        ]
        return w, advanced
