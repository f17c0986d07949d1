r"""Scoring a flow on a fixed set of sequences: nats/dim, bits/dim and temporal correlations.

Every quantity is kept as a sum with its count (float64), so the scores of several batches or of
several processes combine by adding (:meth:`FlowScores.as_tensor` packs them for one
``all_reduce``): never an average of per-process averages, and no sequence counted twice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..flows import FlowModel
from ..metrics import LogLikelihoodSum, TemporalCorrelation, dims_per_frame
from .config import Config

__all__ = [
    "FlowScores",
    "evaluate_flow",
    "model_label",
    "protocol",
]

_CORRELATION_KEYS = ("sum", "sum_sq", "sum_prod", "sum_lead", "sum_lag")


class FlowScores:
    r"""Sums over scored frames: log-likelihood, and the lag-1 correlation of x and of noise y.

    Arguments:
        event_shape: Frame shape (C, H, W) or (D,).
    """

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        self.event_shape = tuple(event_shape)
        self.likelihood = LogLikelihoodSum()
        self.sequences = 0
        dims = dims_per_frame(event_shape)
        # A common zero offset makes the correlation sums of all processes addable.
        self.correlation_x = TemporalCorrelation(offset=torch.zeros(dims, dtype=torch.float64))
        self.correlation_noise = TemporalCorrelation(offset=torch.zeros(dims, dtype=torch.float64))

    @torch.no_grad()
    def update(self, model: FlowModel, x: Tensor) -> None:
        r"""Scores a batch of sequences x with shape (B, T, *event_shape)."""
        out = model.normalize(x)
        log_prob = model.base.log_prob(out.noise.float()) + out.log_abs_det.float()
        self.likelihood.update(log_prob, self.event_shape)
        self.sequences += x.shape[0]
        self.correlation_x.update(x.float().cpu())
        self.correlation_noise.update(out.noise.float().cpu())

    def as_tensor(self) -> Tensor:
        """Every sum and count in one float64 vector (to reduce across processes)."""
        head = torch.tensor(
            [
                self.likelihood.total,
                self.likelihood.dims,
                self.likelihood.frames,
                self.sequences,
                self.correlation_x.count,
                self.correlation_x.pairs,
                self.correlation_noise.count,
                self.correlation_noise.pairs,
            ],
            dtype=torch.float64,
        )
        parts = [head]
        for correlation in (self.correlation_x, self.correlation_noise):
            zeros = torch.zeros_like(correlation.offset)
            parts.extend(correlation.sums.get(key, zeros).cpu() for key in _CORRELATION_KEYS)
        return torch.cat(parts)

    def load_tensor(self, values: Tensor) -> None:
        """Replaces the sums by those in ``values`` (from :meth:`as_tensor`, e.g. all-reduced)."""
        values = values.detach().double().cpu()
        head, rest = values[:8], values[8:]
        total, dims, frames = float(head[0]), round(float(head[1])), round(float(head[2]))
        self.likelihood = LogLikelihoodSum(total, dims, frames)
        self.sequences = round(float(head[3]))
        dims = dims_per_frame(self.event_shape)
        chunks = rest.split(dims)
        for index, correlation in enumerate((self.correlation_x, self.correlation_noise)):
            correlation.count = round(float(head[4 + 2 * index]))
            correlation.pairs = round(float(head[5 + 2 * index]))
            own = chunks[5 * index : 5 * index + 5]
            correlation.sums = dict(zip(_CORRELATION_KEYS, own, strict=True))

    def summary(self, noise: str) -> dict[str, Any]:
        """nats/dim (bits/dim when ``noise`` is uniform dequantization), counts, correlations."""
        result: dict[str, Any] = {
            "nats_per_dim": self.likelihood.nats_per_dim,
            "bits_per_dim": self.likelihood.bits_per_dim() if noise == "uniform" else None,
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


def model_label(config: Config) -> str:
    """The paper's name of the model: ``1-AF``, ``2-AF``, ..."""
    return f"{config.model.num_transforms}-AF"


@torch.no_grad()
def evaluate_flow(
    model: FlowModel,
    dataset: Dataset,
    config: Config,
    split: str,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> dict[str, Any]:
    r"""Exact log-likelihood of ``model`` on every sequence of ``dataset``, in eval mode.

    Returns:
        A JSON-ready dict: ``nats_per_dim``, ``bits_per_dim`` (None unless the noise is uniform
        dequantization), ``frames_scored``, ``sequences``, the temporal correlations of x and of
        the noise, and ``protocol`` (what was scored, how).
    """
    model.eval().to(device)
    scores = FlowScores(model.event_shape)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    for x in loader:
        scores.update(model, x.to(device))
    result = {"model": model_label(config), "bound": "exact log-likelihood"}
    result.update(scores.summary(config.data.noise))
    result["protocol"] = protocol(config, model, split)
    return result


def protocol(config: Config, model: FlowModel, split: str) -> dict[str, Any]:
    """What an evaluation number means: data, split, crops, scored frames, noise, seed."""
    data = config.data
    return {
        "dataset": data.dataset,
        "path": data.path,
        "split": split,
        "crop_length": data.evaluation_length,
        "crop": config.evaluate.crop,
        "burn_in": model.burn_in,
        "scored_frames_per_sequence": data.evaluation_length - model.burn_in,
        "frame_shape": list(model.event_shape),
        "scaling": "x / 255" if data.noise != "uniform" else "(x + u) / 256",
        "noise": {
            "gaussian": "N(0, (1/256)^2) added per pixel",
            "uniform": "uniform dequantization u ~ U[0, 1)",
            "none": "none",
        }[data.noise],
        "seed": data.seed,
        "units": "nats per pixel per channel, summed over scored frames and dimensions, "
        "divided by their number",
    }
