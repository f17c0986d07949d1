"""Conditioned models use the actions of the controlled balls: a conditioned 1-AF and a
conditioned SLVM w/ 1-AF, trained briefly at a tiny scale from three seeds, score the same test
sequences worse when told the ball moves the other way (flipped actions), and their predictions
follow the actions.

Each verdict compares a trained model with itself and averages over the seeds: a short training
sometimes has barely started to use the actions (on one seed of one kernel set the 1-AF's
prediction moved by 0.07 px), and which seed that is depends on the CPU's kernels and thread
count. Comparing each model with an unconditioned twin (same frames, budget and seed) was not
robust either: over seeds 0-2, with AVX-512 and with AVX2-only kernels, the twins' gap ranged
from -0.98 to +2.52 nats per dimension for the 1-AF and from -1.50 to +6.92 for the SLVM (it
failed on an AVX2-only CPU, issue 24). For the SLVM no large gap is to be expected: its latent
can carry the ball's move, which the actions (uniform in a square of side 3 px) are worth about
2 log 3 = 2.2 nats of, 0.03 nats per dimension of an 8 x 8 frame; the reproduction's
conditioning study compares the twins at a real budget (docs/results.md).

The models are scored in eval mode after their BatchNorm statistics were recomputed over
training batches (:func:`recalibrate`): after so short a training the running averages (momentum
0.1) still hold much of the first steps' statistics."""

from __future__ import annotations

import statistics

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
TRAINING_STEPS, BATCH, LEARNING_RATE = 80, 16, 3e-3
RECALIBRATION_BATCHES = 8
SEEDS = (0, 1, 2)  # a 1-AF and an SLVM w/ 1-AF trained from each
MARGIN = {"flow": 1.0, "slvm": 0.3}  # nats per dimension, the mean over SEEDS


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


def simulator() -> ControlledBalls:
    return ControlledBalls(num_frames=5, size=SIZE, radius=RADIUS, speed=SPEED)


def train(kind: str, seed: int = 0) -> nn.Module:
    """A tiny conditioned 1-AF (``flow``) or SLVM w/ 1-AF (``slvm``) trained briefly on the
    controlled balls with their actions, BatchNorm recalibrated, in eval mode."""
    data = TrainingSequences(simulator(), length=5, noise="uniform", seed=seed, conditions=True)
    torch.manual_seed(seed)
    settings = {"window": 1, "hidden": 16, "condition_dim": 2}
    if kind == "flow":
        model: nn.Module = FlowModel(simulator().frame_shape, **settings)
    else:
        small = {"latent_dim": 4, "lstm_hidden": 16, "encoder_features": 16, "conv_width": 8}
        model = SLVM(simulator().frame_shape, num_transforms=1, **small, **settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed + 1)
    for step in range(TRAINING_STEPS):
        frames, actions = batch(data, step)
        loss = model.loss(frames, generator, conditions=actions).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    recalibrate(
        model, [batch(data, TRAINING_STEPS + index) for index in range(RECALIBRATION_BATCHES)]
    )
    return model


def nats_per_dim(model: nn.Module, flip_actions: bool = False) -> float:
    """The model's test nats per dimension (the SLVM's: minus its ELBO) on 64 held-out sequences
    given their actions (flipped: minus them); the same posterior samples either way."""
    test = FixedSequences(simulator(), length=5, noise="uniform", count=64, conditions=True)
    frames, actions = zip(*(test[j] for j in range(len(test))), strict=True)
    frames, actions = torch.stack(frames), torch.stack(actions)
    with torch.no_grad():
        conditions = -actions if flip_actions else actions
        scores = model.scores(frames, torch.Generator().manual_seed(2), conditions=conditions)
    return -float(scores.log_prob.mean()) / SIZE**2


def prediction_shift(model: nn.Module, axis: int) -> float:
    """How far (pixels, along ``axis``: 0 rows, 1 columns) the mean prediction of the frame
    after a ball in the middle moves between the action +SPEED and -SPEED along that axis."""
    ball = disc_coverage(np.array([[SIZE / 2, SIZE / 2]]), RADIUS, SIZE)  # in the middle
    context = torch.from_numpy(ball).float().view(1, 1, 1, SIZE, SIZE)
    centres = []
    for sign in (1.0, -1.0):
        actions = torch.zeros(1, 2, 2)
        actions[0, 1, axis] = sign * SPEED  # the action of the predicted frame
        with torch.no_grad():
            predicted = model.sample(1, 1, context=context, temperature=0.0, conditions=actions)
        centres.append(centre_of_mass(predicted.clamp(min=0)[0].numpy())[0, axis])
    return centres[0] - centres[1]


@pytest.fixture(scope="module")
def trained() -> dict[str, list[nn.Module]]:
    return {kind: [train(kind, seed) for seed in SEEDS] for kind in ("flow", "slvm")}


@pytest.mark.parametrize("kind", ["flow", "slvm"])
def test_the_conditioned_model_scores_worse_given_flipped_actions(
    trained: dict, kind: str
) -> None:
    """The models use the actions: told the ball moves the other way, they score the same
    sequences worse, on average over the seeds by a margin (nats per dimension). Measured, per
    seed 0, 1, 2 (2 threads): 1-AF 4.35, 1.07, 2.91 with AVX-512 kernels, 1.10, 0.07, 17.8 with
    AVX2 only; SLVM w/ 1-AF 32.6, 0.69, 0.09 and 2.59, 3.51, 5.56 (one seed's model may barely
    use the actions yet, hence the mean)."""
    gains = [
        nats_per_dim(model, flip_actions=True) - nats_per_dim(model) for model in trained[kind]
    ]
    assert statistics.mean(gains) > MARGIN[kind], gains


@pytest.mark.parametrize("kind", ["flow", "slvm"])
def test_flipping_the_actions_moves_the_prediction_the_other_way(trained: dict, kind: str) -> None:
    """Pushed one way, then the other, the predicted ball moves accordingly along both axes, on
    average over the seeds by more than a quarter pixel. Measured, rows and columns per seed:
    1-AF (2.69, 2.68), (0.78, 1.38), (1.35, 1.40) with AVX-512 kernels, (2.07, 1.49),
    (0.07, -0.22), (1.71, 2.04) with AVX2 only; SLVM w/ 1-AF (2.01, 1.88), (0.85, 0.41),
    (0.76, 1.29) and (1.85, 2.05), (1.94, 2.28), (1.88, 1.78)."""
    for axis in (0, 1):  # rows, then columns
        shifts = [prediction_shift(model, axis) for model in trained[kind]]
        assert statistics.mean(shifts) > 0.25, (axis, shifts)
