r"""Scoring a model on a fixed set of sequences: nats/dim, bits/dim and temporal correlations.

Flows get their exact log-likelihood; SLVMs their ELBO (one posterior sample per sequence) and,
when asked, the importance-weighted bound with K samples (:meth:`~seqflows.slvm.SLVM.bound`).
For a standardised real-valued series, every score is of the series in its own units: the
standardisation's log-Jacobian, -sum_d log std_d, is added to each frame's score
(:attr:`~seqflows.data.Preprocessing.log_abs_det`). :func:`write_scores` writes the score of
every sequence and every frame (CSV and .npy, with the sequences' ids) for use outside seqflows,
e.g. anomaly detection.
Every quantity is kept as a sum with its count (float64), so the scores of several batches or of
several processes combine by adding (:meth:`SequenceScores.as_tensor` packs them for one
``all_reduce``): never an average of per-process averages, and no sequence counted twice.
Posterior samples come from a generator seeded by the evaluation seed: evaluation is
deterministic. A conditioned model is scored with the conditions of every crop (batches of
(frames, conditions) pairs).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..atomic import write_atomically, write_text_atomically
from ..data import FixedSequences, Preprocessing
from ..errors import ConfigError, NonFiniteError
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
from .datamodule import split_batch
from .figures import model_label
from .progress import Progress

__all__ = [
    "SequenceScores",
    "evaluate_model",
    "protocol",
    "write_scores",
]


class SequenceScores:
    r"""Sums over scored frames: log-likelihood or ELBO (and IWAE), lag-1 correlations of x and y.

    Arguments:
        event_shape: Frame shape (C, H, W) or (D,).
        iwae_samples: K of the importance-weighted bound of SLVMs (0: not computed).
        iwae_chunk: Samples per pass of the bound (memory).
        scored_frames: Score the last N frames of each crop (None: all after ``burn_in``).
        preprocessing: How the data became model input (default: the paper's noise): a
            standardisation adds its log-Jacobian to every frame's score, so that scores are of
            the series in its own units.
        keep: Also keep every sequence's per-frame scores (:attr:`per_frame`, :attr:`bounds`).
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        iwae_samples: int = 0,
        iwae_chunk: int | None = None,
        scored_frames: int | None = None,
        preprocessing: Preprocessing | None = None,
        keep: bool = False,
    ) -> None:
        self.event_shape = tuple(event_shape)
        self.iwae_samples = iwae_samples
        self.iwae_chunk = iwae_chunk
        self.scored_frames = scored_frames
        self.preprocessing = preprocessing or Preprocessing()
        self.keep = keep
        self._per_frame: list[Tensor] = []
        self._observed: list[Tensor] = []  # observed values of every kept frame
        self._bounds: list[Tensor] = []
        self.likelihood = LogLikelihoodSum()
        self.gaps = False  # whether a scored sequence had missing values (NaN)
        self.iwae_total = 0.0
        self.sequences = 0
        dims = dims_per_frame(event_shape)
        # A common zero offset makes the correlation sums of all processes addable.
        self.correlation_x = TemporalCorrelation(offset=torch.zeros(dims, dtype=torch.float64))
        self.correlation_noise = TemporalCorrelation(offset=torch.zeros(dims, dtype=torch.float64))

    @torch.inference_mode()
    def update(
        self,
        model: SequenceModel,
        x: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> None:
        r"""Scores a batch of sequences x with shape (B, T, *event_shape): the frames after the
        model's ``burn_in``, or the last ``scored_frames`` of them. ``conditions``: theirs,
        (B, T, A), for a conditioned model.

        The scores and, with ``iwae_samples``, the bound come from one call of the model's
        ``scores_and_bound`` (:class:`~seqflows.objective.SequenceModel`), with the numbers of
        ``model.scores`` followed by ``model.bound``."""
        available = x.shape[1] - model.burn_in
        scored = available if self.scored_frames is None else self.scored_frames
        if self.scored_frames is not None and available >= 1 and not 1 <= scored <= available:
            raise ConfigError(  # (too short for the model at all: the model says so)
                f"evaluate.scored_frames={scored}: crops of {x.shape[1]} frames leave "
                f"{available} frames after the model's {model.burn_in} context frames; "
                "lengthen data.eval_length or score fewer frames"
            )
        scores, bound = model.scores_and_bound(
            x, self.iwae_samples, generator, self.iwae_chunk, scored, conditions=conditions
        )
        offset = self.preprocessing.log_abs_det  # log |dz/dx| of a frame (0: not standardised)
        observed = None
        mask = ~torch.isnan(x[:, x.shape[1] - scored :].flatten(2))  # (B, scored, D)
        if scores.observed is not None:  # gaps: the observed values' log |dz/dx| only
            self.gaps = True
            std = self.preprocessing.std or (1.0,)  # (1.0,): not standardised, no offset
            log_std = torch.tensor(std, dtype=torch.float64).log()
            offset = -(mask.double().cpu() * log_std).sum(-1)  # (B, scored)
            observed = int(mask.sum())
        log_prob = scores.log_prob[:, available - scored :].detach().double().cpu() + offset
        self.likelihood.update(log_prob, self.event_shape, observed)
        if self.keep:
            self._per_frame.append(log_prob)
            self._observed.append(mask.sum(-1).cpu())
        self.sequences += x.shape[0]
        if not self.gaps:  # no lag-1 correlation of series with holes
            self.correlation_x.update(x.float().cpu())
            if scores.noise is not None:
                noise = scores.noise[:, scores.noise.shape[1] - scored :]
                self.correlation_noise.update(noise.float().cpu())
        if bound is not None:  # plus the log-Jacobian of every scored frame
            jacobian = offset.sum(-1) if isinstance(offset, Tensor) else scored * offset
            bound = bound.detach().double().cpu() + jacobian
            self.iwae_total += float(bound.sum())
            if self.keep:
                self._bounds.append(bound)

    @property
    def per_frame(self) -> np.ndarray:
        r"""The score of every scored frame of every sequence so far (``keep``), float64 with
        shape (N, scored frames): log p(x_t | x_<t) for flows, the ELBO term for SLVMs."""
        if not self._per_frame:
            return np.zeros((0, 0))
        return torch.cat(self._per_frame).numpy()

    @property
    def observed_per_frame(self) -> np.ndarray:
        r"""The observed values (not NaN) of every kept scored frame (``keep``), int with shape
        (N, scored frames): D per frame without gaps."""
        if not self._observed:
            return np.zeros((0, 0), np.int64)
        return torch.cat(self._observed).numpy()

    @property
    def bounds(self) -> np.ndarray | None:
        r"""The importance-weighted bound of every sequence so far (``keep``, SLVMs with
        ``iwae_samples``), float64 with shape (N,); None when not computed."""
        return torch.cat(self._bounds).numpy() if self._bounds else None

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
        self.gaps = self.gaps or (self.share_scored or 1.0) < 1.0

    def summary(self, noise: str | None = None) -> dict[str, Any]:
        r"""nats/dim (bits/dim when ``noise``, by default the preprocessing's, is uniform
        dequantization), counts, correlations. A standardised series has no 8-bit scale and no
        bits/dim (None)."""
        noise = self.preprocessing.noise if noise is None else noise
        pixels = not self.preprocessing.standardizes
        result: dict[str, Any] = {
            "nats_per_dim": self.likelihood.nats_per_dim,
            "nats_per_dim_8bit": nats_per_dim_8bit(self.likelihood.nats_per_dim)
            if pixels
            else None,
            "bits_per_dim": self.likelihood.bits_per_dim()
            if noise == "uniform" and pixels
            else None,
            "iwae_nats_per_dim": nats_per_dim(self.iwae_total, self.likelihood.dims)
            if self.iwae_samples
            else None,
            "log_likelihood_sum": self.likelihood.total,
            "dims_scored": self.likelihood.dims,
            "frames_scored": self.likelihood.frames,
            "share_scored": self.share_scored,
            "sequences": self.sequences,
            "corr_x": None if self.gaps else _safe_correlation(self.correlation_x),
            "corr_noise": None if self.gaps else _safe_correlation(self.correlation_noise),
        }
        return result

    @property
    def share_scored(self) -> float | None:
        r"""The observed share of the values of the scored frames (1 without gaps; NaN cells
        are missing and not scored), None before any frame."""
        every = self.likelihood.frames * dims_per_frame(self.event_shape)
        return self.likelihood.dims / every if every else None


def _safe_correlation(correlation: TemporalCorrelation) -> float | None:
    try:
        return correlation.compute()
    except ValueError:
        return None


@torch.inference_mode()
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
    scores: str | Path | None = None,
    progress: str | None = None,
) -> dict[str, Any]:
    r"""Scores ``model`` on every sequence of ``dataset``, in eval mode.

    Flows: the exact log-likelihood. SLVMs: the ELBO at one posterior sample and, with
    ``iwae_samples`` = K > 0, the importance-weighted bound with K samples. A standardised
    real-valued series (``data.mean``, ``data.std``) is scored in its own units.

    ``scored_frames``: score the last N frames of each crop (the others are context); None:
    every frame after the model's ``burn_in``. Models with different context needs are compared
    on the same frames this way.

    ``scores``: a folder for the score of every sequence and frame (:func:`write_scores`),
    written once every score is known to be finite.

    ``progress``: show the batches done and the time left on stderr under this description
    (:class:`~seqflows.app.progress.Progress`); None: nothing.

    Returns:
        A JSON-ready dict: ``nats_per_dim`` (the log-likelihood for flows; for SLVMs the tightest
        bound computed), ``bound`` (what that number is), ``elbo_nats_per_dim`` and
        ``iwae_nats_per_dim`` (SLVMs), each also on the paper's scale (``*_8bit``: minus log 256,
        the density of 0-255 pixel values; None for a standardised series), ``bits_per_dim``
        (None unless the noise is uniform dequantization), ``frames_scored``, ``sequences``, the
        temporal correlations of x and of the flow's noise (None where undefined), ``protocol``
        (what was scored, how, in which units) and, with ``scores``, the files written.

    Raises:
        FloatingPointError: A score is NaN or infinite (diverged weights): no number to report.
    """
    from .resolution import preprocessing_of

    model.eval().to(device)
    device = torch.device(device)
    latent = not model.exact  # SLVMs: bounds
    preprocessing = preprocessing_of(config.data)
    accumulator = SequenceScores(
        model.event_shape,
        iwae_samples if latent else 0,
        iwae_chunk,
        scored_frames,
        preprocessing=preprocessing,
        keep=scores is not None,
    )
    generator = torch.Generator(device=device).manual_seed(config.data.seed)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    shown = None if progress is None else Progress(len(loader), progress, "batches")
    try:
        for batch in loader:
            x, conditions = split_batch(batch, config.data.gaps)
            if conditions is not None:
                conditions = conditions.to(device)
            accumulator.update(model, x.to(device), generator, conditions)
            if shown is not None:
                shown.update()
    finally:
        if shown is not None:
            shown.close()
    summary = accumulator.summary()
    eight_bit = nats_per_dim_8bit if not preprocessing.standardizes else (lambda value: None)
    result: dict[str, Any] = {"model": model_label(model)}
    if latent:
        elbo = summary["nats_per_dim"]
        iwae = summary.pop("iwae_nats_per_dim")
        best = iwae if iwae is not None else elbo
        result["bound"] = (
            f"IWAE lower bound, K={iwae_samples}" if iwae is not None else "ELBO (lower bound)"
        )
        summary.update(nats_per_dim=best, elbo_nats_per_dim=elbo, iwae_nats_per_dim=iwae)
        summary.update(
            nats_per_dim_8bit=eight_bit(best),
            elbo_nats_per_dim_8bit=eight_bit(elbo),
            iwae_nats_per_dim_8bit=eight_bit(iwae),
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
    if scores is not None:
        result["scores"] = write_scores(scores, accumulator, dataset, model, result)
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


PIXEL_UNITS = (
    "nats per pixel per channel, summed over scored frames and dimensions, divided by their "
    "number; nats_per_dim: density of frames scaled to [0, 1]; *_8bit: the paper's scale, "
    "density of 0-255 pixel values (minus log 256)"
)
VECTOR_UNITS = (
    "nats per dimension, summed over scored frames and dimensions, divided by their number; "
    "nats_per_dim: density of the values scaled to [0, 1]; *_8bit: density of the 0-255 "
    "values (minus log 256)"
)
SERIES_UNITS = (
    "nats per dimension of the series in its own units, summed over scored frames and "
    "dimensions, divided by their number: log p(x_t) = log p(z_t) - sum_d log std_d for every "
    "frame, z = (x - mean) / std the standardised series the model sees; no 8-bit scale"
)


def protocol(
    config: Config, model: nn.Module, split: str, scored_frames: int | None = None
) -> dict[str, Any]:
    """What an evaluation number means: data, split, crops, scored frames, noise, seed, units."""
    data = config.data
    scored = data.evaluation_length - model.burn_in if scored_frames is None else scored_frames
    standardized = data.mean is not None
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
        "conditions": list(data.conditions) if data.conditions else None,
        "units": PIXEL_UNITS if len(model.event_shape) == 3 else VECTOR_UNITS,
    }
    if standardized:
        result["scaling"] = (
            "(x - mean) / std per dimension, mean and std of the training split (data.mean, "
            "data.std)"
        )
        result["units"] = SERIES_UNITS
        result["standardization"] = {
            "mean": list(data.mean),
            "std": list(data.std),
            "log_abs_det_per_frame": -math.fsum(math.log(value) for value in data.std),
        }
    if data.noise == "gaussian":  # what a perfect predictor of the 8-bit frames would score
        ceiling = gaussian_noise_ceiling()
        result["ceiling"] = {
            "nats_per_dim": ceiling,
            "nats_per_dim_8bit": nats_per_dim_8bit(ceiling),
        }
    return result


def write_scores(
    folder: str | Path,
    scores: SequenceScores,
    dataset: Dataset,
    model: nn.Module,
    result: dict[str, Any],
) -> dict[str, Any]:
    r"""Writes the score of every sequence and of every scored frame into ``folder``.

    Files (each written atomically):

    * ``sequences.csv``: one row per sequence: ``sequence`` (its index in the evaluated split),
      the ids the data has (an array's ``index`` in its file; a store's ``source`` file,
      ``id`` and the rest of its metadata), ``crop_start`` (the crop's first frame in the
      sequence), ``frames`` (scored), the summed score (``log_likelihood`` for flows, ``elbo``
      and, when computed, ``iwae`` for SLVMs) and ``nats_per_dim``;
    * ``frames.csv``: one row per scored frame: ``sequence``, ``frame`` (its index in the
      sequence), the score and ``nats_per_dim`` (per observed value with gaps; empty for a
      frame with none);
    * ``frames.npy`` (N, scored frames) and ``sequences.npy`` (N,): the same scores, float64.

    Scores are in nats, of the data in its own units (see :func:`protocol`), in the order of
    the evaluated split. The lowest are the least likely: anomalies.

    Returns:
        ``{"folder", "files": {name: path}, "score", "units"}``.
    """
    folder = Path(folder)
    per_frame = scores.per_frame  # (N, T')
    count, scored = per_frame.shape
    score = "log_likelihood" if model.exact else "elbo"
    observed = scores.observed_per_frame  # (N, T'): D per frame without gaps
    bounds = scores.bounds
    totals = per_frame.sum(axis=1)
    ids = [_sequence_ids(dataset, index) for index in range(count)]
    id_columns = sorted({key for item in ids for key in item})
    context = int(result["protocol"]["context_frames"])
    starts = [_crop_start(dataset, index) for index in range(count)]
    header = ["sequence", *id_columns, "crop_start", "frames", score]
    header += (["iwae"] if bounds is not None else []) + ["nats_per_dim"]
    rows = []
    for index in range(count):
        best = bounds[index] if bounds is not None else totals[index]
        row = [index, *(ids[index].get(key, "") for key in id_columns), starts[index], scored]
        row += [repr(float(totals[index]))]
        row += [repr(float(bounds[index]))] if bounds is not None else []
        rows.append([*row, _per_value(best, observed[index].sum())])
    frame_rows = [
        [index, starts[index] + context + step, repr(float(value)), _per_value(value, values)]
        for index in range(count)
        for step, (value, values) in enumerate(zip(per_frame[index], observed[index], strict=True))
    ]
    files = {
        "sequences_csv": _write_csv(folder / "sequences.csv", header, rows),
        "frames_csv": _write_csv(
            folder / "frames.csv", ["sequence", "frame", score, "nats_per_dim"], frame_rows
        ),
        "frames_npy": _write_npy(folder / "frames.npy", per_frame),
        "sequences_npy": _write_npy(
            folder / "sequences.npy", bounds if bounds is not None else totals
        ),
    }
    return {
        "folder": str(folder),
        "files": files,
        "score": score if bounds is None else f"{score} per frame; iwae per sequence",
        "units": "nats per frame and per sequence (sums over dimensions), nats_per_dim per "
        "dimension, of the data in the units of the protocol",
    }


def _per_value(score: float, values: int) -> str:
    """nats per dimension of a score over ``values`` observed values; '' when there are none."""
    return repr(float(score / values)) if values else ""


def _sequence_ids(dataset: Dataset, index: int) -> dict[str, Any]:
    """What identifies sequence ``index`` of an evaluation set in its data."""
    source = getattr(dataset, "source", None)
    if source is None or not getattr(source, "stored", False):
        return {}
    metadata = getattr(source, "metadata", None)
    if metadata is not None:  # a store: the converter's record of the sequence
        return {
            key: value if isinstance(value, (str, int, float)) else json.dumps(value)
            for key, value in metadata[index].items()
        }
    if hasattr(source, "offset"):  # an array: the index in its file
        return {"array_index": source.offset + index}
    return {}


def _crop_start(dataset: Dataset, index: int) -> int:
    return dataset.start(index) if isinstance(dataset, FixedSequences) else 0


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return str(write_text_atomically(path, buffer.getvalue()))


def _write_npy(path: Path, array: np.ndarray) -> str:
    return str(write_atomically(path, lambda stream: np.save(stream, array)))
