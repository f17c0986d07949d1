r"""Proper scores of sampled futures of vector series, as forecasting papers report them.

K sampled futures x^(1..K) of N forecasts of H steps of D dimensions are scored against what
really followed, y, in the data's units (the caller undoes any standardisation):

* ``crps``: the continuous ranked probability score of each value,
  CRPS(F, y) = E|X - y| - 1/2 E|X - X'| (Gneiting and Raftery, 2007, eq. 21), of the K samples'
  empirical distribution (scoringrules' ``crps_ensemble``, its quantile decomposition: the same
  number as the pairwise form over all K^2 pairs, in O(K log K); not the "fair" estimator);
* ``crps_sum``: the CRPS of the sum over dimensions, sum_d x_d against sum_d y_d, as TimeGrad and
  TempFlow (Rasul et al., 2021) report it; its normalised form (:func:`summarize_scores`)
  divides the sum of these CRPS over all steps and forecasts by the sum of |sum_d y_d|, the
  normalisation of GluonTS's MultivariateEvaluator (``m_sum_mean_wQuantileLoss``);
* ``energy``: the energy score E||X - y|| - 1/2 E||X - X'|| of each step's D-vector (Gneiting
  and Raftery, 2007, eq. 22; scoringrules' ``es_ensemble``), the Euclidean error of a single
  sample;
* ``in_50``, ``in_90``: whether y lies in the central 50% (90%) interval of the samples, between
  their 0.25 and 0.75 (0.05 and 0.95) quantiles (linear interpolation), for the coverage;
* ``median_error``: |median of the samples - y|, for the MAE of the median.

Missing targets (NaN, or False in an ``observed`` mask) are not scored: their CRPS, interval and
median entries are NaN, and the sum and the energy score of a step take its observed dimensions
only (the missing ones count as 0 in both samples and target); a step with no observed value
gets NaN. :func:`summarize_scores` averages with NaN left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from ..errors import MissingDependency

__all__ = ["INTERVALS", "forecast_scores", "summarize_scores"]

INTERVALS = (50, 90)  # central intervals whose coverage is reported, in percent
ES_CHUNK_VALUES = 2**22  # pairwise differences per call of es_ensemble (32 MiB of float64)
CRPS_ESTIMATOR = "qd"  # equals the pairwise ("nrg") form, in O(K log K) instead of O(K^2)


def _scoringrules() -> Any:
    try:
        import scoringrules
    except ModuleNotFoundError:
        raise MissingDependency(
            "forecast scores need scoringrules: pip install 'seqflows[train]'"
        ) from None
    return scoringrules


def _array(values: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.numpy(force=True)
    return np.asarray(values, dtype=np.float64)


def forecast_scores(
    samples: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    observed: Tensor | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""The proper scores of every forecast value and step (see the module's notes).

    Arguments:
        samples: K sampled futures, with shape (K, N, H, D), finite.
        target: What followed, (N, H, D); NaN where missing.
        observed: Which target values count, boolean (N, H, D); None: the finite ones.

    Returns:
        ``crps``, ``in_50``, ``in_90`` (1.0 inside, 0.0 outside) and ``median_error``, each
        (N, H, D); ``crps_sum``, ``abs_sum`` (|sum_d y_d|) and ``energy``, each (N, H); NaN
        where nothing is observed.

    Example:
        >>> samples = np.zeros((1, 1, 1, 2))  # one sample: the forecast (0, 0)
        >>> scores = forecast_scores(samples, np.array([[[3.0, 4.0]]]))
        >>> float(scores["energy"][0, 0]), scores["crps"][0, 0].tolist()
        (5.0, [3.0, 4.0])
    """
    samples, target = _array(samples), _array(target)
    if samples.ndim != 4 or samples.shape[1:] != target.shape:
        raise ValueError(
            f"samples (K, N, H, D) and target (N, H, D) expected, got {samples.shape} and "
            f"{target.shape}"
        )
    if not np.isfinite(samples).all():
        raise ValueError("the sampled futures hold NaN or infinite values")
    mask = np.isfinite(target) if observed is None else _array(observed).astype(bool)
    if mask.shape != target.shape:
        raise ValueError(f"observed mask of shape {mask.shape}, target {target.shape}")
    mask &= np.isfinite(target)
    sr = _scoringrules()
    y = np.where(mask, target, 0.0)
    ensemble = np.moveaxis(samples, 0, -1)  # (N, H, D, K)
    missing = np.where(mask, 0.0, np.nan)  # adds NaN where a value is not scored
    crps = sr.crps_ensemble(y, ensemble, estimator=CRPS_ESTIMATOR, backend="numpy") + missing
    scores = {"crps": crps}
    for percent in INTERVALS:
        tail = (1 - percent / 100) / 2
        low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
        scores[f"in_{percent}"] = ((low <= y) & (y <= high)).astype(np.float64) + missing
    scores["median_error"] = np.abs(np.median(samples, axis=0) - y) + missing
    none_observed = np.where(mask.any(-1), 0.0, np.nan)  # (N, H)
    observed_samples = np.where(mask, samples, 0.0)  # missing dimensions count as 0
    total = observed_samples.sum(-1)  # (K, N, H)
    scores["crps_sum"] = (
        sr.crps_ensemble(
            y.sum(-1), np.moveaxis(total, 0, -1), estimator=CRPS_ESTIMATOR, backend="numpy"
        )
        + none_observed
    )
    scores["abs_sum"] = np.abs(y.sum(-1)) + none_observed
    scores["energy"] = _energy_score(sr, y, observed_samples) + none_observed
    return scores


def _energy_score(sr: Any, target: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """scoringrules' energy score (N, H) of samples (K, N, H, D), a few forecasts at a time: its
    estimator holds the K x K x D differences of each forecast at once."""
    K, D = samples.shape[0], samples.shape[-1]
    flat_target = target.reshape(-1, D)  # (N H, D)
    flat_samples = np.moveaxis(samples.reshape(K, -1, D), 0, 1)  # (N H, K, D)
    per_chunk = max(1, ES_CHUNK_VALUES // (K * K * D))
    energy = [
        sr.es_ensemble(
            flat_target[first : first + per_chunk],
            flat_samples[first : first + per_chunk],
            backend="numpy",
        )
        for first in range(0, len(flat_target), per_chunk)
    ]
    return np.concatenate(energy).reshape(target.shape[:-1])


def _mean(values: np.ndarray, axis: Any = None) -> Any:
    """The mean without NaN; NaN (None in JSON) where nothing is left."""
    count = np.sum(~np.isnan(values), axis=axis)
    total = np.nansum(values, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _listed(values: np.ndarray) -> Any:
    """Floats (None for NaN) in nested lists, for strict JSON."""
    if values.ndim == 0:
        return None if np.isnan(values) else float(values)
    return [_listed(value) for value in values]


def summarize_scores(scores: dict[str, np.ndarray]) -> dict[str, Any]:
    r"""The scores of :func:`forecast_scores` averaged over forecasts (NaN left out), per step
    and over every step: JSON-ready, None where nothing was observed.

    Returns:
        ``{"per_step": {...}, "mean": {...}, "per_dimension": {"crps": (D, H) lists}}`` where
        both ``per_step`` (H values) and ``mean`` hold ``crps`` (mean over dimensions),
        ``crps_sum`` (the mean CRPS of the sum), ``crps_sum_normalized`` (the sum of the CRPS
        of the sum over the sum of |sum_d y_d|, GluonTS's normalisation), ``energy``,
        ``coverage_50``, ``coverage_90`` and ``mae_median``; and ``observed``, the share of
        target values scored.
    """
    crps, crps_sum, abs_sum = scores["crps"], scores["crps_sum"], scores["abs_sum"]
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized_per_step = np.nansum(crps_sum, 0) / np.nansum(abs_sum, 0)
        normalized = np.nansum(crps_sum) / np.nansum(abs_sum)
    per_value = {
        "crps": crps,
        **{f"coverage_{p}": scores[f"in_{p}"] for p in INTERVALS},
        "mae_median": scores["median_error"],
    }
    per_step = {name: _mean(values, (0, 2)) for name, values in per_value.items()}
    mean = {name: _mean(values) for name, values in per_value.items()}
    for name, values in (("crps_sum", crps_sum), ("energy", scores["energy"])):
        per_step[name], mean[name] = _mean(values, 0), _mean(values)
    per_step["crps_sum_normalized"] = np.where(
        np.isfinite(normalized_per_step), normalized_per_step, np.nan
    )
    mean["crps_sum_normalized"] = normalized if np.isfinite(normalized) else np.nan
    return {
        "per_step": {name: _listed(np.asarray(values)) for name, values in per_step.items()},
        "mean": {name: _listed(np.asarray(values)) for name, values in mean.items()},
        "per_dimension": {"crps": _listed(_mean(crps, 0).T)},  # (D, H)
        "observed": float(np.mean(~np.isnan(crps))),
    }
