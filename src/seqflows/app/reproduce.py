r"""``seqflows reproduce``: the paper's findings at a scale a 2-core CPU runs in about 90 minutes.

What it does, in order (docs/results.md reads the results):

1. **Data.** Renders a fixed Moving MNIST set at half resolution (:func:`render_moving_mnist`):
   14 x 14 MNIST digits in 32 x 32 frames, 20 frames per sequence; training and validation
   sequences from digits 0-7999, test sequences from digits 8000-9999 of the MNIST test file.
   Bouncing balls are rendered on the fly.
2. **Training.** Each experiment of :func:`experiments` is the paper's full-size configuration
   (``configs/mmnist_*.yaml``, ``configs/bouncing_balls_1af.yaml``) with the overrides of
   :data:`MOVING_MNIST_SCALE` or :data:`BOUNCING_BALLS_SCALE`: a narrower network, fewer steps,
   the same steps and schedule for every model of a dataset, at the paper's batch sizes (8 for
   the 2-AF on Moving MNIST, 8 for all on bouncing balls). Each runs as its own
   ``seqflows train ... --resume`` process, so an interrupted reproduction continues.
3. **Evaluation.** The checkpoint of each run with the best validation score, on the test
   sequences (Table 1) and on fixed crops of training sequences (Table 3): exact log-likelihood
   for flows, ELBO and IWAE bound for SLVMs, and the temporal correlations of x and of the
   noise y (Table 4).
4. **Figures.** Fig. 4 / Fig. 9 rows, samples (Fig. 10 / 11), training curves, corr_y during
   training (Fig. 7); parameter counts at the paper's full size (Table 2); the motivating example
   of Sec. 3.1.

Everything lands in ``--out`` (``results/``): one JSON per evaluation, ``summary.json`` with every
table, ``tables.md`` and the figures. Runs (checkpoints, logs) go to ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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

__all__ = [
    "BOUNCING_BALLS_SCALE",
    "MOVING_MNIST_SCALE",
    "PAPER",
    "Experiment",
    "add_reproduce_arguments",
    "experiments",
    "parameter_counts",
    "render_moving_mnist",
    "run_reproduce",
]

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

# The paper's Moving MNIST numbers (Tables 1-4), nats per pixel per channel.
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
    "model.hidden=32",
    *SLVM_HALF_WIDTH,
    "train.max_steps=1500",
    "train.learning_rate=5e-4",
    "train.lr_schedule=cosine",
    "train.val_every=250",
    "train.val_sequences=128",
    "train.checkpoint_every=250",
    "train.log_every=25",
    "evaluate.batch_size=32",
    "evaluate.iwae_samples=100",
)
BOUNCING_BALLS_SCALE = (
    "data.test_sequences=256",
    *SLVM_HALF_WIDTH,
    "train.max_steps=600",
    "train.lr_schedule=cosine",
    "evaluate.iwae_samples=100",
)
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
    """

    dataset: str
    model: str
    config: Path
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}"

    @property
    def label(self) -> str:
        return LABELS[self.model]


def experiments(
    moving_mnist_array: str | os.PathLike[str], models: Sequence[str] = tuple(LABELS)
) -> list[Experiment]:
    r"""The runs: every model on Moving MNIST (at reduced scale) and on bouncing balls.

    Arguments:
        moving_mnist_array: The array written by :func:`render_moving_mnist`.
        models: Which of ``1af``, ``2af``, ``slvm``, ``slvm_1af``, ``slvm_2af`` to run.
    """
    unknown = sorted(set(models) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(LABELS)}")
    bouncing = {
        "1af": (),
        "2af": ("model.num_transforms=2", "data.length=16"),
        "slvm": (
            "model.type=slvm",
            "model.num_transforms=0",
            "model.lstm_layers=2",
            "model.likelihood_loc=sigmoid",
        ),
        "slvm_1af": (
            "model.type=slvm",
            "model.num_transforms=1",
            "model.lstm_layers=1",
            "model.likelihood_loc=linear",
        ),
        "slvm_2af": (
            "model.type=slvm",
            "model.num_transforms=2",
            "model.lstm_layers=1",
            "model.likelihood_loc=linear",
            "data.length=16",
        ),
    }
    runs = []
    for model in models:
        runs.append(
            Experiment(
                "moving_mnist",
                model,
                CONFIGS / f"mmnist_{model}.yaml",
                (*MOVING_MNIST_SCALE, f"data.path={moving_mnist_array}"),
            )
        )
    for model in models:
        runs.append(
            Experiment(
                "bouncing_balls",
                model,
                CONFIGS / "bouncing_balls_1af.yaml",
                (*BOUNCING_BALLS_SCALE, *bouncing[model], f"name=bouncing_balls_{model}"),
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


def parameter_counts(configs: Path = CONFIGS) -> dict[str, dict[str, dict[str, int | None]]]:
    r"""Table 2: parameters of every model at the paper's full size, built from configs/*.yaml.

    Returns:
        {dataset: {model: {"ours": count, "paper": thousands or None}}}.
    """
    from .checkpoints import build_model

    table: dict[str, dict[str, dict[str, int | None]]] = {}
    for dataset in ("mmnist", "bair", "kth"):
        for model in LABELS:
            path = configs / f"{dataset}_{model}.yaml"
            if not path.is_file():
                continue
            config = load_config(path)
            built = build_model(config, config.data.frame_shape)
            table.setdefault(dataset, {})[model] = {
                "ours": sum(parameter.numel() for parameter in built.parameters()),
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
        help="comma-separated, of 1af, 2af, slvm, slvm_1af, slvm_2af "
        "(default: all but slvm_2af, which the 90-minute budget leaves out)",
    )
    parser.add_argument(
        "--datasets",
        default="moving_mnist,bouncing_balls",
        help="comma-separated, of moving_mnist, bouncing_balls",
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


def run_reproduce(args: argparse.Namespace) -> int:
    r"""Trains, evaluates and draws everything; see the module's docstring."""
    if not CONFIGS.is_dir():
        raise FileNotFoundError(
            f"configuration folder not found: {CONFIGS}; run seqflows reproduce from an "
            "editable install of a clone of the repository (pip install -e .)"
        )
    out = Path(args.out)
    runs_root = Path(args.runs)
    models = [name for name in args.models.split(",") if name]
    datasets = [name for name in args.datasets.split(",") if name]
    started = time.perf_counter()
    say = _reporter()
    array = runs_root / "data" / "moving_mnist_32.npy"
    if "moving_mnist" in datasets:
        digits = args.digits or _download_digits(Path(args.root))
        say(f"rendering Moving MNIST 32x32 from {digits} into {array}")
        render_moving_mnist(digits, array)
    previous = out / "summary.json"  # runs of an earlier invocation stay unless redone
    earlier = json.loads(previous.read_text()) if previous.is_file() else {}
    summary: dict[str, Any] = {"runs": earlier.get("runs", {}), "machine": _machine()}
    for experiment in experiments(array, models):
        if experiment.dataset not in datasets:
            continue
        say(f"{experiment.name}: training ({experiment.label})")
        run_dir = runs_root / experiment.name
        timing = _train(experiment, run_dir, list(args.extra))
        say(f"{experiment.name}: evaluating and drawing")
        summary["runs"][experiment.name] = _evaluate_and_draw(
            experiment, run_dir, out / experiment.name, args.sequences, timing
        )
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
        "extra": list(args.extra),
    }
    summary["paper"] = PAPER
    summary["seconds"] = round(time.perf_counter() - started, 1)  # this invocation
    # every invocation's wall-clock time, oldest first (a resumed reproduction has several)
    summary["invocations"] = _invocations(earlier) + [
        {"seconds": summary["seconds"], "models": models, "datasets": datasets}
    ]
    write_text_atomically(
        out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
    )
    write_text_atomically(out / "tables.md", format_tables(summary))
    say(f"done in {summary['seconds'] / 60:.1f} min: {out / 'tables.md'}")
    print(format_tables(summary))
    return 0


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
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        raise RuntimeError(
            f"training {experiment.name} failed (exit {finished.returncode}); "
            f"see {run_dir / 'train.log'} (reported)"
        )
    timing["seconds"] = round(timing["seconds"] + time.perf_counter() - start, 1)
    write_text_atomically(timing_file, json.dumps(timing, allow_nan=False) + "\n")
    return timing


def _trained_steps(run_dir: Path) -> int:
    """Optimizer steps of the run's last checkpoint (0 when there is none)."""
    from .checkpoints import checkpoint_step

    last = run_dir / "checkpoints" / "last.ckpt"
    return checkpoint_step(last) if last.is_file() else 0


def _evaluate_and_draw(
    experiment: Experiment,
    run_dir: Path,
    out: Path,
    sequences: int | None,
    timing: dict[str, float],
) -> dict[str, Any]:
    r"""Evaluates the selected checkpoint (test and training sequences) and draws its figures."""
    import torch

    from ..cli import build_parser
    from .checkpoints import model_from_checkpoint
    from .datasets import evaluation_set
    from .evaluation import evaluate_model
    from .figures import read_run_metrics, write_metrics_csv

    checkpoint = _selected_checkpoint(run_dir)
    model, config, stored = model_from_checkpoint(checkpoint)
    splits = ["test"] + (["train"] if experiment.dataset == "moving_mnist" else [])
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
    for split in splits:
        count = sequences or (EVALUATED_TRAIN_SEQUENCES if split == "train" else None)
        dataset = evaluation_set(config, split, count=count)
        evaluation = evaluate_model(
            model,
            dataset,
            config,
            split,
            batch_size=config.evaluate.batch_size,
            iwae_samples=config.evaluate.iwae_samples,
            iwae_chunk=config.evaluate.iwae_chunk,
        )
        evaluation["checkpoint"] = str(checkpoint)
        write_text_atomically(
            out / f"{split}.json", json.dumps(evaluation, indent=2, allow_nan=False) + "\n"
        )
        result[split] = {
            key: evaluation.get(key)
            for key in (
                "nats_per_dim",
                "elbo_nats_per_dim",
                "iwae_nats_per_dim",
                "iwae_samples",
                "corr_x",
                "corr_noise",
                "sequences",
            )
        }
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
    curves = read_run_metrics(run_dir)  # every session of the run: resumes included
    if curves:
        write_metrics_csv(curves, out / "metrics.csv")
    return result


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


def format_tables(summary: Mapping[str, Any]) -> str:
    r"""The tables of docs/results.md, in Markdown, from ``summary.json``."""
    lines = []
    runs = summary["runs"]
    for dataset in ("moving_mnist", "bouncing_balls"):
        rows = {name: run for name, run in runs.items() if run["dataset"] == dataset}
        if not rows:
            continue
        paper = dataset == "moving_mnist"
        lines += [
            f"### {dataset}: test and training sequences (nats per pixel per channel)",
            "",
            "| model | test (Table 1) | paper test | train (Table 3) | paper train "
            "| train - test | corr x | corr y | parameters | train time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, run in rows.items():
            model = name.split("/")[1]
            test, train = run["test"], run.get("train")
            gap = None if train is None else train["nats_per_dim"] - test["nats_per_dim"]
            lines.append(
                "| "
                + " | ".join(
                    [
                        run["model"],
                        _score(test),
                        _paper(PAPER["test"].get(model), model) if paper else "",
                        _score(train) if train else "n/a",
                        _paper(PAPER["train"].get(model), model) if paper else "",
                        _number(gap, signed=True),
                        _number(test["corr_x"], 3),
                        _number(test["corr_noise"], 3),
                        f"{run['parameters']:,}",
                        f"{run['train_seconds'] / 60:.1f} min",
                    ]
                )
                + " |"
            )
        lines.append("")
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
            "### Table 2: parameters at the paper's full size (ours / paper)",
            "",
            "| dataset | " + " | ".join(LABELS[m] for m in LABELS if m != "slvm_2af") + " |",
            "| --- | --- | --- | --- | --- |",
        ]
        for dataset, models in parameters.items():
            cells = []
            for model in (m for m in LABELS if m != "slvm_2af"):
                entry = models.get(model)
                if entry is None:
                    cells.append("n/a")
                    continue
                paper_count = entry["paper_thousands"]
                cells.append(
                    f"{entry['ours'] / 1000:,.0f}k / "
                    + ("n/a" if paper_count is None else f"{paper_count:,}k")
                )
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _score(split: Mapping[str, Any]) -> str:
    if split.get("elbo_nats_per_dim") is None:
        return _number(split["nats_per_dim"])
    iwae = split.get("iwae_nats_per_dim")
    text = f"ELBO ≥ {split['elbo_nats_per_dim']:.3f}"
    if iwae is not None:
        text += f", IWAE(K={split['iwae_samples']}) ≥ {iwae:.3f}"
    return text


def _paper(value: float | None, model: str) -> str:
    if value is None:
        return "n/a"
    return f"≥ {value:.2f}" if model.startswith("slvm") else f"{value:.2f}"


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
