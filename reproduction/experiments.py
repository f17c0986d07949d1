r"""The reproduction's experiments, as data: the paper's numbers, the reduced scale, the studies.

Every run of ``python -m reproduction reproduce`` is one :class:`Experiment`: a shipped
configuration (the paper's full-size setting) and the overrides that bring it to the scale of
a 2-core CPU (:data:`MOVING_MNIST_SCALE`, :func:`moving_mnist_width`,
:data:`BOUNCING_BALLS_SCALE`) with a budget in the paper's proportions (:func:`budget`).
:data:`STUDIES` are controlled comparisons (one setting changed). :func:`parameter_counts`
reconciles Table 2 with the authors' code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from seqflows.app.config import find_config, load_config
from seqflows.atomic import write_atomically
from seqflows.data import MovingMNIST, load_digits
from seqflows.data.moving_mnist import downscale_digits
from seqflows.data.simulators import render_sequences
from seqflows.flows import FlowModel
from seqflows.slvm import SLVM

__all__ = [
    "AUTHORS_PARAMETERS",
    "BF16_SPEEDUP",
    "BOUNCING_BALLS_SCALE",
    "CONFIGS",
    "EVALUATED_TRAIN_SEQUENCES",
    "LABELS",
    "MOVING_MNIST_SCALE",
    "PAPER",
    "PAPER_PARAMETERS",
    "SAME_FRAMES",
    "STEPS",
    "STOPPED_IMPROVING",
    "STUDIES",
    "Experiment",
    "Study",
    "budget",
    "experiments",
    "moving_mnist_width",
    "parameter_counts",
    "render_moving_mnist",
    "study_experiments",
    "unused_parameters",
]

CONFIGS = find_config("mmnist_1af").parent  # the configurations shipped with the package

# The paper's Moving MNIST numbers (Tables 1-4): nats per pixel per channel on the paper's
# scale, the density of 0-255 pixel values (``nats_per_dim_8bit``).
PAPER: dict[str, dict[str, float]] = {
    "test": {"1af": -2.15, "2af": -2.13, "slvm": -1.92, "slvm_1af": -1.86},
    "train": {"1af": -2.06, "2af": -2.04, "slvm": -1.93, "slvm_1af": -1.85},
    "corr_x": {"slvm_1af": 0.24},
    "corr_noise": {"slvm_1af": 0.02},
}
# Table 2, thousands of parameters.
PAPER_PARAMETERS: dict[str, dict[str, int]] = {
    "mmnist": {"1af": 343, "2af": 686, "slvm": 11302, "slvm_1af": 10592},
    "bair": {"1af": 363, "2af": 726, "slvm": 11325, "slvm_1af": 10643},
    "kth": {"1af": 343, "2af": 686, "slvm": 11302, "slvm_1af": 10592},
}
# What the authors' code builds for Table 2 (counted by running it): every count but BAIR's
# SLVM w/ 1-AF, which the table prints as 10,643k.
AUTHORS_PARAMETERS: dict[str, dict[str, int]] = {
    "mmnist": {"1af": 343_234, "2af": 686_468, "slvm": 11_302_402, "slvm_1af": 10_591_940},
    "bair": {"1af": 363_078, "2af": 726_156, "slvm": 11_324_934},
    "kth": {"1af": 343_234, "2af": 686_468, "slvm": 11_302_402, "slvm_1af": 10_591_940},
}
LABELS = {
    "1af": "1-AF",
    "2af": "2-AF",
    "slvm": "SLVM",
    "slvm_1af": "SLVM w/ 1-AF",
    "slvm_2af": "SLVM w/ 2-AF",
}

# The reduced scale (docs/results.md says why): half the frame size and half the width of every
# network, the paper's batch sizes, 1500 steps at a larger learning rate that falls to 0 (at a
# constant 5e-4 the flows' likelihood swung by up to a nat per dimension from one validation to
# the next until the end of the run).
SLVM_HALF_WIDTH = (
    "model.conv_width=32",
    "model.encoder_features=64",
    "model.latent_dim=64",
    "model.lstm_hidden=128",
)
# The published runs trained in float32; the shipped configurations now train the models that
# the precision study found neutral in bf16 where the CPU has it (``precision: auto``), so the
# reproduction pins float32 to stay the runs it published.
MOVING_MNIST_SCALE = (
    "train.precision=32",
    "data.dataset=array",
    "data.size=32",
    "data.validation_sequences=256",
    "data.test_sequences=256",
    "data.num_workers=1",
    "train.learning_rate=5e-4",
    "train.lr_schedule=cosine",
    "train.val_sequences=128",
    "train.log_every=25",
    "evaluate.batch_size=32",
    "evaluate.iwae_samples=100",
)
BOUNCING_BALLS_SCALE = (
    "train.precision=32",
    "data.test_sequences=256",
    "train.lr_schedule=cosine",
    "evaluate.iwae_samples=100",
)  # configs/bouncing_balls_*.yaml are at half width already
# Steps of the flows and of SLVM w/ M-AF; the SLVM baseline gets twice as many (Appendix B:
# 200k against 100k; it is also about 4x cheaper per step here).
STEPS = {"moving_mnist": 1500, "bouncing_balls": 600, "controlled_balls": 600}
# One evaluation protocol for every model of a comparison: crops of 16 frames (the longest
# context any model here needs is the 2-AF's 6), the last 10 scored, the others context.
SAME_FRAMES = ("data.eval_length=16", "evaluate.scored_frames=10")
# A validation curve that gains less than this in the last quarter of the run had stopped
# improving.
STOPPED_IMPROVING = 0.01
# Sizes of the rendered Moving MNIST set: training, validation and test sequences.
MOVING_MNIST_SEQUENCES = (2000, 256, 256)
TRAIN_DIGITS = (0, 8000)
TEST_DIGITS = (8000, 10000)
RENDER_SEEDS = {"train": 1, "validation": 2, "test": 3}
EVALUATED_TRAIN_SEQUENCES = 256


@dataclass(frozen=True)
class Experiment:
    r"""One training run of the reproduction.

    Attributes:
        dataset: ``moving_mnist`` or ``bouncing_balls``.
        model: ``1af``, ``2af``, ``slvm``, ``slvm_1af`` or ``slvm_2af``.
        config: The full-size configuration it starts from.
        overrides: ``section.key=value`` changes to it (the reduced scale).
        study: The study and variant it belongs to (``batch_norm/per_step``), or "" for the
            main reproduction.
    """

    dataset: str
    model: str
    config: Path
    overrides: tuple[str, ...]
    study: str = ""

    @property
    def name(self) -> str:
        main = f"{self.dataset}/{self.model}"
        return f"studies/{self.study}/{main}" if self.study else main

    @property
    def label(self) -> str:
        return LABELS[self.model]


@dataclass(frozen=True)
class Study:
    r"""A controlled comparison: the same runs with one setting changed.

    Attributes:
        question: What it measures, for the tables.
        models: The Moving MNIST models it trains.
        variants: Variant name -> overrides applied after the reduced scale.
        budget: Fraction of the main reproduction's steps.
        evaluations: The evaluations of each run (``test``, ``test_same_frames``, ``train``).
        elbo_only: Score SLVMs by the ELBO alone (no IWAE bound): cheaper, for spreads.
        dataset: Where it trains: ``moving_mnist`` (reduced scale), ``bouncing_balls`` or
            ``controlled_balls`` (balls that known per-step actions move).
        step_factors: Variant -> model -> factor on its steps (1 where absent): a variant that
            trains faster per step gets the steps the same time buys.
    """

    question: str
    models: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]
    budget: float = 1.0
    evaluations: tuple[str, ...] = ("test",)
    elbo_only: bool = False
    dataset: str = "moving_mnist"
    step_factors: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


# Training seeds (initial weights, data order, crops and noise) of the seed studies.
SEED_VARIANTS: dict[str, tuple[str, ...]] = {
    f"seed{seed}": (f"train.seed={seed}",) for seed in (0, 1, 2)
}

# Training step time float32 / bf16-mixed at the paper's full size (benchmarks/train_step.py
# --allocator retain, benchmarks/results/train_step*.json): the steps bf16 buys in float32's time.
BF16_SPEEDUP = {"1af": 1.96, "slvm": 1.65, "slvm_1af": 1.94}

STUDIES: dict[str, Study] = {
    "batch_norm": Study(
        "training-mode BatchNorm statistics of the 1-AF: pooled over all time steps, or per "
        "time step as the authors' step loop",
        ("1af",),
        {"pooled": ("model.batch_norm=pooled",), "per_step": ("model.batch_norm=per_step",)},
    ),
    "init": Study(
        "initialisation of the SLVM: PyTorch's default, or the authors' (xavier-normal, zero "
        "biases, 0.1 before ReLU, BatchNorm scales ~ N(1, 0.02))",
        ("slvm",),
        {"default": ("model.init=default",), "reference": ("model.init=reference",)},
    ),
    "padding": Study(
        "padding of the 1-AF conditioner's convolutions: zeros (the paper), or the outermost "
        "pixels replicated, where zero padding meets always-black borders (the frame of the "
        "noise panels)",
        ("1af",),
        {"zeros": ("model.padding=zeros",), "replicate": ("model.padding=replicate",)},
    ),
    "transform": Study(
        "the 1-AF's transform: affine in y_t (the paper's), or a monotonic rational-quadratic "
        "spline of the standardised frame (beyond the paper: its future work)",
        ("1af",),
        {"affine": (), "spline": ("model.transforms=[spline]",)},
    ),
    "transform_balls": Study(
        "the 1-AF's transform on bouncing balls: affine in y_t, or a monotonic "
        "rational-quadratic spline (beyond the paper)",
        ("1af",),
        {"affine": (), "spline": ("model.transforms=[spline]",)},
        dataset="bouncing_balls",
    ),
    "prior": Study(
        "the prior of SLVM w/ 1-AF: the LSTM Gaussian (the paper's), or that Gaussian pushed "
        "through an affine autoregressive flow across time on z (beyond the paper: its future "
        "work; the KL term is then a Monte-Carlo estimate)",
        ("slvm_1af",),
        {"gaussian": (), "flow": ("model.prior_transforms=[affine]",)},
    ),
    "prior_balls": Study(
        "the prior of SLVM w/ 1-AF on bouncing balls: the LSTM Gaussian, or that Gaussian pushed "
        "through an affine autoregressive flow across time on z (beyond the paper)",
        ("slvm_1af",),
        {"gaussian": (), "flow": ("model.prior_transforms=[affine]",)},
        dataset="bouncing_balls",
    ),
    "precision": Study(
        "training precision of every model: float32, or bfloat16 mixed precision (autocast: "
        "convolutions and matrix products in bf16; weights, optimizer state, log-determinants, "
        "base densities and KL terms in float32); evaluated in float32",
        ("1af", "2af", "slvm", "slvm_1af"),
        {"fp32": ("train.precision=32",), "bf16": ("train.precision=bf16-mixed",)},
    ),
    "bf16_budget": Study(
        "float32 against bfloat16 mixed precision given the same training time: the bf16 runs "
        "take the steps their measured speed-up buys (1-AF 1.96x, SLVM 1.65x, SLVM w/ 1-AF "
        "1.94x the main runs' steps); evaluated in float32",
        ("1af", "slvm", "slvm_1af"),
        {"fp32": ("train.precision=32",), "bf16": ("train.precision=bf16-mixed",)},
        step_factors={"bf16": BF16_SPEEDUP},
    ),
    "conditioning": Study(
        "conditioning on known actions (beyond the paper): the 1-AF and the SLVM w/ 1-AF on "
        "controlled balls, given each step's velocity command or not",
        ("1af", "slvm_1af"),
        {
            "unconditioned": ("model.condition_dim=0", "data.conditions=null"),
            "conditioned": (),
        },
        dataset="controlled_balls",
    ),
    "seeds": Study(
        "seed-to-seed spread (initial weights, data order, crops and noise) of every model at "
        "a third of the budget",
        ("1af", "slvm", "slvm_1af", "2af"),
        SEED_VARIANTS,
        budget=1 / 3,
        elbo_only=True,
    ),
    "seeds_balls": Study(
        "the paper's main claim with seeds: the SLVM against SLVM w/ 1-AF on bouncing balls, "
        "three training seeds each at the published budget (seed 0 is the main run)",
        ("slvm", "slvm_1af"),
        SEED_VARIANTS,
        dataset="bouncing_balls",
    ),
    "transform_seeds": Study(
        "the spline's gain with seeds: the affine and the spline 1-AF, three training seeds "
        "each at a third of the budget (the affine runs are the seeds study's)",
        ("1af",),
        {
            **{f"affine_{name}": changes for name, changes in SEED_VARIANTS.items()},
            **{
                f"spline_{name}": (*changes, "model.transforms=[spline]")
                for name, changes in SEED_VARIANTS.items()
            },
        },
        budget=1 / 3,
        elbo_only=True,
    ),
    "spline_slvm": Study(
        "the spline inside the SLVM: SLVM w/ 1-AF with its transform affine (the main run) or "
        "a spline, at the published budget",
        ("slvm_1af",),
        {"affine": (), "spline": ("model.transforms=[spline]",)},
    ),
    "spline_2af": Study(
        "a spline 2-AF: both transforms affine (the main run) or splines, at the published budget",
        ("2af",),
        {"affine": (), "spline": ("model.transforms=[spline,spline]",)},
    ),
    "within_frames": Study(
        "dependence within a frame (beyond the paper): the affine and the spline 1-AF with the "
        "base N(0, I), or with a multi-scale coupling flow over each frame conditioned on the "
        "past (base 'glow': affine couplings under the affine 1-AF, spline couplings under the "
        "spline 1-AF), seed 0 at a third of the budget (the runs without it are those of the "
        "seeds studies)",
        ("1af",),
        {
            "affine": SEED_VARIANTS["seed0"],
            "spline": (*SEED_VARIANTS["seed0"], "model.transforms=[spline]"),
            "affine_glow": (*SEED_VARIANTS["seed0"], "model.base=glow"),
            "spline_glow": (
                *SEED_VARIANTS["seed0"],
                "model.transforms=[spline]",
                "model.base=glow",
                "model.glow_coupling=spline",
            ),
        },
        budget=1 / 3,
        elbo_only=True,
    ),
    "within_frames_balls": Study(
        "dependence within a frame on bouncing balls (beyond the paper): the affine and the "
        "spline 1-AF with the base N(0, I), or with a multi-scale coupling flow over each frame "
        "(base 'glow': affine couplings under the affine 1-AF, spline under the spline), at the "
        "published budget (the runs without it are those of transform_balls)",
        ("1af",),
        {
            "affine": (),
            "spline": ("model.transforms=[spline]",),
            "affine_glow": ("model.base=glow",),
            "spline_glow": (
                "model.transforms=[spline]",
                "model.base=glow",
                "model.glow_coupling=spline",
            ),
        },
        dataset="bouncing_balls",
    ),
    "slvm_likelihood_balls": Study(
        "dependence within a frame in the SLVM (beyond the paper): SLVM w/ 1-AF on bouncing "
        "balls with the paper's likelihood p(y_t | z_t), a diagonal Gaussian (the main run), or "
        "that Gaussian's standardised residual through a multi-scale coupling flow over each "
        "frame conditioned on its loc and log-scale maps (latent.likelihood_base 'glow', affine "
        "couplings), at the published budget",
        ("slvm_1af",),
        {"diagonal": (), "glow": ("model.latent.likelihood_base=glow",)},
        dataset="bouncing_balls",
    ),
}


def moving_mnist_width(model: str) -> tuple[str, ...]:
    r"""Half the width of every network of ``model`` (its flow's conditioners, its SLVM)."""
    return ("model.hidden=32", *(SLVM_HALF_WIDTH if model.startswith("slvm") else ()))


def budget(dataset: str, model: str, fraction: float = 1.0) -> tuple[str, ...]:
    r"""The steps of a run, in the paper's proportions: the SLVM baseline gets twice the steps
    of the other models (Appendix B), and validations and checkpoints come 6 times per run."""
    steps = round(STEPS[dataset] * fraction) * (2 if model == "slvm" else 1)
    every = max(steps // 6, 1)
    return (
        f"train.max_steps={steps}",
        f"train.val_every={every}",
        f"train.checkpoint_every={every}",
    )


def experiments(
    moving_mnist_array: str | os.PathLike[str], models: Sequence[str] = tuple(LABELS)
) -> list[Experiment]:
    r"""The runs: every model on Moving MNIST (at reduced scale) and on bouncing balls.

    Arguments:
        moving_mnist_array: The array written by :func:`render_moving_mnist`.
        models: Which of ``1af``, ``2af``, ``slvm``, ``slvm_1af``, ``slvm_2af`` to run.

    Example:
        >>> runs = experiments("mm.npy", ["slvm"])
        >>> [run.name for run in runs]
        ['moving_mnist/slvm', 'bouncing_balls/slvm']
        >>> [item for item in runs[0].overrides if item.startswith("train.max_steps")]
        ['train.max_steps=3000']
    """
    unknown = sorted(set(models) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(LABELS)}")
    return [_moving_mnist_run(model, moving_mnist_array) for model in models] + [
        _rendered_run("bouncing_balls", model) for model in models
    ]


def study_experiments(name: str, moving_mnist_array: str | os.PathLike[str]) -> list[Experiment]:
    r"""The runs of the study ``name`` (:data:`STUDIES`), on its dataset (reduced-scale Moving
    MNIST unless it says otherwise).

    Example:
        >>> [run.study for run in study_experiments("batch_norm", "mm.npy")]
        ['batch_norm/pooled', 'batch_norm/per_step']
    """
    study = STUDIES[name]
    runs = []
    for model in study.models:  # each model's variants together (seeds: one model done first)
        for variant, overrides in study.variants.items():
            changes = (*overrides, *(("evaluate.iwae_samples=0",) if study.elbo_only else ()))
            fraction = study.budget * study.step_factors.get(variant, {}).get(model, 1.0)
            if study.dataset != "moving_mnist":
                run = _rendered_run(study.dataset, model, fraction, changes, f"{name}/{variant}")
            else:
                run = _moving_mnist_run(
                    model, moving_mnist_array, fraction, changes, f"{name}/{variant}"
                )
            runs.append(run)
    return runs


def _moving_mnist_run(
    model: str,
    moving_mnist_array: str | os.PathLike[str],
    fraction: float = 1.0,
    changes: Sequence[str] = (),
    study: str = "",
) -> Experiment:
    r"""A run of ``model`` on the reduced-scale Moving MNIST: the full-size configuration at
    half width, ``fraction`` of the budget, then ``changes``."""
    return Experiment(
        "moving_mnist",
        model,
        CONFIGS / f"mmnist_{model}.yaml",
        (
            *MOVING_MNIST_SCALE,
            *moving_mnist_width(model),
            *budget("moving_mnist", model, fraction),
            f"data.path={moving_mnist_array}",
            *changes,
        ),
        study=study,
    )


def _rendered_run(
    dataset: str,
    model: str,
    fraction: float = 1.0,
    changes: Sequence[str] = (),
    study: str = "",
) -> Experiment:
    r"""A run of ``model`` on rendered balls, ``bouncing_balls`` or ``controlled_balls`` (their
    shipped configurations are at half width already): ``fraction`` of the budget, then
    ``changes``."""
    return Experiment(
        dataset,
        model,
        CONFIGS / f"{dataset}_{model}.yaml",
        (*BOUNCING_BALLS_SCALE, *budget(dataset, model, fraction), *changes),
        study=study,
    )


def render_moving_mnist(
    digits_file: str | os.PathLike[str],
    path: str | os.PathLike[str],
    sequences: tuple[int, int, int] = MOVING_MNIST_SEQUENCES,
) -> Path:
    r"""Writes the half-resolution Moving MNIST set as one uint8 array (N, 20, 1, 32, 32).

    The array holds [training | validation | test] sequences, the order ``data.dataset=array``
    splits it in (``data.validation_sequences`` and ``data.test_sequences`` at the end).
    Training and validation sequences use digits 0-7999, test sequences digits 8000-9999 of
    ``digits_file`` (the MNIST test images); each part has its own seed (:data:`RENDER_SEEDS`).
    An existing file with the same contents is kept.
    """
    path = Path(path)
    parts = []
    for split, count in zip(("train", "validation", "test"), sequences, strict=True):
        start, stop = TEST_DIGITS if split == "test" else TRAIN_DIGITS
        digits = downscale_digits(load_digits(digits_file, start, stop), 2)
        simulator = MovingMNIST(digits, num_frames=20, size=32, num_digits=2)
        parts.append(render_sequences(simulator, count, RENDER_SEEDS[split]))
    array = np.concatenate(parts)
    if path.is_file():
        existing = np.load(path, mmap_mode="r")
        if existing.shape == array.shape and np.array_equal(existing, array):
            return path
    return write_atomically(path, lambda stream: np.save(stream, array))


def unused_parameters(model: nn.Module, event_shape: tuple[int, ...]) -> dict[str, int]:
    r"""Parameters the authors' code creates and Table 2 counts, but the objective never uses.

    * per flow transform, a learnable initial shift and scale of the padded context,
      2 x C x H x W, which the burn-in protocol never reads;
    * per flow transform, a bias in each of the 8 convolutions that BatchNorm follows
      (8 x hidden), whose gradient BatchNorm makes exactly zero;
    * in the SLVM, learnable initial parameters of each distribution: loc and log-scale of
      p(x_1) per pixel (2 x C x H x W) and of the prior and the posterior of z_1
      (4 x latent_dim), unused because every step is computed from z_0 = 0;
    * in the SLVM, the biases of the encoder's and decoder's convolutions that BatchNorm follows.

    seqflows builds none of them. ``model``: a flow or an SLVM built for frames of
    ``event_shape``; the SLVM's share is counted for each latent sequence model it holds.
    Returns {component: count}.
    """
    pixels = math.prod(event_shape)
    unused = {
        "initial shift and scale of each transform": 0,
        "conv biases before BatchNorm (flow)": 0,
    }
    for flow in (part for part in model.modules() if isinstance(part, FlowModel)):
        flows = flow.config.num_transforms
        unused["initial shift and scale of each transform"] += flows * 2 * pixels
        unused["conv biases before BatchNorm (flow)"] += flows * 8 * flow.config.conditioner.hidden
    for slvm in (part for part in model.modules() if isinstance(part, SLVM)):
        latent = slvm.config.latent
        layers = int(math.log2(event_shape[-1] // 4))  # stride-2 layers: 4 for 64x64
        width = latent.conv_width
        encoder = sum(width * 2**index for index in range(layers)) + latent.encoder_features
        decoder = sum(width * 2**index for index in range(layers))
        unused["initial loc and log-scale of p(x_1), p(z_1) and q(z_1)"] = (
            2 * pixels + 4 * latent.latent_dim
        )
        unused["conv biases before BatchNorm (SLVM)"] = encoder + decoder
    return unused


def parameter_counts(configs: Path = CONFIGS) -> dict[str, dict[str, dict[str, Any]]]:
    r"""Table 2 reconciled: parameters of every model at the paper's full size.

    Builds each model from configs/*.yaml and adds the parameters the authors' code counts but
    never uses (:func:`unused_parameters`): ours + unused gives the authors' count exactly.

    Returns:
        {dataset: {model: {"ours", "unused", "reconstructed", "authors", "paper_thousands"}}};
        "authors" is None where we have no exact count of the authors' code.
    """
    from seqflows.app.checkpoints import build_model

    table: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in ("mmnist", "bair", "kth"):
        for model in LABELS:
            path = configs / f"{dataset}_{model}.yaml"
            if not path.is_file():
                continue
            config = load_config(path)
            built = build_model(config, config.data.frame_shape)
            ours = sum(parameter.numel() for parameter in built.parameters())
            unused = unused_parameters(built, config.data.frame_shape)
            table.setdefault(dataset, {})[model] = {
                "ours": ours,
                "unused": unused,
                "reconstructed": ours + sum(unused.values()),
                "authors": AUTHORS_PARAMETERS[dataset].get(model),
                "paper_thousands": PAPER_PARAMETERS[dataset].get(model),
            }
    return table
