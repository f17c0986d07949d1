r"""``seqflows reproduce``: the paper's findings at a scale a 2-core CPU runs in a few hours.

What it does, in order (docs/results.md reads the results):

1. **Data.** Renders a fixed Moving MNIST set at half resolution (:func:`render_moving_mnist`):
   14 x 14 MNIST digits in 32 x 32 frames, 20 frames per sequence; training and validation
   sequences from digits 0-7999, test sequences from digits 8000-9999 of the MNIST test file.
   Bouncing balls are rendered on the fly.
2. **Training.** Each experiment of :func:`experiments` is the paper's full-size configuration
   (``configs/mmnist_*.yaml``, ``configs/bouncing_balls_1af.yaml``) with the overrides of
   :data:`MOVING_MNIST_SCALE` or :data:`BOUNCING_BALLS_SCALE`: a narrower network, fewer steps
   in the paper's proportions (:func:`budget`: the SLVM baseline twice the others', as
   Appendix B's 200k against 100k), at the paper's batch sizes. Each runs as its own
   ``seqflows train ... --resume`` process, so an interrupted reproduction continues.
3. **Evaluation.** The checkpoint of each run with the best validation score, on the test
   sequences (Table 1) with the paper's protocol and with one protocol for every model
   (:data:`SAME_FRAMES`: crops of 16, the last 10 scored), and on fixed crops of training
   sequences (Table 3): exact log-likelihood for flows, ELBO and IWAE bound for SLVMs, on [0, 1]
   and on the paper's 0-255 scale, and the temporal correlations of x and of the noise y
   (Table 4).
4. **Studies** (:data:`STUDIES`): BatchNorm statistics pooled or per time step (1-AF),
   PyTorch's or the authors' initialisation (SLVM), and the seed-to-seed spread of every model
   at a third of the budget, which decides which differences are ties.
5. **Figures.** Fig. 4 / Fig. 9 rows, samples (Fig. 10 / 11), training curves, corr_y during
   training (Fig. 7); parameter counts at the paper's full size reconciled with Table 2
   (:func:`parameter_counts`); the motivating example of Sec. 3.1.

Everything lands in ``--out`` (``results/``): one JSON per evaluation, ``summary.json`` with every
table, ``tables.md`` and the figures. Runs (checkpoints, logs) go to ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomically, write_text_atomically
from ..data import MovingMNIST, downscale_digits, load_digits, mnist, render_sequences
from .config import load_config
from .interrupt import Interrupted, run_forwarding_signals, signal_name

__all__ = [
    "BOUNCING_BALLS_SCALE",
    "MOVING_MNIST_SCALE",
    "PAPER",
    "Experiment",
    "TrainingFailed",
    "add_reproduce_arguments",
    "experiments",
    "parameter_counts",
    "render_moving_mnist",
    "run_reproduce",
]

CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # shipped with the package


class TrainingFailed(RuntimeError):
    """A training process of the reproduction ended with an error (its log has the details)."""


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
MOVING_MNIST_SCALE = (
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
    "data.test_sequences=256",
    "train.lr_schedule=cosine",
    "evaluate.iwae_samples=100",
)  # configs/bouncing_balls_*.yaml are at half width already
# Steps of the flows and of SLVM w/ M-AF; the SLVM baseline gets twice as many (Appendix B:
# 200k against 100k; it is also about 4x cheaper per step here).
STEPS = {"moving_mnist": 1500, "bouncing_balls": 600}
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
    """

    question: str
    models: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]
    budget: float = 1.0
    evaluations: tuple[str, ...] = ("test",)
    elbo_only: bool = False


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
    "seeds": Study(
        "seed-to-seed spread of every model (initial weights, data order, crops and noise) at "
        "a third of the budget",
        ("1af", "2af", "slvm", "slvm_1af"),
        {f"seed{seed}": (f"train.seed={seed}",) for seed in (0, 1, 2)},
        budget=1 / 3,
        elbo_only=True,
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
    runs = []
    for model in models:
        runs.append(
            Experiment(
                "moving_mnist",
                model,
                CONFIGS / f"mmnist_{model}.yaml",
                (
                    *MOVING_MNIST_SCALE,
                    *moving_mnist_width(model),
                    *budget("moving_mnist", model),
                    f"data.path={moving_mnist_array}",
                ),
            )
        )
    for model in models:
        runs.append(
            Experiment(
                "bouncing_balls",
                model,
                CONFIGS / f"bouncing_balls_{model}.yaml",
                (*BOUNCING_BALLS_SCALE, *budget("bouncing_balls", model)),
            )
        )
    return runs


def study_experiments(name: str, moving_mnist_array: str | os.PathLike[str]) -> list[Experiment]:
    r"""The runs of the study ``name`` (:data:`STUDIES`), on reduced-scale Moving MNIST.

    Example:
        >>> [run.study for run in study_experiments("batch_norm", "mm.npy")]
        ['batch_norm/pooled', 'batch_norm/per_step']
    """
    study = STUDIES[name]
    runs = []
    for variant, overrides in study.variants.items():
        for model in study.models:
            runs.append(
                Experiment(
                    "moving_mnist",
                    model,
                    CONFIGS / f"mmnist_{model}.yaml",
                    (
                        *MOVING_MNIST_SCALE,
                        *moving_mnist_width(model),
                        *budget("moving_mnist", model, study.budget),
                        f"data.path={moving_mnist_array}",
                        *overrides,
                        *(("evaluate.iwae_samples=0",) if study.elbo_only else ()),
                    ),
                    study=f"{name}/{variant}",
                )
            )
    return runs


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


def unused_parameters(config: Any, event_shape: tuple[int, ...]) -> dict[str, int]:
    r"""Parameters the authors' code creates and Table 2 counts, but the objective never uses.

    * per flow transform, a learnable initial shift and scale of the padded context,
      2 x C x H x W, which the burn-in protocol never reads;
    * per flow transform, a bias in each of the 8 convolutions that BatchNorm follows
      (8 x hidden), whose gradient BatchNorm makes exactly zero;
    * in the SLVM, learnable initial parameters of each distribution: loc and log-scale of
      p(x_1) per pixel (2 x C x H x W) and of the prior and the posterior of z_1
      (4 x latent_dim), unused because every step is computed from z_0 = 0;
    * in the SLVM, the biases of the encoder's and decoder's convolutions that BatchNorm follows.

    seqflows builds none of them. Returns {component: count}.
    """
    model = config.model
    pixels = math.prod(event_shape)
    flows = model.num_transforms
    unused = {
        "initial shift and scale of each transform": flows * 2 * pixels,
        "conv biases before BatchNorm (flow)": flows * 8 * model.hidden,
    }
    if model.type == "slvm":
        layers = int(math.log2(event_shape[-1] // 4))  # stride-2 layers: 4 for 64x64
        width = model.conv_width
        encoder = sum(width * 2**index for index in range(layers)) + model.encoder_features
        decoder = sum(width * 2**index for index in range(layers))
        unused["initial loc and log-scale of p(x_1), p(z_1) and q(z_1)"] = (
            2 * pixels + 4 * model.latent_dim
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
    from .checkpoints import build_model

    table: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in ("mmnist", "bair", "kth"):
        for model in LABELS:
            path = configs / f"{dataset}_{model}.yaml"
            if not path.is_file():
                continue
            config = load_config(path)
            built = build_model(config, config.data.frame_shape)
            ours = sum(parameter.numel() for parameter in built.parameters())
            unused = unused_parameters(config, config.data.frame_shape)
            table.setdefault(dataset, {})[model] = {
                "ours": ours,
                "unused": unused,
                "reconstructed": ours + sum(unused.values()),
                "authors": AUTHORS_PARAMETERS[dataset].get(model),
                "paper_thousands": PAPER_PARAMETERS[dataset].get(model),
            }
    return table


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows reproduce``."""
    parser.add_argument("--out", default="results", help="results and figures (default: results)")
    parser.add_argument(
        "--runs", default="runs/reproduce", help="checkpoints and logs (default: runs/reproduce)"
    )
    parser.add_argument(
        "--digits",
        help="the MNIST test images t10k-images-idx3-ubyte.gz (default: downloaded into "
        "ROOT/mnist, MD5-checked)",
    )
    parser.add_argument("--root", default="data", help="data root for the download")
    parser.add_argument(
        "--models",
        default=",".join(model for model in LABELS if model != "slvm_2af"),
        help="comma-separated, of 1af, 2af, slvm, slvm_1af, slvm_2af, or none "
        "(default: all but slvm_2af, which the time budget leaves out)",
    )
    parser.add_argument(
        "--datasets",
        default="moving_mnist,bouncing_balls",
        help="comma-separated, of moving_mnist, bouncing_balls",
    )
    parser.add_argument(
        "--studies",
        default=",".join(STUDIES),
        help=f"comma-separated, of {', '.join(STUDIES)}, or none (default: all); each trains "
        "its own runs on Moving MNIST",
    )
    parser.add_argument(
        "--set",
        dest="extra",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more overrides for every run, e.g. train.max_steps=100 for a quick try "
        "(the published results use none)",
    )
    parser.add_argument(
        "--sequences",
        type=int,
        default=None,
        help="evaluate only the first N sequences of each split (default: all 256)",
    )
    parser.add_argument("--no-motion", action="store_true", help="skip the motivating example")


def _names(text: str, known: Sequence[str], option: str) -> list[str]:
    """The comma-separated names of ``option`` (``none``: no name), checked against ``known``."""
    names = [name for name in text.split(",") if name and name != "none"]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"{option}: unknown {unknown}; choose from {list(known)} or none")
    return names


def run_reproduce(args: argparse.Namespace) -> int:
    r"""Trains, evaluates and draws everything; see the module's docstring."""
    out = Path(args.out)
    runs_root = Path(args.runs)
    models = _names(args.models, list(LABELS), "--models")
    datasets = _names(args.datasets, ["moving_mnist", "bouncing_balls"], "--datasets")
    studies = _names(args.studies, list(STUDIES), "--studies")
    started = time.perf_counter()
    say = _reporter()
    array = runs_root / "data" / "moving_mnist_32.npy"
    if "moving_mnist" in datasets:
        digits = args.digits or _download_digits(Path(args.root))
        say(f"rendering Moving MNIST 32x32 from {digits} into {array}")
        render_moving_mnist(digits, array)
    previous = out / "summary.json"  # runs of an earlier invocation stay unless redone
    earlier = json.loads(previous.read_text()) if previous.is_file() else {}
    summary: dict[str, Any] = {
        "runs": earlier.get("runs", {}),
        "studies": earlier.get("studies", {}),
        "machine": _machine(),
    }
    if "motion" in earlier:  # kept unless redone below
        summary["motion"] = earlier["motion"]
    evaluated: set[str] = set()
    for experiment in experiments(array, models):
        if experiment.dataset not in datasets:
            continue
        say(f"{experiment.name}: training ({experiment.label})")
        run_dir = runs_root / experiment.name
        timing = _train(experiment, run_dir, list(args.extra))
        say(f"{experiment.name}: evaluating and drawing")
        evaluations = ["test", "test_same_frames"]
        if experiment.dataset == "moving_mnist":
            evaluations.append("train")
        result = _evaluate(
            experiment, run_dir, out / experiment.name, args.sequences, timing, evaluations
        )
        _draw(run_dir, out / experiment.name)
        summary["runs"][experiment.name] = result
        evaluated.add(experiment.name)
    for name in studies if "moving_mnist" in datasets else ():
        study = summary["studies"].setdefault(name, {})
        for experiment in study_experiments(name, array):
            variant = experiment.study.split("/", 1)[1]
            main = _main_equivalent(experiment, array, list(args.extra))
            if main is not None and main.name in evaluated:  # by this invocation
                say(f"{experiment.name}: the main run {main.name}")
                study.setdefault(variant, {})[experiment.model] = summary["runs"][main.name]
                continue
            run_dir = runs_root / (experiment if main is None else main).name
            say(f"{experiment.name}: training ({experiment.label}) in {run_dir}")
            timing = _train(experiment, run_dir, list(args.extra))
            say(f"{experiment.name}: evaluating")
            result = _evaluate(
                experiment,
                run_dir,
                out / experiment.name,
                args.sequences,
                timing,
                STUDIES[name].evaluations,
            )
            study.setdefault(variant, {})[experiment.model] = result
    summary["parameters"] = parameter_counts()
    if not args.no_motion:
        from ..examples import motion

        say("motivating example (Sec. 3.1)")
        motion.main(["--out", str(out / "motion")])
        summary["motion"] = json.loads((out / "motion" / "results.json").read_text())
    for dataset in datasets:
        _comparison_figures(summary["runs"], dataset, runs_root, out / dataset)
    summary["overrides"] = {
        "moving_mnist": list(MOVING_MNIST_SCALE),
        "bouncing_balls": list(BOUNCING_BALLS_SCALE),
        "same_frames": list(SAME_FRAMES),
        "extra": list(args.extra),
    }
    summary["paper"] = PAPER
    summary["seconds"] = round(time.perf_counter() - started, 1)  # this invocation
    # every invocation's wall-clock time, oldest first (a resumed reproduction has several)
    summary["invocations"] = _invocations(earlier) + [
        {
            "seconds": summary["seconds"],
            "models": models,
            "datasets": datasets,
            "studies": studies,
            "extra": list(args.extra),
        }
    ]
    write_text_atomically(
        out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
    )
    write_text_atomically(out / "tables.md", format_tables(summary))
    say(f"done in {summary['seconds'] / 60:.1f} min: {out / 'tables.md'}")
    print(format_tables(summary))
    return 0


def _main_equivalent(experiment: Experiment, array: Path, extra: list[str]) -> Experiment | None:
    r"""The main reproduction's run that a study's run is identical to (the same resolved
    configuration but for its name), so that it is trained once; None if there is none."""
    (main,) = [
        run for run in experiments(array, [experiment.model]) if run.dataset == "moving_mnist"
    ]

    def resolved(run: Experiment) -> dict[str, Any]:
        values = load_config(run.config, [*run.overrides, *extra]).to_dict()
        values.pop("name")
        return values

    return main if resolved(main) == resolved(experiment) else None


def _invocations(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invocations recorded in an earlier summary (one per ``seconds`` when unlisted)."""
    if "invocations" in summary:
        return list(summary["invocations"])
    return [{"seconds": summary["seconds"]}] if "seconds" in summary else []


def _reporter() -> Callable[[str], None]:
    start = time.perf_counter()

    def say(message: str) -> None:
        minutes = (time.perf_counter() - start) / 60
        print(f"[reproduce {minutes:5.1f} min] {message}", file=sys.stderr, flush=True)

    return say


def _download_digits(root: Path) -> Path:
    name = "t10k-images-idx3-ubyte.gz"
    return mnist.download_mnist(root / "mnist", files=(name,))[name]


def _train(experiment: Experiment, run_dir: Path, extra: list[str]) -> dict[str, float]:
    r"""Runs (or continues) ``seqflows train`` in its own process, unless the run has reached
    ``train.max_steps`` already; returns its accumulated time.

    The seconds spent training are summed over interrupted invocations in
    ``RUN/reproduce_timing.json``, so the reported time is that of the whole run.
    """
    timing_file = run_dir / "reproduce_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {"seconds": 0.0}
    config = load_config(experiment.config, [*experiment.overrides, *extra])
    if _trained_steps(run_dir) >= config.train.max_steps:
        return timing  # finished: no process, no time added
    command = [
        sys.executable,
        "-m",
        "seqflows",
        "train",
        str(experiment.config),
        *experiment.overrides,
        *extra,
        "--out",
        str(run_dir),
        "--resume",
        "--no-progress",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir / "train.log", "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        status = run_forwarding_signals(command, stdout=log)
    interrupted = 128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT
    if status in interrupted:
        raise Interrupted(
            abs(status) % 128,
            f"training {experiment.name} was stopped by {signal_name(abs(status) % 128)} "
            f"(see {run_dir / 'train.log'}): run the same command again to continue",
        )
    if status != 0:
        last_line = _last_line(run_dir / "train.log")
        raise TrainingFailed(
            f"training {experiment.name} failed (exit {status}"
            + (f": {last_line}" if last_line else "")
            + f"); see {run_dir / 'train.log'}"
        )
    timing["seconds"] = round(timing["seconds"] + time.perf_counter() - start, 1)
    write_text_atomically(timing_file, json.dumps(timing, allow_nan=False) + "\n")
    return timing


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (the one-line error of a failed command), shortened."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[-1].startswith("$ "):
        return ""
    return lines[-1] if len(lines[-1]) <= 300 else lines[-1][:297] + "..."


def _trained_steps(run_dir: Path) -> int:
    """Optimizer steps of the run's last checkpoint (0 when there is none)."""
    from .checkpoints import checkpoint_step

    last = run_dir / "checkpoints" / "last.ckpt"
    return checkpoint_step(last) if last.is_file() else 0


EVALUATION_KEYS = (
    "nats_per_dim",
    "nats_per_dim_8bit",
    "elbo_nats_per_dim",
    "elbo_nats_per_dim_8bit",
    "iwae_nats_per_dim",
    "iwae_nats_per_dim_8bit",
    "iwae_samples",
    "corr_x",
    "corr_noise",
    "sequences",
    "frames_scored",
)


def _evaluate(
    experiment: Experiment,
    run_dir: Path,
    out: Path,
    sequences: int | None,
    timing: dict[str, float],
    evaluations: Sequence[str],
) -> dict[str, Any]:
    r"""Evaluates the selected checkpoint of a run.

    ``evaluations``: ``test`` (the paper's protocol of the model's configuration),
    ``test_same_frames`` (:data:`SAME_FRAMES`, one protocol for every model) and ``train``
    (fixed crops of training sequences, Table 3). Writes one JSON per evaluation into ``out``
    and the run's training curves (``metrics.csv``, every session of a resumed run).
    """
    import torch

    from .checkpoints import model_from_checkpoint
    from .config import Config
    from .datasets import evaluation_set
    from .evaluation import evaluate_model
    from .figures import read_run_metrics, write_metrics_csv

    checkpoint = _selected_checkpoint(run_dir)
    model, config, stored = model_from_checkpoint(checkpoint)
    result: dict[str, Any] = {
        "model": experiment.label,
        "dataset": experiment.dataset,
        "config": str(experiment.config.relative_to(CONFIGS.parent)),
        "overrides": list(experiment.overrides),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "steps": config.train.max_steps,
        "evaluated_checkpoint": checkpoint.name,
        "evaluated_step": int(stored.get("global_step", -1)),
        "batch_size": config.train.batch_size,
        "train_seconds": timing["seconds"],
        "threads": torch.get_num_threads(),
    }
    out.mkdir(parents=True, exist_ok=True)
    for evaluation_name in evaluations:
        split = "train" if evaluation_name == "train" else "test"
        protocol = SAME_FRAMES if evaluation_name == "test_same_frames" else ()
        settings = Config.from_dict(config.to_dict(), protocol)
        count = sequences or (EVALUATED_TRAIN_SEQUENCES if split == "train" else None)
        evaluation = evaluate_model(
            model,
            evaluation_set(settings, split, count=count),
            settings,
            split,
            batch_size=settings.evaluate.batch_size,
            iwae_samples=settings.evaluate.iwae_samples,
            iwae_chunk=settings.evaluate.iwae_chunk,
            scored_frames=settings.evaluate.scored_frames,
        )
        evaluation["checkpoint"] = str(checkpoint)
        text = json.dumps(evaluation, indent=2, allow_nan=False) + "\n"
        write_text_atomically(out / f"{evaluation_name}.json", text)
        result[evaluation_name] = {key: evaluation.get(key) for key in EVALUATION_KEYS}
    curves = read_run_metrics(run_dir)  # every session of the run: resumes included
    if curves:
        write_metrics_csv(curves, out / "metrics.csv")
        result["validation"] = validation_progress(out / "metrics.csv", config.train.max_steps)
    return result


def validation_progress(metrics: Path, max_steps: int) -> dict[str, Any]:
    r"""Whether a run's validation score had stopped improving.

    Returns the best and last validation nats/dim and the gain of the last quarter of the run
    (best after 3/4 of the steps minus best before; None without validations on both sides),
    and ``stopped_improving``: that gain is below :data:`STOPPED_IMPROVING`.
    """
    from .figures import read_metrics_csv

    points = [
        (step, value) for step, value in read_metrics_csv(metrics).get("val/nats_per_dim", [])
    ]
    points = [(step, value) for step, value in points if math.isfinite(value)]
    if not points:
        return {"best": None, "last": None, "gain_last_quarter": None, "stopped_improving": None}
    early = [value for step, value in points if step <= 0.75 * max_steps]
    late = [value for step, value in points if step > 0.75 * max_steps]
    gain = max(late) - max(early) if early and late else None
    return {
        "best": max(value for _, value in points),
        "last": points[-1][1],
        "gain_last_quarter": gain,
        "stopped_improving": None if gain is None else gain < STOPPED_IMPROVING,
    }


def _draw(run_dir: Path, out: Path) -> None:
    r"""Fig. 4 / Fig. 9 rows, samples and training curves of the selected checkpoint."""
    from ..cli import build_parser
    from .checkpoints import model_from_checkpoint

    checkpoint = _selected_checkpoint(run_dir)
    model, _, _ = model_from_checkpoint(checkpoint)
    figures = run_dir / "figures"
    draw = build_parser()
    for command in (
        ["visualize", str(checkpoint), "--out", str(figures), "--device", "cpu"],
        ["sample", str(checkpoint), "--out", str(figures), "--device", "cpu"]
        + ["--num", "4", "--length", "10", "--context", str(model.burn_in)],
    ):
        arguments = draw.parse_args(command)
        arguments.handler(arguments)
    for name in ("flow_rows.png", "samples.png", "curves.png"):
        if (figures / name).is_file():
            shutil.copyfile(figures / name, out / name)


def _selected_checkpoint(run_dir: Path) -> Path:
    r"""The checkpoint with the best validation score (validation sequences, never the test
    ones), else the last one: short runs at a large learning rate end wherever the last step
    left them, several hundredths of a nat from their best."""
    folder = run_dir / "checkpoints"
    best = sorted(folder.glob("best*.ckpt"), key=lambda path: path.stat().st_mtime)
    return best[-1] if best else folder / "last.ckpt"


def _comparison_figures(runs: Mapping[str, Any], dataset: str, runs_root: Path, out: Path) -> None:
    r"""Training curves of every model of a dataset on shared axes, and corr_y (Fig. 7)."""
    from .figures import read_metrics_csv, save_overlay

    columns: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, run in runs.items():
        if run["dataset"] != dataset:
            continue
        metrics = out / name.split("/")[1] / "metrics.csv"
        if metrics.is_file():
            columns[run["model"]] = read_metrics_csv(metrics)
    if not columns:
        return
    save_overlay(
        {label: values.get("val/nats_per_dim", []) for label, values in columns.items()},
        out / "validation_curves.png",
        "validation nats per pixel per channel (SLVMs: ELBO)",
    )
    save_overlay(
        {label: values.get("train/nats_per_dim", []) for label, values in columns.items()},
        out / "training_curves.png",
        "training nats per pixel per channel (SLVMs: ELBO), per batch",
    )
    noise = {label: values.get("train/corr_noise", []) for label, values in columns.items()}
    noise = {label: points for label, points in noise.items() if points}
    if noise:
        save_overlay(noise, out / "corr_noise_during_training.png", "temporal correlation of y")


MAIN_MODELS = ("1af", "2af", "slvm", "slvm_1af")
# The paper's findings on Moving MNIST, as (better, worse) pairs of models.
FINDINGS = (
    ("slvm_1af", "slvm", "SLVM w/ 1-AF beats the SLVM (the paper's main claim)"),
    ("2af", "1af", "2-AF is at least as good as 1-AF"),
    ("slvm", "1af", "the SLVM beats the 1-AF (paper: -1.92 against -2.15)"),
    ("slvm_1af", "1af", "SLVM w/ 1-AF beats the 1-AF"),
)


def seed_spread(summary: Mapping[str, Any], key: str = "nats_per_dim_8bit") -> dict[str, Any]:
    r"""Seed-to-seed standard deviation of each model's test score (the ``seeds`` study).

    Returns {model: {"values", "mean", "sd"}} (sample standard deviation over the seeds) for
    the models with at least two seeds; empty without the study.
    """
    spread: dict[str, Any] = {}
    variants = summary.get("studies", {}).get("seeds", {})
    for model in MAIN_MODELS:
        values = [
            runs[model]["test"][key]
            for runs in variants.values()
            if model in runs and runs[model]["test"].get(key) is not None
        ]
        if len(values) >= 2:
            mean = sum(values) / len(values)
            variance = sum((value - mean) ** 2 for value in values) / (len(values) - 1)
            spread[model] = {"values": values, "mean": mean, "sd": math.sqrt(variance)}
    return spread


def compare(
    better: float, worse: float, sd_better: float | None, sd_worse: float | None
) -> tuple[float, float | None, str]:
    r"""A difference between two single-seed scores, with the tie rule of the write-up.

    Two runs differ by chance with standard deviation sqrt(sd_a^2 + sd_b^2); a difference
    within twice that is a tie. Returns (difference, threshold or None, verdict).
    """
    difference = better - worse
    if sd_better is None or sd_worse is None:
        return difference, None, "holds" if difference > 0 else "does not hold"
    threshold = 2 * math.sqrt(sd_better**2 + sd_worse**2)
    if abs(difference) <= threshold:
        return difference, threshold, "tie"
    return difference, threshold, "holds" if difference > 0 else "reversed"


def format_tables(summary: Mapping[str, Any]) -> str:
    r"""The tables of docs/results.md, in Markdown, from ``summary.json``."""
    lines: list[str] = []
    runs = summary["runs"]
    spread = seed_spread(summary)
    moving = {
        name.split("/")[1]: run for name, run in runs.items() if run["dataset"] == "moving_mnist"
    }
    if moving:
        lines += [
            "### Beside the paper: Moving MNIST, nats per pixel per channel on the paper's 0-255 "
            "scale (Tables 1 and 3)",
            "",
            "Ours: density of the 8-bit pixel values (nats/dim on [0, 1] minus log 256), "
            "the paper's protocol of each model (the last 10 frames of crops of 13, 16 for the "
            "2-AF), best-by-validation checkpoint. SLVMs: IWAE bound, K = 100 (≥). A perfect "
            "predictor of the 8-bit frames scores -1.419 with the paper's noise.",
            "",
            "| model | test, ours | test, paper | ours − paper | train, ours | train, paper "
            "| train − test, ours | train − test, paper | seed sd |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for model, run in moving.items():
            test, train = run["test"], run.get("train")
            ours = test["nats_per_dim_8bit"]
            paper_test, paper_train = PAPER["test"].get(model), PAPER["train"].get(model)
            gap = None if train is None else train["nats_per_dim_8bit"] - ours
            paper_gap = None if paper_train is None else paper_train - paper_test
            sd = spread.get(model, {}).get("sd")
            lines.append(
                "| "
                + " | ".join(
                    [
                        run["model"],
                        _bound(ours, model),
                        _bound(paper_test, model, 2),
                        _number(None if paper_test is None else ours - paper_test, signed=True),
                        _bound(None if train is None else train["nats_per_dim_8bit"], model),
                        _bound(paper_train, model, 2),
                        _number(gap, signed=True),
                        _number(paper_gap, 2, signed=True),
                        _number(sd),
                    ]
                )
                + " |"
            )
        lines.append("")
    for dataset in ("moving_mnist", "bouncing_balls"):
        rows = {name.split("/")[1]: run for name, run in runs.items() if run["dataset"] == dataset}
        if not rows:
            continue
        lines += [
            f"### {dataset}: every model on the same frames, and the runs",
            "",
            "Test sequences, crops of 16 frames, the last 10 scored (the others context), "
            "nats per pixel per channel on the paper's scale and on [0, 1]; SLVMs: ELBO and "
            "IWAE (K = 100) bounds. Validation: best; gain of the last quarter of the run.",
            "",
            "| model | paper scale | [0, 1] | ELBO, paper scale | corr x | corr y "
            "| steps | best validation [0, 1] | last-quarter gain | parameters | train time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for model, run in rows.items():
            same = run.get("test_same_frames") or run["test"]
            validation = run.get("validation", {})
            gain = validation.get("gain_last_quarter")
            stopped = validation.get("stopped_improving")
            lines.append(
                "| "
                + " | ".join(
                    [
                        run["model"],
                        _bound(same["nats_per_dim_8bit"], model),
                        _bound(same["nats_per_dim"], model),
                        _bound(same.get("elbo_nats_per_dim_8bit"), model),
                        _number(same["corr_x"]),
                        _number(same["corr_noise"]),
                        f"{run['steps']:,}",
                        _number(validation.get("best")),
                        _number(gain, signed=True)
                        + ("" if stopped is None else (" (flat)" if stopped else " (rising)")),
                        f"{run['parameters']:,}",
                        f"{run['train_seconds'] / 60:.1f} min",
                    ]
                )
                + " |"
            )
        lines.append("")
    if moving:
        lines += _findings(moving, spread)
    lines += _study_tables(summary, spread)
    motion = summary.get("motion")
    if motion:
        true = motion["true_process"]
        lines += [
            "### Motivating example (Sec. 3.1): held-out nats per dimension",
            "",
            "| model | nats/dim | gap to the true process | temporal correlation of its noise |",
            "| --- | --- | --- | --- |",
            f"| true process | {true['nats_per_dim']:.3f} | 0 "
            f"| {true['noise_temporal_correlation']:.3f} |",
        ]
        for name, model in motion["models"].items():
            lines.append(
                f"| {name} | {model['nats_per_dim']:.3f} "
                f"| {model['gap_to_true_nats_per_dim']:.3f} "
                f"| {model['noise_temporal_correlation']:.3f} |"
            )
        lines.append("")
    parameters = summary.get("parameters", {})
    if parameters:
        lines += [
            "### Table 2 reconciled: parameters at the paper's full size",
            "",
            "ours + parameters the authors' code creates but the objective never uses "
            "(initial context frames, initial distribution parameters, conv biases before "
            "BatchNorm) = the authors' code = the paper.",
            "",
            "| dataset | model | ours | unused in the authors' code | sum | authors' code "
            "| paper |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for dataset, models in parameters.items():
            for model in MAIN_MODELS:
                entry = models.get(model)
                if entry is None:
                    continue
                authors = entry["authors"]
                paper_count = entry["paper_thousands"]
                lines.append(
                    f"| {dataset} | {LABELS[model]} | {entry['ours']:,} "
                    f"| {sum(entry['unused'].values()):,} | {entry['reconstructed']:,} "
                    f"| {'n/a' if authors is None else f'{authors:,}'} "
                    f"| {'n/a' if paper_count is None else f'{paper_count:,}k'} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def _findings(moving: Mapping[str, Any], spread: Mapping[str, Any]) -> list[str]:
    """The paper's findings checked on the same frames, with the seed spread's tie rule."""
    lines = [
        "### The paper's findings on Moving MNIST (same frames, paper scale)",
        "",
        "A difference within twice the standard deviation of a difference between two "
        "single-seed runs (from the seeds study) is a tie.",
        "",
        "| finding | difference | 2 sd | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for better, worse, text in FINDINGS:
        if better not in moving or worse not in moving:
            continue
        scores = [
            (moving[model].get("test_same_frames") or moving[model]["test"])["nats_per_dim_8bit"]
            for model in (better, worse)
        ]
        difference, threshold, verdict = compare(
            scores[0],
            scores[1],
            spread.get(better, {}).get("sd"),
            spread.get(worse, {}).get("sd"),
        )
        lines.append(
            f"| {text} | {_number(difference, signed=True)} | {_number(threshold)} | {verdict} |"
        )
    gaps = {
        model: moving[model]["train"]["nats_per_dim_8bit"]
        - moving[model]["test"]["nats_per_dim_8bit"]
        for model in ("slvm", "slvm_1af")
        if model in moving and moving[model].get("train")
    }
    if len(gaps) == 2:
        lines.append(
            f"| SLVM w/ 1-AF overfits less than the SLVM (train − test) | "
            f"{gaps['slvm_1af']:+.3f} against {gaps['slvm']:+.3f} | n/a | "
            f"{'holds' if gaps['slvm_1af'] < gaps['slvm'] else 'does not hold'} |"
        )
    if "slvm_1af" in moving:
        test = moving["slvm_1af"]["test"]
        lines.append(
            f"| flows decorrelate in time (SLVM w/ 1-AF corr y ≪ corr x; paper 0.02 ≪ 0.24) | "
            f"{_number(test['corr_noise'])} against {_number(test['corr_x'])} | n/a | "
            f"{'holds' if (test['corr_noise'] or 1) < 0.5 * test['corr_x'] else 'does not hold'} |"
        )
    return [*lines, ""]


def _study_tables(summary: Mapping[str, Any], spread: Mapping[str, Any]) -> list[str]:
    """One table per study: validation and test scores of each variant."""
    lines: list[str] = []
    for name, variants in summary.get("studies", {}).items():
        if name not in STUDIES or not variants:
            continue
        study = STUDIES[name]
        lines += [
            f"### Study `{name}`: {study.question}",
            "",
            "Moving MNIST at reduced scale, "
            + (
                "the same budget and seed for every variant"
                if study.budget == 1
                else f"{study.budget:.2g} of the budget"
            )
            + "; nats per pixel per channel (test: paper scale; validation: [0, 1], best)"
            + ("; SLVMs: ELBO." if study.elbo_only else "; SLVMs: IWAE bound, K = 100."),
            "",
            "| variant | model | test, paper scale | best validation [0, 1] | last-quarter gain "
            "| train time |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for variant, models in variants.items():
            for run in models.values():
                validation = run.get("validation", {})
                lines.append(
                    f"| {variant} | {run['model']} | {_number(run['test']['nats_per_dim_8bit'])} "
                    f"| {_number(validation.get('best'))} "
                    f"| {_number(validation.get('gain_last_quarter'), signed=True)} "
                    f"| {run['train_seconds'] / 60:.1f} min |"
                )
        if name == "seeds" and spread:
            lines += [
                "",
                "| model | seeds | mean, paper scale | sd |",
                "| --- | --- | --- | --- |",
            ]
            for model, entry in spread.items():
                lines.append(
                    f"| {LABELS[model]} | {len(entry['values'])} | {entry['mean']:.3f} "
                    f"| {entry['sd']:.3f} |"
                )
        lines.append("")
    return lines


def _bound(value: float | None, model: str, digits: int = 3) -> str:
    """A score, marked as a lower bound (≥) for SLVMs."""
    if value is None:
        return "n/a"
    return f"≥ {value:.{digits}f}" if model.startswith("slvm") else f"{value:.{digits}f}"


def _number(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _machine() -> dict[str, Any]:
    import platform

    import torch

    return {
        "processor": _cpu_name() or platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
