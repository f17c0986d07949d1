r"""Scoring a model on a fixed set of sequences: nats/dim, bits/dim and temporal correlations.

Flows get their exact log-likelihood; SLVMs their ELBO (one posterior sample per sequence) and,
when asked, the importance-weighted bound with K samples (:meth:`~seqflows.slvm.SLVM.iwae`).
Every quantity is kept as a sum with its count (float64), so the scores of several batches or of
several processes combine by adding (:meth:`SequenceScores.as_tensor` packs them for one
``all_reduce``): never an average of per-process averages, and no sequence counted twice.
Posterior samples come from a generator seeded by the evaluation seed: evaluation is
deterministic.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..errors import NonFiniteError
from ..metrics import (
    SUM_NAMES,
    LogLikelihoodSum,
    TemporalCorrelation,
    bits_per_dim,
    dims_per_frame,
    gaussian_noise_ceiling,
    nats_per_dim,
    nats_per_dim_8bit,
)
from ..objective import SequenceModel
from .config import Config
from .progress import Progress

__all__ = [
    "SequenceScores",
    "evaluate_model",
    "protocol",
]


class SequenceScores:
    r"""Sums over scored frames: log-likelihood or ELBO (and IWAE), lag-1 correlations of x and y.

    Arguments:
        event_shape: Frame shape (C, H, W) or (D,).
        iwae_samples: K of the importance-weighted bound of SLVMs (0: not computed).
        iwae_chunk: Samples per pass of the bound (memory).
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        iwae_samples: int = 0,
        iwae_chunk: int | None = None,
        scored_frames: int | None = None,
    ) -> None:
        self.event_shape = tuple(event_shape)
        self.iwae_samples = iwae_samples
        self.iwae_chunk = iwae_chunk
        self.scored_frames = scored_frames
        self.likelihood = LogLikelihoodSum()
        self.iwae_total = 0.0
        self.sequences = 0
        dims = dims_per_frame(event_shape)
        # A common zero offset makes the correlation sums of all processes addable.
        self.correlation_x = TemporalCorrelation(offset=torch.zeros(dims, dtype=torch.float64))
        self.correlation_noise = TemporalCorrelation(offset=torch.zeros(dims, dtype=torch.float64))

    @torch.no_grad()
    def update(
        self, model: SequenceModel, x: Tensor, generator: torch.Generator | None = None
    ) -> None:
        r"""Scores a batch of sequences x with shape (B, T, *event_shape): the frames after the
        model's ``burn_in``, or the last ``scored_frames`` of them."""
        scores = model.scores(x, generator)
        available = scores.log_prob.shape[1]
        scored = available if self.scored_frames is None else self.scored_frames
        if not 1 <= scored <= available:
            raise ValueError(
                f"evaluate.scored_frames={scored}: crops of {x.shape[1]} frames leave "
                f"{available} frames after the model's {model.burn_in} context frames; "
                "lengthen data.eval_length or score fewer frames"
            )
        self.likelihood.update(scores.log_prob[:, available - scored :], self.event_shape)
        self.sequences += x.shape[0]
        self.correlation_x.update(x.float().cpu())
        if scores.noise is not None:
            noise = scores.noise[:, scores.noise.shape[1] - scored :]
            self.correlation_noise.update(noise.float().cpu())
        if self.iwae_samples and not model.exact:
            bound = model.bound(x, self.iwae_samples, generator, self.iwae_chunk, scored)
            self.iwae_total += float(bound.double().sum())

    def as_tensor(self) -> Tensor:
        """Every sum and count in one float64 vector (to reduce across processes)."""
        dims = dims_per_frame(self.event_shape)
        head = torch.tensor([self.iwae_total, self.sequences], dtype=torch.float64)
        return torch.cat(
            [
                head,
                self.likelihood.state(),
                self.correlation_x.state(dims),
                self.correlation_noise.state(dims),
            ]
        )

    def load_tensor(self, values: Tensor) -> None:
        """Replaces the sums by those in ``values`` (from :meth:`as_tensor`, e.g. all-reduced)."""
        values = values.detach().double().cpu()
        correlation_size = 2 + len(SUM_NAMES) * dims_per_frame(self.event_shape)
        head, likelihood, correlation_x, correlation_noise = values.split(
            [2, 3, correlation_size, correlation_size]
        )
        self.iwae_total, self.sequences = float(head[0]), round(float(head[1]))
        self.likelihood = LogLikelihoodSum.from_state(likelihood)
        self.correlation_x = TemporalCorrelation.from_state(correlation_x)
        self.correlation_noise = TemporalCorrelation.from_state(correlation_noise)

    def summary(self, noise: str) -> dict[str, Any]:
        """nats/dim (bits/dim when ``noise`` is uniform dequantization), counts, correlations."""
        result: dict[str, Any] = {
            "nats_per_dim": self.likelihood.nats_per_dim,
            "nats_per_dim_8bit": nats_per_dim_8bit(self.likelihood.nats_per_dim),
            "bits_per_dim": self.likelihood.bits_per_dim() if noise == "uniform" else None,
            "iwae_nats_per_dim": nats_per_dim(self.iwae_total, self.likelihood.dims)
            if self.iwae_samples
            else None,
            "log_likelihood_sum": self.likelihood.total,
            "dims_scored": self.likelihood.dims,
            "frames_scored": self.likelihood.frames,
            "sequences": self.sequences,
            "corr_x": _safe_correlation(self.correlation_x),
            "corr_noise": _safe_correlation(self.correlation_noise),
        }
        return result


def _safe_correlation(correlation: TemporalCorrelation) -> float | None:
    try:
        return correlation.compute()
    except ValueError:
        return None


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    config: Config,
    split: str,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    iwae_samples: int = 0,
    iwae_chunk: int | None = None,
    scored_frames: int | None = None,
    progress: str | None = None,
) -> dict[str, Any]:
    r"""Scores ``model`` on every sequence of ``dataset``, in eval mode.

    Flows: the exact log-likelihood. SLVMs: the ELBO at one posterior sample and, with
    ``iwae_samples`` = K > 0, the importance-weighted bound with K samples.

    ``scored_frames``: score the last N frames of each crop (the others are context); None:
    every frame after the model's ``burn_in``. Models with different context needs are compared
    on the same frames this way.

    ``progress``: show the batches done and the time left on stderr under this description
    (:class:`~seqflows.app.progress.Progress`); None: nothing.

    Returns:
        A JSON-ready dict: ``nats_per_dim`` (the log-likelihood for flows; for SLVMs the tightest
        bound computed), ``bound`` (what that number is), ``elbo_nats_per_dim`` and
        ``iwae_nats_per_dim`` (SLVMs), each also on the paper's scale (``*_8bit``: minus log 256,
        the density of 0-255 pixel values), ``bits_per_dim`` (None unless the noise is uniform
        dequantization), ``frames_scored``, ``sequences``, the temporal correlations of x and of
        the flow's noise (None where undefined), and ``protocol`` (what was scored, how).

    Raises:
        FloatingPointError: A score is NaN or infinite (diverged weights): no number to report.
    """
    model.eval().to(device)
    device = torch.device(device)
    latent = not model.exact  # SLVMs: bounds
    scores = SequenceScores(
        model.event_shape, iwae_samples if latent else 0, iwae_chunk, scored_frames
    )
    generator = torch.Generator(device=device).manual_seed(config.data.seed)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    shown = None if progress is None else Progress(len(loader), progress, "batches")
    try:
        for x in loader:
            scores.update(model, x.to(device), generator)
            if shown is not None:
                shown.update()
    finally:
        if shown is not None:
            shown.close()
    summary = scores.summary(config.data.noise)
    result: dict[str, Any] = {"model": model.label}
    if latent:
        elbo = summary["nats_per_dim"]
        iwae = summary.pop("iwae_nats_per_dim")
        best = iwae if iwae is not None else elbo
        result["bound"] = (
            f"IWAE lower bound, K={iwae_samples}" if iwae is not None else "ELBO (lower bound)"
        )
        summary.update(nats_per_dim=best, elbo_nats_per_dim=elbo, iwae_nats_per_dim=iwae)
        summary.update(
            nats_per_dim_8bit=nats_per_dim_8bit(best),
            elbo_nats_per_dim_8bit=nats_per_dim_8bit(elbo),
            iwae_nats_per_dim_8bit=nats_per_dim_8bit(iwae),
        )
        summary["iwae_samples"] = iwae_samples if iwae is not None else None
        summary["elbo_sum"] = summary.pop("log_likelihood_sum")
        if summary["bits_per_dim"] is not None:
            summary["bits_per_dim"] = bits_per_dim(best)
    else:
        summary.pop("iwae_nats_per_dim")
        result["bound"] = "exact log-likelihood"
    _check_finite_scores(summary, result["model"], split)
    result.update(summary)
    result["protocol"] = protocol(config, model, split, scored_frames)
    return result


def _check_finite_scores(summary: dict[str, Any], model: str, split: str) -> None:
    """Raises on a non-finite score; an undefined correlation becomes None."""
    for key, value in summary.items():
        if not isinstance(value, float) or math.isfinite(value):
            continue
        if key.startswith("corr_"):
            summary[key] = None
            continue
        raise NonFiniteError(
            f"the {model} scores {key} = {value} on the {split} split: its weights are "
            "diverged (NaN or overflow), there is no number to report; train again with a "
            "lower train.learning_rate"
        )


def protocol(
    config: Config, model: nn.Module, split: str, scored_frames: int | None = None
) -> dict[str, Any]:
    """What an evaluation number means: data, split, crops, scored frames, noise, seed."""
    data = config.data
    scored = data.evaluation_length - model.burn_in if scored_frames is None else scored_frames
    result = {
        "dataset": data.dataset,
        "path": data.path,
        "split": split,
        "crop_length": data.evaluation_length,
        "crop": config.evaluate.crop,
        "burn_in": model.burn_in,
        "context_frames": data.evaluation_length - scored,
        "scored_frames_per_sequence": scored,
        "frame_shape": list(model.event_shape),
        "scaling": "x / 255" if data.noise != "uniform" else "(x + u) / 256",
        "noise": {
            "gaussian": "N(0, (1/256)^2) added per pixel",
            "uniform": "uniform dequantization u ~ U[0, 1)",
            "none": "none",
        }[data.noise],
        "seed": data.seed,
        "units": "nats per pixel per channel, summed over scored frames and dimensions, "
        "divided by their number; nats_per_dim: density of frames scaled to [0, 1]; "
        "*_8bit: the paper's scale, density of 0-255 pixel values (minus log 256)",
    }
    if data.noise == "gaussian":  # what a perfect predictor of the 8-bit frames would score
        ceiling = gaussian_noise_ceiling()
        result["ceiling"] = {
            "nats_per_dim": ceiling,
            "nats_per_dim_8bit": nats_per_dim_8bit(ceiling),
        }
    return result
