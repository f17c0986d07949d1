"""Conditioning pays on the controlled balls: a conditioned 1-AF and a conditioned SLVM w/ 1-AF
beat their unconditioned twins (same frames, budget and seed), and predictions follow the
actions (a short training at a tiny scale).

Both models of a pair are scored in eval mode after their BatchNorm statistics were recomputed
over training batches (:func:`recalibrate`): after so short a training the running averages
(momentum 0.1) still hold much of the first steps' statistics, which would distort the two
models' numbers by different amounts; with the population statistics of the final weights the
margin measures conditioning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from seqflows import SLVM, FlowModel
from seqflows.data import FixedSequences, TrainingSequences
from seqflows.data.bouncing_balls import disc_coverage
from seqflows.data.controlled import ControlledBalls
from test_controlled import centre_of_mass

SIZE, RADIUS, SPEED = 8, 1.5, 1.5  # the tiny controlled set
TRAINING_STEPS, BATCH = 80, 16
RECALIBRATION_BATCHES = 8
MARGIN = {"flow": 1.0, "slvm": 0.3}  # nats per dimension


def batch(dataset: TrainingSequences, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    frames, actions = zip(*(dataset[step * BATCH + i] for i in range(BATCH)), strict=True)
    return torch.stack(frames), torch.stack(actions)


@torch.no_grad()
def recalibrate(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """Recomputes every BatchNorm's running mean and variance as the average over ``batches``
    (in train mode, weights unchanged), then leaves ``model`` in eval mode."""
    norms = [
        module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    model.train()
    generator = torch.Generator().manual_seed(0)
    for frames, conditions in batches:
        model.loss(frames, generator, conditions=conditions)
    model.eval()


def train(kind: str, condition_dim: int) -> tuple[nn.Module, float]:
    """A tiny 1-AF (``flow``) or SLVM w/ 1-AF (``slvm``) trained briefly on the controlled balls
    (with their actions when ``condition_dim``), and its test nats per dimension (the SLVM's:
    minus its ELBO); the same frames, budget and seed for both twins."""
    simulator = ControlledBalls(num_frames=5, size=SIZE, radius=RADIUS, speed=SPEED)
    data = TrainingSequences(simulator, length=5, noise="uniform", seed=0, conditions=True)
    test = FixedSequences(simulator, length=5, noise="uniform", count=64, conditions=True)
    torch.manual_seed(0)
    settings = {"window": 1, "hidden": 16, "condition_dim": condition_dim}
    if kind == "flow":
        model: nn.Module = FlowModel(simulator.frame_shape, **settings)
    else:
        small = {"latent_dim": 4, "lstm_hidden": 16, "encoder_features": 16, "conv_width": 8}
        model = SLVM(simulator.frame_shape, num_transforms=1, **small, **settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for step in range(TRAINING_STEPS):
        frames, actions = batch(data, step)
        loss = model.loss(frames, generator, conditions=actions if condition_dim else None).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    batches = [batch(data, TRAINING_STEPS + index) for index in range(RECALIBRATION_BATCHES)]
    recalibrate(
        model, [(frames, actions if condition_dim else None) for frames, actions in batches]
    )
    frames, actions = zip(*(test[j] for j in range(len(test))), strict=True)
    with torch.no_grad():
        conditions = torch.stack(actions) if condition_dim else None
        scores = model.scores(torch.stack(frames), torch.Generator().manual_seed(2), conditions)
    return model, -float(scores.log_prob.mean()) / SIZE**2


@pytest.fixture(scope="module")
def trained() -> dict[tuple[str, int], tuple[nn.Module, float]]:
    return {
        (kind, condition_dim): train(kind, condition_dim)
        for kind in ("flow", "slvm")
        for condition_dim in (0, 2)
    }


@pytest.mark.parametrize("kind", ["flow", "slvm"])
def test_the_conditioned_model_beats_the_unconditioned_one(trained: dict, kind: str) -> None:
    unconditioned, conditioned = trained[kind, 0][1], trained[kind, 2][1]
    # Nats per dimension, BatchNorm recalibrated for both; measured: 1-AF -1.24 against 5.30,
    # SLVM w/ 1-AF -1.85 against -1.15. BatchNorm does not make the 1-AF's gap: with the
    # running averages of training it was -1.12 against 4.23, with each test batch's own
    # statistics -1.24 against 4.84; the unconditioned flow, which cannot know where the ball
    # goes, scores very unevenly after so short a training (-0.46 on its last training batch).
    assert conditioned < unconditioned - MARGIN[kind], (conditioned, unconditioned)


@pytest.mark.parametrize("kind", ["flow", "slvm"])
def test_flipping_the_actions_moves_the_prediction_the_other_way(trained: dict, kind: str) -> None:
    model = trained[kind, 2][0]
    ball = disc_coverage(np.array([[SIZE / 2, SIZE / 2]]), RADIUS, SIZE)  # in the middle
    context = torch.from_numpy(ball).float().view(1, 1, 1, SIZE, SIZE)
    for axis in (0, 1):  # rows, then columns
        centres = []
        for sign in (1.0, -1.0):
            actions = torch.zeros(1, 2, 2)
            actions[0, 1, axis] = sign * SPEED  # the action of the predicted frame
            with torch.no_grad():
                predicted = model.sample(
                    1, 1, context=context, temperature=0.0, conditions=actions
                )
            centres.append(centre_of_mass(predicted.clamp(min=0)[0].numpy())[0, axis])
        # Pushed one way, then the other; measured: 1-AF rows 4.79 and 2.10, columns 4.63 and
        # 1.96; SLVM w/ 1-AF rows 4.62 and 2.34, columns 4.56 and 2.42.
        assert centres[0] > centres[1] + 0.25, (axis, centres)
