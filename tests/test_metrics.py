"""Metrics with known answers: nats/dim, bits/dim, temporal correlation (Eq. 31)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqflows.distributions import normal_log_prob
from seqflows.metrics import (
    LogLikelihoodSum,
    TemporalCorrelation,
    bits_per_dim,
    dims_per_frame,
    gaussian_noise_ceiling,
    nats_per_dim,
    nats_per_dim_8bit,
    temporal_correlation,
)


def test_paper_scale_of_a_perfect_predictor_of_8bit_frames_with_the_papers_noise() -> None:
    """A model that knows x exactly has the noise's density: +4.126 on [0, 1], -1.419 (paper)."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (64, 10, 1, 8, 8), generator=generator).double()
    std = 1 / 256
    v = pixels / 255 + std * torch.randn(pixels.shape, generator=generator, dtype=torch.float64)
    log_prob = normal_log_prob(v, pixels / 255, torch.full_like(v, math.log(std)), 3)
    total = LogLikelihoodSum()
    total.update(log_prob, (1, 8, 8))
    assert total.nats_per_dim == pytest.approx(gaussian_noise_ceiling(), abs=0.01)
    assert gaussian_noise_ceiling() == pytest.approx(4.1263, abs=1e-4)
    assert nats_per_dim_8bit(total.nats_per_dim) == pytest.approx(-1.4189, abs=0.01)
    assert nats_per_dim_8bit(None) is None


def test_paper_scale_is_minus_log2_bits_per_dim_under_uniform_dequantization() -> None:
    # A uniform density on [0, 1] is 0 nats/dim: 8 bits per pixel, -log 256 on the 0-255 scale.
    assert nats_per_dim_8bit(0.0) == pytest.approx(-8 * math.log(2))
    assert bits_per_dim(0.0) == pytest.approx(8.0)
    # The paper's own conversion of VideoFlow's 1.87 bits/pixel: "-1.3 nats per pixel".
    nats = math.log(256) - 1.87 * math.log(2)  # the [0, 1] density that has 1.87 bits/dim
    assert bits_per_dim(nats) == pytest.approx(1.87)
    assert nats_per_dim_8bit(nats) == pytest.approx(-1.87 * math.log(2))
    assert round(nats_per_dim_8bit(nats), 1) == -1.3


def stationary_ar1(rho: float, sequences: int, length: int, dims: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(sequences, length, dims, generator=generator, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0]  # stationary start: variance 1
    for t in range(1, length):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * noise[:, t]
    return x


def eq31_by_hand(x: np.ndarray) -> float:
    """Eq. 31 written as in the paper, with numpy loops, for small arrays (N, T, D)."""
    mean, std = x.mean(axis=(0, 1)), x.std(axis=(0, 1))
    terms = []
    for n in range(x.shape[0]):
        for t in range(x.shape[1] - 1):
            terms.append((x[n, t] - mean) * (x[n, t + 1] - mean) / std**2)
    return float(np.mean(terms))


def test_nats_per_dim_divides_the_total_by_the_dimensions() -> None:
    log_prob = torch.tensor([[-10.0, -20.0], [-30.0, -40.0]])  # 4 frames of 1 x 2 x 2
    assert nats_per_dim(log_prob, 4 * dims_per_frame((1, 2, 2))) == pytest.approx(-100 / 16)
    assert nats_per_dim(-100.0, 16) == pytest.approx(-6.25)
    with pytest.raises(ValueError, match="num_dims must be positive"):
        nats_per_dim(1.0, 0)


def test_log_likelihood_sums_merge_as_sums_not_as_means() -> None:
    first, second, together = LogLikelihoodSum(), LogLikelihoodSum(), LogLikelihoodSum()
    small, large = torch.full((1, 2), -1.0), torch.full((3, 10), -5.0)
    first.update(small, (2, 3))
    second.update(large, (2, 3))
    together.update(small, (2, 3))
    together.update(large, (2, 3))
    merged = first.merge(second)
    assert merged == together
    assert merged.frames == 32 and merged.dims == 32 * 6
    expected = (2 * -1.0 + 30 * -5.0) / (32 * 6)
    assert merged.nats_per_dim == pytest.approx(expected)
    mean_of_means = (first.nats_per_dim + second.nats_per_dim) / 2
    assert merged.nats_per_dim != pytest.approx(mean_of_means)


def test_bits_per_dim_of_a_uniform_density_is_eight() -> None:
    assert bits_per_dim(0.0) == pytest.approx(8.0)  # a density of 1 on [0, 1]^D
    assert bits_per_dim(math.log(2), levels=2) == pytest.approx(0.0)


def test_bits_per_dim_recovers_the_entropy_of_discrete_data() -> None:
    """A density constant on each dequantization bin, 256 * P(x), gives back -log2 P(x)."""
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(
        3 * torch.randn(256, generator=generator, dtype=torch.float64), 0
    )
    entropy_bits = float(-(probabilities * probabilities.log2()).sum())
    # E_x E_u log p((x + u) / 256) with p = 256 * P(x) on bin x:
    nats = float((probabilities * torch.log(256 * probabilities)).sum())
    assert bits_per_dim(nats) == pytest.approx(entropy_bits)
    accumulator = LogLikelihoodSum(total=nats * 10, dims=10, frames=10)
    assert accumulator.bits_per_dim() == pytest.approx(entropy_bits)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, -0.6])
def test_temporal_correlation_of_a_stationary_ar1_process_is_rho(rho: float) -> None:
    x = stationary_ar1(rho, sequences=400, length=50, dims=4)
    assert temporal_correlation(x) == pytest.approx(rho, abs=0.02)


def test_temporal_correlation_equals_eq31_written_out() -> None:
    x = stationary_ar1(0.7, sequences=5, length=6, dims=3, seed=3) + torch.tensor([5.0, -2, 0])
    assert temporal_correlation(x) == pytest.approx(eq31_by_hand(x.numpy()), rel=1e-10)
    images = x.view(5, 6, 3, 1, 1)  # (B, T, C, H, W) gives the same number
    assert temporal_correlation(images) == pytest.approx(eq31_by_hand(x.numpy()), rel=1e-10)


def test_temporal_correlation_accumulates_and_merges_batches() -> None:
    x = stationary_ar1(0.8, sequences=12, length=7, dims=5, seed=4) * 3 + 100
    accumulator = TemporalCorrelation()
    accumulator.update(x[:5])
    accumulator.update(x[5:])
    other_process = TemporalCorrelation()
    other_process.update(x[8:] * 1.0)
    first_process = TemporalCorrelation()
    first_process.update(x[:8])
    expected = eq31_by_hand(x.numpy())
    assert accumulator.compute() == pytest.approx(expected, rel=1e-9)
    assert first_process.merge(other_process).compute() == pytest.approx(expected, rel=1e-9)


def test_temporal_correlation_counts_only_real_frames() -> None:
    """Zero placeholder frames (what the reference code added) change the answer."""
    x = stationary_ar1(0.5, sequences=200, length=10, dims=3) + 2.0
    with_placeholders = torch.cat([torch.zeros(200, 3, 3, dtype=x.dtype), x], dim=1)
    assert temporal_correlation(x) == pytest.approx(0.5, abs=0.03)
    assert temporal_correlation(with_placeholders) > 0.5 + 0.05  # biased upwards


def test_constant_dimensions_are_left_out() -> None:
    x = stationary_ar1(0.5, sequences=100, length=20, dims=2, seed=5)
    with_constant = torch.cat([x, torch.full((100, 20, 1), 3.0, dtype=x.dtype)], dim=-1)
    assert temporal_correlation(with_constant) == pytest.approx(temporal_correlation(x))
    with pytest.raises(ValueError, match="every dimension is constant"):
        temporal_correlation(torch.ones(3, 4, 2))
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_correlation(torch.randn(3, 1, 2))
