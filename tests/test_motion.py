"""The motivating example of Sec. 3.1 (Eq. 10-14): data, exact likelihood, and what flows learn."""

from __future__ import annotations

import json
import math

import pytest
import torch

from reproduction.__main__ import main as reproduction_main
from reproduction.motion import MotionExampleConfig, run_motion_example
from reproduction.motion_data import motion_log_prob, simulate_motion
from seqflows.metrics import temporal_correlation


def test_simulation_follows_eq_10_and_11() -> None:
    data = simulate_motion(4, 12, dim=3, sigma=0.7, generator=torch.Generator().manual_seed(0))
    assert data.x.shape == data.u.shape == data.w.shape == (4, 12, 3)
    zero = torch.zeros(4, 1, 3)
    torch.testing.assert_close(data.u, torch.cat([zero, data.u[:, :-1]], 1) + data.w)
    torch.testing.assert_close(data.x, torch.cat([zero, data.x[:, :-1]], 1) + data.u)
    assert data.w.std().item() == pytest.approx(0.7, rel=0.25)


def test_exact_log_likelihood_is_that_of_the_force() -> None:
    sigma = 0.5
    data = simulate_motion(
        2000,
        10,
        dim=2,
        sigma=sigma,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    log_prob = motion_log_prob(data.x, sigma)
    expected = torch.distributions.Normal(0.0, sigma).log_prob(data.w).sum(-1)
    torch.testing.assert_close(log_prob, expected)
    per_dim = log_prob.mean().item() / 2
    assert per_dim == pytest.approx(-0.5 * math.log(2 * math.pi * sigma**2) - 0.5, abs=0.01)


@pytest.fixture(scope="module")
def example_results() -> dict:
    return run_motion_example(MotionExampleConfig())  # the defaults users run


def test_second_order_flows_reach_the_true_likelihood(example_results: dict) -> None:
    truth = example_results["true_process"]["nats_per_dim"]
    models = example_results["models"]
    for name in ["1-AF (window 2)", "2-AF (window 1)"]:
        assert abs(models[name]["nats_per_dim"] - truth) < 0.02, name
        # never above the truth beyond Monte-Carlo error (512 x 14 x 2 held-out dimensions)
        assert models[name]["nats_per_dim"] < truth + 0.01, name


def test_first_order_flow_misses_the_second_order_dynamics(example_results: dict) -> None:
    truth = example_results["true_process"]["nats_per_dim"]
    first_order = example_results["models"]["1-AF (window 1)"]
    assert first_order["nats_per_dim"] < truth - 0.2
    assert first_order["noise_temporal_correlation"] > 0.5  # its noise keeps the velocity


def test_two_transforms_whiten_the_noise(example_results: dict) -> None:
    for name in ["1-AF (window 2)", "2-AF (window 1)"]:
        assert abs(example_results["models"][name]["noise_temporal_correlation"]) < 0.05, name
    assert temporal_correlation(example_results["sequences"]["x"]) > 0.9  # x itself: strongly


def test_command_line_writes_results_and_figure(tmp_path, capsys) -> None:
    out = tmp_path / "motion"
    command = ["motion", "--steps", "30", "--num-train", "64", "--num-test", "32"]
    assert reproduction_main([*command, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2-AF (window 1)" in printed and "true process" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"1-AF (window 1)", "1-AF (window 2)", "2-AF (window 1)"}
    assert results["protocol"]["steps"] == 30 and results["protocol"]["num_test"] == 32
    assert len(results["models"]["2-AF (window 1)"]["train_loss"]) == 30
    assert (out / "motion.png").stat().st_size > 10_000
    assert not list(out.glob("*.partial"))
