r"""The motivating example of Sec. 3.1 (Eq. 10-14, Fig. 2), end to end in a few seconds on a CPU.

Sequences of a particle with momentum under random forces (:mod:`reproduction.motion_data`) have
second-order dynamics in x. Three flows with linear conditioners are trained by maximum
likelihood and scored on held-out sequences beside the true process:

* 1-AF, window 1: sees only x_{t-1}, so it cannot express x_t = 2 x_{t-1} - x_{t-2} + w_t;
* 1-AF, window 2: can, exactly (shift 2 x_{t-1} - x_{t-2}, scale sigma);
* 2-AF, window 1: can too, as the paper's construction x -> u -> w (two first-order steps).

All three are scored on the same frames (t >= 3, after the largest burn-in of 2). The last two
reach the exact log-likelihood and their noise is white (temporal correlation, Eq. 31, near 0).

Run it with ``python -m reproduction motion`` from the repository root (``make motion``;
options: ``--help``) or :func:`run_and_write`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from seqflows.atomic import write_text_atomically
from seqflows.flows import FlowModel
from seqflows.metrics import temporal_correlation

from .motion_data import motion_log_prob, simulate_motion

__all__ = [
    "MODELS",
    "MotionExampleConfig",
    "format_table",
    "plot_motion",
    "run_and_write",
    "run_motion_example",
    "train_flow",
]

# name -> (num_transforms, window)
MODELS: dict[str, tuple[int, int]] = {
    "1-AF (window 1)": (1, 1),
    "1-AF (window 2)": (1, 2),
    "2-AF (window 1)": (2, 1),
}


@dataclass(frozen=True)
class MotionExampleConfig:
    """Settings of the motivating example; the defaults are what the tests check."""

    num_train: int = 512  # training sequences
    num_test: int = 512  # held-out sequences
    length: int = 16  # time steps T per sequence
    dim: int = 2  # dimension D of the position
    sigma: float = 1.0  # standard deviation of the force w_t (Fig. 2: N(0, I))
    steps: int = 1500  # full-batch Adam steps per model
    learning_rate: float = 1e-2  # initial learning rate, cosine-annealed to 0
    clip_norm: float = 1.0  # gradient-norm clipping
    seed: int = 0  # seeds the data and the initialisation


def train_flow(
    model: FlowModel, x: Tensor, steps: int, learning_rate: float, clip_norm: float
) -> list[float]:
    r"""Full-batch maximum likelihood with Adam and a cosine learning rate.

    Arguments:
        model: The flow to train (in place).
        x: Training sequences, with shape (N, T, D).
        steps: Number of optimizer steps.
        learning_rate: Initial learning rate.
        clip_norm: Maximum gradient norm.

    Returns:
        The training loss (negative nats per dimension) at every step.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    dims = x.shape[-1]
    losses = []
    model.train()
    for _ in range(steps):
        loss = -model.log_prob(x).mean() / dims
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def run_motion_example(config: MotionExampleConfig) -> dict:
    r"""Trains the three flows and scores them on held-out sequences.

    Returns:
        A JSON-ready dict: the protocol, the true process's log-likelihood, and per model its
        held-out nats per dimension, the gap to the truth, the temporal correlation of its noise
        and its training losses; ``"sequences"`` holds tensors for :func:`plot_motion`.
    """
    generator = torch.Generator().manual_seed(config.seed)
    train = simulate_motion(config.num_train, config.length, config.dim, config.sigma, generator)
    test = simulate_motion(config.num_test, config.length, config.dim, config.sigma, generator)
    first_scored = max(num * window for num, window in MODELS.values())
    scored_frames = config.length - first_scored
    dims = config.num_test * scored_frames * config.dim
    exact = float(motion_log_prob(test.x, config.sigma)[:, first_scored:].sum()) / dims
    results: dict = {
        "protocol": {
            **asdict(config),
            "scored_frames": f"t = {first_scored + 1} .. {config.length} of every test sequence",
            "unit": "nats per dimension, exact log-likelihood",
        },
        "true_process": {
            "nats_per_dim": exact,
            "expected_nats_per_dim": -0.5 * math.log(2 * math.pi * config.sigma**2) - 0.5,
            "noise_temporal_correlation": temporal_correlation(test.w),
        },
        "models": {},
        "sequences": {"x": test.x, "u": test.u, "w": test.w},
    }
    for seed_offset, (name, (num_transforms, window)) in enumerate(MODELS.items()):
        torch.manual_seed(config.seed + seed_offset)
        model = FlowModel(
            event_shape=(config.dim,),
            num_transforms=num_transforms,
            window=window,
            conditioner="linear",
        )
        started = time.perf_counter()
        losses = train_flow(model, train.x, config.steps, config.learning_rate, config.clip_norm)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            out = model.normalize(test.x)
            log_prob = model.base.log_prob(out.noise) + out.log_abs_det
        scored = log_prob[:, log_prob.shape[1] - scored_frames :]
        nats = float(scored.double().sum()) / dims
        results["models"][name] = {
            "num_transforms": num_transforms,
            "window": window,
            "nats_per_dim": nats,
            "gap_to_true_nats_per_dim": exact - nats,
            "noise_temporal_correlation": temporal_correlation(out.noise),
            "train_seconds": seconds,
            "train_loss": losses,
        }
        results["sequences"][name] = out.noise
    return results


def plot_motion(results: dict, path: Path, index: int = 0) -> Path:
    r"""Fig. 2 style plot of one held-out sequence: x, u, w, and each model's learned noise."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    sequences = results["sequences"]
    length = sequences["x"].shape[1]
    panels = [
        ("x (position)", sequences["x"]),
        ("u (velocity)", sequences["u"]),
        ("w (force)", sequences["w"]),
    ]
    panels += [(f"learned y: {name}", sequences[name]) for name in results["models"]]
    figure = Figure(figsize=(10, 5.6))
    axes = figure.subplots(2, 3, sharex=True)
    for axis, (title, values) in zip(axes.flat, panels, strict=True):
        start = length - values.shape[1]
        steps = torch.arange(start + 1, length + 1)
        for d in range(values.shape[-1]):
            axis.plot(steps, values[index, :, d].numpy(), marker=".", label=f"dim {d}")
        axis.set_title(title, fontsize=9)
        axis.set_xlim(0, length + 1)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(
        "true process (top) and the noise each flow learned (bottom), one test sequence",
        fontsize=10,
    )
    for axis in axes[1]:
        axis.set_xlabel("t")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def format_table(results: dict) -> str:
    rows = [("model", "nats/dim", "gap to true", "corr(noise)")]
    truth = results["true_process"]
    rows.append(
        (
            "true process",
            f"{truth['nats_per_dim']:.4f}",
            "0",
            f"{truth['noise_temporal_correlation']:.3f}",
        )
    )
    for name, model in results["models"].items():
        rows.append(
            (
                name,
                f"{model['nats_per_dim']:.4f}",
                f"{model['gap_to_true_nats_per_dim']:.4f}",
                f"{model['noise_temporal_correlation']:.3f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def run_and_write(
    out: str | Path, config: MotionExampleConfig = MotionExampleConfig(), plot: bool = True
) -> dict:
    r"""Runs the example and writes ``out``/results.json (and motion.png with ``plot``).

    Returns:
        The results as written (JSON-ready: without the simulated sequences), with ``written``
        naming the files and ``table`` the printed summary.
    """
    results = run_motion_example(config)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    serializable = {key: value for key, value in results.items() if key != "sequences"}
    text = json.dumps(serializable, indent=2, allow_nan=False) + "\n"
    written = {"results": str(write_text_atomically(folder / "results.json", text))}
    if plot:
        written["figure"] = str(plot_motion(results, folder / "motion.png"))
    return {**serializable, "written": written, "table": format_table(results)}
