r"""Metrics: nats and bits per dimension, and temporal correlation (Appendix C.1, Eq. 31).

Units. Models here put a continuous density on frames scaled to [0, 1]. Summed over the scored
frames' pixels and channels and divided by (frames x C x H x W), the log-density is the paper's
"nats per pixel per channel" (:func:`nats_per_dim`); it can be positive, because a density on
[0, 1] can exceed 1. Bits per dimension (:func:`bits_per_dim`) measure the discrete 8-bit data
instead, and are only defined when the model was trained on uniformly dequantized data
v = (x + u) / 256, u ~ U[0, 1): then log P(x) >= E_u[log p(v)] - D log 256, so
bits/dim = (log 256 - nats/dim) / log 2. The paper's N(0, (1/256)^2) noise is not a
dequantization, and its numbers have no bits/dim.

The paper's scale. The paper's tables give the same log-density per dimension for pixel values
on the 0-255 scale (:func:`nats_per_dim_8bit`): nats/dim on [0, 1] minus log 256. That is what
the paper's own conversion of VideoFlow's 1.87 bits/pixel into "-1.3 nats per pixel" does, and
with the paper's N(0, (1/256)^2) noise no model can average more than
-h(N(0, (1/256)^2)) = +4.126 nats/dim on [0, 1] (:func:`gaussian_noise_ceiling`), -1.419 on the
paper's scale, which every entry of the paper's tables respects. (log 255 instead of log 256
would move every value by 0.004.) For uniformly dequantized data it is -log(2) bits/dim.

Both accumulators (:class:`LogLikelihoodSum`, :class:`TemporalCorrelation`) keep sums and
counts, in float64, so that results over several batches or processes are combined by adding
sums (``merge``), never by averaging averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "LogLikelihoodSum",
    "TemporalCorrelation",
    "bits_per_dim",
    "centre_of_mass",
    "dims_per_frame",
    "gaussian_noise_ceiling",
    "nats_per_dim",
    "nats_per_dim_8bit",
    "temporal_correlation",
]


def dims_per_frame(event_shape: Sequence[int]) -> int:
    """Number of dimensions of one frame: C * H * W, or D."""
    return math.prod(int(size) for size in event_shape)


def centre_of_mass(frames: Tensor) -> Tensor:
    r"""Centre of mass (row, column) in pixels of frames (..., C, H, W), their intensity
    clipped at 0 as weights: (..., 2)."""
    weights = frames.clamp(min=0).sum(-3)  # (..., H, W), over channels
    rows = torch.arange(weights.shape[-2], dtype=weights.dtype, device=weights.device)
    columns = torch.arange(weights.shape[-1], dtype=weights.dtype, device=weights.device)
    total = weights.sum((-2, -1)).clamp(min=1e-12)
    row = (weights.sum(-1) * rows).sum(-1) / total
    column = (weights.sum(-2) * columns).sum(-1) / total
    return torch.stack([row, column], -1)


def nats_per_dim(log_likelihood: Tensor | float, num_dims: int) -> float:
    r"""Average log-likelihood per dimension, in nats.

    Arguments:
        log_likelihood: Log-likelihoods in nats, summed over dimensions: a total (float) or a
            tensor of per-frame or per-sequence values, which is summed.
        num_dims: Total number of dimensions behind it (frames x C x H x W).
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    if isinstance(log_likelihood, Tensor):
        log_likelihood = float(log_likelihood.detach().double().sum())
    return float(log_likelihood) / num_dims


def bits_per_dim(nats_per_dim: float, levels: int = 256) -> float:
    r"""Bits per dimension of discrete data from the nats/dim of a density on dequantized data.

    Valid when the model's density is on v = (x + u) / levels, x in {0, ..., levels - 1},
    u ~ U[0, 1): bits/dim = (log(levels) - nats/dim) / log(2), an upper bound on the discrete
    model's code length (lower is better).
    """
    return (math.log(levels) - nats_per_dim) / math.log(2)


def nats_per_dim_8bit(nats_per_dim: float | None, levels: int = 256) -> float | None:
    r"""The paper's scale: log-density per dimension of pixel values on the 0-255 scale.

    A density on frames scaled to [0, 1] becomes a density on 8-bit pixel values (256 levels,
    the scale stretched 256 times) by subtracting log(256) per dimension: the numbers of the
    paper's Tables 1 and 3. None stays None.

    Example:
        >>> round(nats_per_dim_8bit(3.0), 4)
        -2.5452
    """
    return None if nats_per_dim is None else nats_per_dim - math.log(levels)


def gaussian_noise_ceiling(std: float = 1 / 256) -> float:
    r"""The largest average nats/dim any model can reach on 8-bit frames with N(0, std^2) noise.

    A model of v = x/255 + e, e ~ N(0, std^2), at best predicts x exactly, and then its density
    of v is that of the noise: the expected log-density is -h(N(0, std^2)) =
    -log(std) - log(2 pi e) / 2, which is +4.126 nats/dim for the paper's std = 1/256 (-1.419 on
    the paper's scale, :func:`nats_per_dim_8bit`).

    Example:
        >>> round(gaussian_noise_ceiling(), 3)
        4.126
    """
    return -math.log(std) - 0.5 * math.log(2 * math.pi * math.e)


@dataclass
class LogLikelihoodSum:
    r"""Running sum of log-likelihoods and of the dimensions and frames they cover.

    Example:
        >>> total = LogLikelihoodSum()
        >>> total.update(torch.full((2, 3), -10.0), event_shape=(1, 2, 2))
        >>> total.nats_per_dim
        -2.5
    """

    total: float = 0.0
    dims: int = 0
    frames: int = 0

    def update(
        self, log_prob: Tensor, event_shape: Sequence[int], observed: int | None = None
    ) -> None:
        r"""Adds per-frame log-likelihoods (any shape, e.g. (B, T)) of frames ``event_shape``;
        ``observed``: the values they cover when the frames have gaps (None: every value)."""
        self.total += float(log_prob.detach().double().sum())
        self.frames += log_prob.numel()
        every = log_prob.numel() * dims_per_frame(event_shape)
        self.dims += every if observed is None else int(observed)

    def merge(self, other: LogLikelihoodSum) -> LogLikelihoodSum:
        """The sum of two accumulators (e.g. from two processes)."""
        return LogLikelihoodSum(
            self.total + other.total, self.dims + other.dims, self.frames + other.frames
        )

    def state(self) -> Tensor:
        r"""The sums as one float64 vector (total, dims, frames): states of several processes add
        up (one ``all_reduce``) to the state of their merge."""
        return torch.tensor([self.total, self.dims, self.frames], dtype=torch.float64)

    @classmethod
    def from_state(cls, state: Tensor) -> LogLikelihoodSum:
        """The accumulator of a :meth:`state` (e.g. the sum of several processes' states)."""
        total, dims, frames = (float(value) for value in state.detach().double().cpu())
        return cls(total, round(dims), round(frames))

    @property
    def nats_per_dim(self) -> float:
        """Average log-likelihood per dimension, nats."""
        return nats_per_dim(self.total, self.dims)

    def bits_per_dim(self, levels: int = 256) -> float:
        """Bits per dimension, for models of uniformly dequantized data (see module docstring)."""
        return bits_per_dim(self.nats_per_dim, levels)


SUM_NAMES = ("sum", "sum_sq", "sum_prod", "sum_lead", "sum_lag")


@dataclass
class TemporalCorrelation:
    r"""Accumulates the lag-1 temporal correlation of Eq. 31 over batches of real frames.

    For sequences n (sequences x time x dims), with mu_i and sigma_i^2 the mean and variance of
    dimension i over all sequences and frames,

        corr = mean over i, sequences and t of (n_{t,i} - mu_i)(n_{t+1,i} - mu_i) / sigma_i^2.

    Only the frames passed to :meth:`update` count, so pass real frames only (the authors' code
    also counted zero placeholders for the unscored context frames). Dimensions whose variance
    is zero (a pixel that never changes) have no correlation and are left out of the average.
    """

    count: int = 0
    pairs: int = 0
    offset: Tensor | None = None  # first batch's per-dimension mean, subtracted for stability
    sums: dict[str, Tensor] = field(default_factory=dict)

    def update(self, sequences: Tensor) -> None:
        r"""Adds a batch of sequences with shape (B, T, *event_shape); T may vary by batch."""
        if sequences.dim() < 3:
            raise ValueError(
                f"sequences must be shaped (B, T, *event_shape), got {tuple(sequences.shape)}"
            )
        n = sequences.detach().flatten(2).double()  # (B, T, D)
        if self.offset is None:
            self.offset = n.mean(dim=(0, 1))
        n = n - self.offset
        lead, lag = n[:, :-1], n[:, 1:]
        batch = {
            "sum": n.sum(dim=(0, 1)),
            "sum_sq": n.square().sum(dim=(0, 1)),
            "sum_prod": (lead * lag).sum(dim=(0, 1)),
            "sum_lead": lead.sum(dim=(0, 1)),
            "sum_lag": lag.sum(dim=(0, 1)),
        }
        for name, value in batch.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += n.shape[0] * n.shape[1]
        self.pairs += lead.shape[0] * lead.shape[1]

    def merge(self, other: TemporalCorrelation) -> TemporalCorrelation:
        """The combination of two accumulators (e.g. from two processes)."""
        if other.offset is None:
            return self
        if self.offset is None:
            return other
        merged = TemporalCorrelation(self.count + other.count, self.pairs + other.pairs)
        merged.offset = self.offset
        delta = other.offset - self.offset  # re-centre other's sums on self.offset
        o = other.sums
        merged.sums = {
            "sum": self.sums["sum"] + o["sum"] + other.count * delta,
            "sum_sq": self.sums["sum_sq"]
            + o["sum_sq"]
            + 2 * delta * o["sum"]
            + other.count * delta.square(),
            "sum_prod": self.sums["sum_prod"]
            + o["sum_prod"]
            + delta * (o["sum_lead"] + o["sum_lag"])
            + other.pairs * delta.square(),
            "sum_lead": self.sums["sum_lead"] + o["sum_lead"] + other.pairs * delta,
            "sum_lag": self.sums["sum_lag"] + o["sum_lag"] + other.pairs * delta,
        }
        return merged

    def state(self, dims: int) -> Tensor:
        r"""Counts and sums about a zero offset as one float64 vector (2 + 5 * dims values): the
        states of several processes add up (one ``all_reduce``) to the state of their merge.

        Arguments:
            dims: Dimensions D of a frame (to give an empty accumulator's state).
        """
        centred = self
        if self.offset is not None and bool(self.offset.any()):
            zero = TemporalCorrelation(offset=torch.zeros_like(self.offset))
            zero.sums = {name: torch.zeros_like(self.offset) for name in SUM_NAMES}
            centred = zero.merge(self)  # re-centred on the zero offset of ``zero``
        zeros = torch.zeros(dims, dtype=torch.float64)
        sums = [centred.sums.get(name, zeros).detach().double().cpu() for name in SUM_NAMES]
        counts = torch.tensor([centred.count, centred.pairs], dtype=torch.float64)
        return torch.cat([counts, *sums])

    @classmethod
    def from_state(cls, state: Tensor) -> TemporalCorrelation:
        """The accumulator of a :meth:`state` (e.g. the sum of several processes' states)."""
        state = state.detach().double().cpu()
        count, pairs = round(float(state[0])), round(float(state[1]))
        sums = state[2:].view(len(SUM_NAMES), -1)
        correlation = cls(count, pairs, offset=torch.zeros(sums.shape[1], dtype=torch.float64))
        if count:
            correlation.sums = dict(zip(SUM_NAMES, sums, strict=True))
        return correlation

    def per_dimension(self) -> Tensor:
        r"""Lag-1 correlation of each dimension, with shape (D,); NaN where the variance is 0."""
        if self.pairs == 0:
            raise ValueError("temporal correlation needs sequences of at least 2 frames")
        s = self.sums
        mean = s["sum"] / self.count
        variance = s["sum_sq"] / self.count - mean.square()
        covariance = (s["sum_prod"] - mean * (s["sum_lead"] + s["sum_lag"])) / self.pairs
        covariance = covariance + mean.square()
        constant = variance <= 1e-12 * (s["sum_sq"] / self.count).clamp_min(1e-300)
        return torch.where(constant, torch.nan, covariance / variance.clamp_min(1e-300))

    def compute(self) -> float:
        """Eq. 31: the average over dimensions (those that vary) of the lag-1 correlation."""
        correlation = self.per_dimension()
        varying = ~correlation.isnan()
        if not bool(varying.any()):
            raise ValueError("every dimension is constant: the temporal correlation is undefined")
        return float(correlation[varying].mean())


def temporal_correlation(sequences: Tensor) -> float:
    r"""Lag-1 temporal correlation of Eq. 31 (Appendix C.1).

    Arguments:
        sequences: Real frames only, with shape (B, T, *event_shape), T >= 2.

    Returns:
        The average over dimensions of the normalized lag-1 autocovariance: about 0 for white
        noise, rho for a stationary AR(1) process with coefficient rho.

    Example:
        >>> white = torch.randn(64, 50, 3)
        >>> abs(temporal_correlation(white)) < 0.05
        True
    """
    accumulator = TemporalCorrelation()
    accumulator.update(sequences)
    return accumulator.compute()
