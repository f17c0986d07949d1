r"""A multi-scale coupling flow within the frame as the base p(y_t | x_{t-k:t-1}) of a flow model.

The paper's flows act element-wise within a time step (Sec. 3.2): given the past, every pixel of
y_t is independent N(0, 1). Beyond the paper, :class:`FrameFlow` ties the pixels of one frame
together with a conditional RealNVP / Glow flow (Dinh et al. 2017, Kingma & Dhariwal 2018) that
maps y_t (C, H, W) to Gaussian noise eps_t of the same size, its coupling networks and priors
conditioned on the window of past frames x_{t-k:t-1}:

    per level l = 1 .. L:   squeeze (C, H, W) -> (4C, H/2, W/2)
                            S steps of  actnorm -> invertible 1x1 conv -> coupling
                            factor-out (l < L): half the channels leave as N(mean, scale^2),
                                                mean and scale from the other half and the past
    at the top:             the rest is N(mean, scale^2), mean and scale from the past

    log p(y_t | past) = sum_parts log N(eps_part; 0, I) + log |det d eps_t / d y_t|    (Eq. 7)

with each part standardised, eps = (z - mean) / scale, so the flow is a bijection y_t <-> eps_t
with eps_t ~ N(0, I). The couplings, on channels (a, b) of their input:

    affine:  b' = (b - shift(a, h)) / scale(a, h),  log |det| = -sum log scale        (Eq. 6 form)
    spline:  b' = g(b; a, h), a rational-quadratic spline (:mod:`seqflows.splines`) on [-B, B]

Conditioning. h = encoder(x_{t-k:t-1}) is a small conv network over the k past frames stacked as
channels (frames before the sequence's start are zeros), average-pooled to each level's
resolution. It sees only frames before t, so the model stays causal, and it is a function of x,
not of y, so log p(x) is computed for all time steps at once (T folded into the batch) while
sampling draws y_t step by step, after x_{t-1} is known (:meth:`FlowModel.sample`). We condition
on past frames rather than on the temporal conditioner's hidden features so that the base is a
module of its own that any stack of transforms can sit on, and so that the same window of data
conditions it in every context mode.

Identity initialisation. Actnorm starts at the identity (no data-dependent initialisation: that
would make the untrained model depend on the first batch), the 1x1 convolutions at a random
rotation (|det| = 1, so log-det 0 and N(0, I) unchanged), the last layer of every coupling and
prior network at zero. Squeezes permute, so the untrained flow's density is N(y; 0, I) exactly:
the model equals today's model with the standard base.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributions import normal_log_prob
from .errors import ConfigError
from .layout import cpu_channels_last
from .splines import RationalQuadraticSpline, spline_parameters
from .transforms import bound_log_scale, first_spline

__all__ = [
    "FRAME_COUPLINGS",
    "STEPS_PER_LEVEL",
    "FrameFlow",
    "check_frame_side",
    "frame_flow_settings",
    "last_window",
    "past_windows",
    "squeeze",
    "unsqueeze",
]

FRAME_COUPLINGS = ("affine", "spline")
STEPS_PER_LEVEL = 2  # actnorm, 1x1 conv and coupling steps at each scale


def check_frame_side(
    event_shape: Sequence[int],
    levels: int,
    setting: str = "base",
    levels_setting: str = "glow_levels",
) -> None:
    """Raises ConfigError unless frames (C, H, W) suit ``levels`` squeezes (H, W multiples of
    2^levels); the message names the frame size and the settings (``setting='glow'``, the
    flow model's ``base`` or the SLVM's ``latent.likelihood_base``, and ``levels_setting``)."""
    if len(event_shape) != 3:
        raise ConfigError(
            f"{setting} 'glow' is a flow within the frame: it needs frames (C, H, W), got event "
            f"shape {tuple(event_shape)}"
        )
    _, height, width = event_shape
    factor = 2**levels
    if height % factor or width % factor:
        raise ConfigError(
            f"{setting} 'glow' with {levels_setting}={levels} squeezes the frame {levels} times: "
            f"its height and width must be multiples of {factor}, got frames of {height}x{width} "
            f"(change the frame size or {levels_setting})"
        )


def frame_flow_settings(config: Any, transforms: Sequence[Any] = ()) -> dict[str, Any]:
    r""":class:`FrameFlow`'s keyword settings from a configuration's ``glow_coupling``,
    ``glow_levels`` and ``glow_hidden`` (a flow model's ``base="glow"``, an SLVM's
    ``latent.likelihood_base="glow"``); the spline couplings take the bins and bound of the first
    spline transform in ``transforms`` (else the spline defaults)."""
    spline = first_spline(transforms)
    return {
        "levels": config.glow_levels,
        "hidden": config.glow_hidden,
        "coupling": config.glow_coupling,
        "bins": spline.bins,
        "bound": spline.bound,
    }


def squeeze(x: Tensor) -> Tensor:
    r"""Space to channels: (N, C, H, W) -> (N, 4C, H/2, W/2), each 2x2 patch into channels."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    r"""The inverse of :func:`squeeze`: (N, 4C, H/2, W/2) -> (N, C, H, W)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def past_windows(x: Tensor, window: int, first: int) -> Tensor:
    r"""The k past frames of every frame from ``first`` on: (B, T, *event) ->
    (B, T - first, k, *event), oldest first; frames before the start are zeros."""
    padded = torch.cat([x.new_zeros(x.shape[0], window, *x.shape[2:]), x], dim=1)
    scored = x.shape[1] - first
    return torch.stack(
        [padded[:, first + lag : first + lag + scored] for lag in range(window)], dim=2
    )


class ActNorm(nn.Module):
    r"""Per-channel affine map z = (x + bias) * exp(log_scale), at the identity initially.

    log |det dz/dx| = H W sum_c log_scale_c.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def normalize(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        log_det = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * torch.exp(self.log_scale), log_det.expand(x.shape[0])

    def generate(self, z: Tensor, cond: Tensor) -> Tensor:
        return z * torch.exp(-self.log_scale) - self.bias


class InvertibleConv1x1(nn.Module):
    r"""z = W x at every pixel, W = P L (U + diag(sign * exp(log_s))) (Glow's LU form).

    log |det dz/dx| = H W sum log_s. W starts at a random rotation (log-det 0).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels))
        permutation, lower, upper = torch.linalg.lu(rotation)
        diagonal = torch.diagonal(upper)
        self.register_buffer("permutation", permutation)
        self.register_buffer("sign", torch.sign(diagonal))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(diagonal.abs()))

    def weight(self) -> Tensor:
        """W (C, C)."""
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def normalize(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        log_det = self.log_s.sum() * x.shape[2] * x.shape[3]
        z = torch.einsum("ij,njhw->nihw", self.weight(), x)
        return z, log_det.expand(x.shape[0])

    def generate(self, z: Tensor, cond: Tensor) -> Tensor:
        return torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.weight()), z)


def _network(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3, the last at zero (outputs 0 initially)."""
    last = nn.Conv2d(hidden, outputs, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(inputs, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        last,
    )


class Coupling(nn.Module):
    r"""Affine or spline coupling: channels b transformed given channels a and the features h.

    The network's last layer starts at zero, so the coupling starts at the identity.
    """

    def __init__(
        self,
        channels: int,
        features: int,
        hidden: int,
        kind: str,
        bins: int,
        bound: float,
        scale_bounds: tuple[float, float],
    ) -> None:
        super().__init__()
        self.kind, self.bins, self.bound, self.scale_bounds = kind, bins, bound, scale_bounds
        self.kept = channels // 2
        self.changed = channels - self.kept
        per_element = 2 if kind == "affine" else spline_parameters(bins)
        self.network = _network(self.kept + features, hidden, self.changed * per_element)

    def _raw(self, kept: Tensor, cond: Tensor) -> Tensor:
        raw = self.network(cpu_channels_last(torch.cat([kept, cond], dim=1)))
        n, _, h, w = raw.shape
        return raw.reshape(n, self.changed, -1, h, w)  # (N, C_b, P, H, W)

    def _affine(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = raw.unbind(2)
        return shift, bound_log_scale(log_scale, *self.scale_bounds, "soft")

    def _spline(self, raw: Tensor) -> RationalQuadraticSpline:
        return RationalQuadraticSpline.from_raw(raw.movedim(2, -1), self.bins, self.bound)

    def normalize(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        kept, changed = x.split([self.kept, self.changed], dim=1)
        raw = self._raw(kept, cond)
        if self.kind == "affine":
            shift, log_scale = self._affine(raw)
            out, log_det = (changed - shift) * torch.exp(-log_scale), -log_scale
        else:
            out, log_det = self._spline(raw).forward(changed)
        return torch.cat([kept, out], dim=1), log_det.flatten(1).sum(1)

    def generate(self, z: Tensor, cond: Tensor) -> Tensor:
        kept, changed = z.split([self.kept, self.changed], dim=1)
        raw = self._raw(kept, cond)
        if self.kind == "affine":
            shift, log_scale = self._affine(raw)
            out = shift + changed * torch.exp(log_scale)
        else:
            out = self._spline(raw).inverse(changed)
        return torch.cat([kept, out], dim=1)


class FrameFlow(nn.Module):
    r"""A conditional multi-scale coupling flow over one frame, y_t <-> eps_t ~ N(0, I).

    Arguments:
        event_shape: (C, H, W), with H and W multiples of 2^levels.
        window: k, the past frames that condition it.
        levels: L, the scales (one squeeze each).
        hidden: Channels of the past encoder and of the coupling and prior networks.
        coupling: ``"affine"`` or ``"spline"``.
        bins, bound: The spline couplings' K and B (:mod:`seqflows.splines`).
        scale_bounds: (min_scale, max_scale) of the affine couplings' and priors' scales.

    Example:
        >>> flow = FrameFlow((1, 4, 4), window=2, levels=2, hidden=8)
        >>> y, past = torch.randn(3, 1, 4, 4), torch.randn(3, 2, 1, 4, 4)
        >>> noise, log_det = flow.encode(y, past)
        >>> torch.allclose(flow.decode(noise, past), y, atol=1e-5)
        True
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        levels: int = 2,
        hidden: int = 32,
        coupling: str = "affine",
        bins: int = 8,
        bound: float = 5.0,
        scale_bounds: tuple[float, float] = (1e-4, 10.0),
    ) -> None:
        super().__init__()
        if coupling not in FRAME_COUPLINGS:
            raise ConfigError(f"glow_coupling must be one of {FRAME_COUPLINGS}, got {coupling!r}")
        check_frame_side(event_shape, levels)
        self.event_shape = tuple(int(size) for size in event_shape)
        self.window, self.levels, self.scale_bounds = window, levels, scale_bounds
        channels = self.event_shape[0]
        self.encoder = nn.Sequential(
            nn.Conv2d(window * channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
        )
        self.steps = nn.ModuleList()
        self.priors = nn.ModuleList()  # level l < L: from the kept half; the top: from h only
        for level in range(levels):
            channels *= 4
            steps = []
            for _ in range(STEPS_PER_LEVEL):
                steps += [ActNorm(channels), InvertibleConv1x1(channels)]
                steps.append(
                    Coupling(channels, hidden, hidden, coupling, bins, bound, scale_bounds)
                )
            self.steps.append(nn.ModuleList(steps))
            if level < levels - 1:
                kept = channels // 2
                self.priors.append(_network(kept + hidden, hidden, 2 * (channels - kept)))
                channels = kept
            else:
                self.priors.append(_network(hidden, hidden, 2 * channels))

    def _features(self, past: Tensor) -> list[Tensor]:
        r"""h at each level's resolution: past (N, k, C, H, W) -> [(N, hidden, H/2^l, W/2^l)]."""
        h = self.encoder(cpu_channels_last(past.flatten(1, 2)))  # oneDNN's layout
        return [F.avg_pool2d(h, 2 ** (level + 1)) for level in range(self.levels)]

    def _prior(self, level: int, kept: Tensor | None, cond: Tensor) -> tuple[Tensor, Tensor]:
        inputs = cond if kept is None else torch.cat([kept, cond], dim=1)
        mean, raw = self.priors[level](cpu_channels_last(inputs)).chunk(2, dim=1)
        return mean, bound_log_scale(raw, *self.scale_bounds, "soft")

    def encode(self, y: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:
        r"""y (N, C, H, W) and its past (N, k, C, H, W) -> eps (N, C H W) and log |d eps / d y|
        (N,): the flow's normalizing direction (every factored part standardised)."""
        z, log_det, parts = y, y.new_zeros(y.shape[0]), []
        for level, (steps, cond) in enumerate(zip(self.steps, self._features(past), strict=True)):
            z = squeeze(z)
            for step in steps:
                z, step_log_det = step.normalize(z, cond)
                log_det = log_det + step_log_det
            if level < self.levels - 1:
                kept, factored = z.chunk(2, dim=1)
                mean, log_scale = self._prior(level, kept, cond)
                z = kept
            else:
                factored, (mean, log_scale) = z, self._prior(level, None, cond)
            parts.append(((factored - mean) * torch.exp(-log_scale)).flatten(1))
            log_det = log_det - log_scale.flatten(1).sum(1)
        return torch.cat(parts, dim=1), log_det

    def decode(self, noise: Tensor, past: Tensor) -> Tensor:
        r"""The inverse of :meth:`encode`: eps (N, C H W) and the past -> y (N, C, H, W)."""
        features = self._features(past)
        sizes = self._part_sizes()
        parts = list(noise.split([numel for numel, _ in sizes], dim=1))
        z = None
        for level in reversed(range(self.levels)):
            cond, (_, shape) = features[level], sizes[level]
            mean, log_scale = self._prior(level, z, cond)
            factored = mean + torch.exp(log_scale) * parts[level].reshape(-1, *shape)
            z = factored if z is None else torch.cat([z, factored], dim=1)
            for step in reversed(self.steps[level]):
                z = step.generate(z, cond)
            z = unsqueeze(z)
        return z

    def _part_sizes(self) -> list[tuple[int, tuple[int, int, int]]]:
        """Per level, the size and (C, H, W) shape of the factored part (the top: the rest)."""
        channels, height, width = self.event_shape
        sizes = []
        for level in range(self.levels):
            channels, height, width = 4 * channels, height // 2, width // 2
            part = channels // 2 if level < self.levels - 1 else channels
            channels -= part if level < self.levels - 1 else 0
            sizes.append((part * height * width, (part, height, width)))
        return sizes

    def log_prob(self, y: Tensor, past: Tensor) -> Tensor:
        r"""log p(y | past) in nats: y (*, C, H, W), past (*, k, C, H, W) -> (*), every leading
        index (batch, time) at once."""
        lead = y.shape[: y.dim() - 3]
        noise, log_det = self.encode(y.reshape(-1, *self.event_shape), past.flatten(0, -5))
        return (
            normal_log_prob(noise, torch.zeros_like(noise), torch.zeros_like(noise), 1) + log_det
        ).reshape(lead)

    def steps_log_prob(self, y: Tensor, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        r"""log p(y_t | x_{t-k:t-1}) (B, S) of the innermost outputs y (B, S, C, H, W) of the last
        S frames of x (B, T, C, H, W), every step at once; conditions are not used."""
        return self.log_prob(y, past_windows(x, self.window, x.shape[1] - y.shape[1]))

    def sample_next(
        self,
        x: Tensor,
        conditions: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        r"""y_t (B, 1, C, H, W) of the frame after x (B, t, C, H, W), given its k past frames."""
        return self.sample(last_window(x, self.window), generator, temperature)[:, None]

    def sample(
        self,
        past: Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        r"""y ~ p(y | past): past (N, k, C, H, W) -> (N, C, H, W); ``temperature`` scales eps."""
        numel = sum(numel for numel, _ in self._part_sizes())
        noise = torch.randn(
            past.shape[0], numel, generator=generator, device=past.device, dtype=past.dtype
        )
        return self.decode(temperature * noise, past)


def last_window(x: Tensor, window: int) -> Tensor:
    r"""The k frames before the next one: (B, T, *event) -> (B, k, *event), zeros before the
    start (the window :func:`past_windows` gives frame T)."""
    padded = torch.cat([x.new_zeros(x.shape[0], window, *x.shape[2:]), x], dim=1)
    return padded[:, padded.shape[1] - window :]
