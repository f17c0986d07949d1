r"""Prediction metrics, as video-prediction papers report them (``seqflows predict``).

Given the first ``context`` frames of each evaluation sequence, the model samples K futures of
``length`` frames, and each is compared with the real future, frame by frame:

* ``mse``: the mean squared error over the C x H x W values of a frame (the D values of a
  vector), on frames scaled to [0, 1];
* ``psnr``: the peak signal-to-noise ratio 10 log10(1 / mse) in dB (data range 1), frames only;
  an exact frame (infinite PSNR) counts as :data:`MAX_PSNR`;
* ``ssim``: the structural similarity (Gaussian window of 11 pixels, sigma 1.5, k1 = 0.01,
  k2 = 0.03, data range 1, the mean over pixels and channels), frames of at least
  :data:`SSIM_MIN_SIDE` pixels a side only.

PSNR and SSIM are torchmetrics' (``torchmetrics.functional.image``). Each is reported, per frame
and averaged over sequences, for four predictions:

* ``mean_prediction``: the pixel-wise mean of the K samples, the Monte Carlo estimate of the
  conditional mean E[x_t | context], the prediction with the smallest expected MSE;
* ``best_of_k``: per sequence, the sample whose metric averaged over the predicted frames is
  best (lowest MSE, highest PSNR, highest SSIM, each chosen on its own), as SVG (Denton and
  Fergus, 2018) and SRVP (Franceschi et al., 2020) report them: it grows with K, so compare
  models at the same K (those papers use K = 100);
* ``sample_average``: the metric of one sample, averaged over the K samples;
* ``temperature_0``: one more prediction at temperature 0 (:meth:`FlowModel.sample
  <seqflows.flows.FlowModel.sample>`): for flows the deterministic prediction shift + scale * 0
  at every step; for SLVMs the likelihood's loc, with the latents still sampled.

Frames are the data's, scaled to [0, 1] without the training noise (x / 255), both the context
that conditions the model and the future it is compared with; sampled frames are clipped to
[0, 1] before any metric, as displayed frames are. LPIPS and FVD need pretrained networks
(AlexNet or VGG features, an I3D video network) that seqflows does not download: they are not
computed.

Vector series also get the proper scores of their K sampled futures, in the data's units
(:mod:`seqflows.app.forecast_scores`: CRPS, CRPS-sum, energy score, interval coverage, MAE of
the median), and ``origins`` scores rolling origins: the last N windows of ``length`` frames of
each sequence, each forecast from the ``context`` frames before it. :func:`forecast_samples`
draws the futures for any front end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..atomic import write_text_atomically
from ..errors import ConfigError, MissingDependency, NonFiniteError
from ..inference import fold_batch_norm
from .commands import (
    _at_least,
    _data_label,
    check_context,
    load_for_evaluation,
    resolve_device,
    sequence_batch,
)
from .conditions import generation_conditions
from .datasets import evaluation_set
from .figures import model_label
from .forecast_scores import forecast_scores, summarize_scores
from .progress import Progress
from .resolution import preprocessing_of, resolve_data
from .sources import build_source

__all__ = [
    "DEFAULT_SAMPLES",
    "MAX_PSNR",
    "METRICS",
    "PREDICTIONS",
    "SSIM_MIN_SIDE",
    "forecast_samples",
    "format_prediction_table",
    "frame_metrics",
    "predict",
]

_FORECAST_PROTOCOL = {
    "units": "the data's own units (the standardisation undone)",
    "crps": "CRPS of each value, E|X - y| - E|X - X'| / 2 over the K samples' empirical "
    "distribution (scoringrules), the mean over dimensions, forecasts and steps",
    "crps_sum": "CRPS of the sum over dimensions, sum_d x_d against sum_d y_d, the mean",
    "crps_sum_normalized": "the sum of the CRPS of the sum over every forecast and step, "
    "divided by the sum of |sum_d y_d| (GluonTS's MultivariateEvaluator divides its "
    "quantile-loss approximation of the same CRPS by this)",
    "energy": "energy score E||X - y|| - E||X - X'|| / 2 of each step's D values",
    "coverage_50": "share of values inside the samples' central 50% interval (0.25 to 0.75 "
    "quantiles); 0.5 for a calibrated model",
    "coverage_90": "share inside the central 90% interval (0.05 to 0.95); 0.9 if calibrated",
    "mae_median": "mean absolute error of the samples' median",
    "observed": "share of target values scored (missing ones, NaN, are left out)",
}
DEFAULT_SAMPLES = 10  # futures per sequence; SVG and SRVP use 100 (--samples 100)
MAX_PSNR = 100.0  # dB, an MSE of 1e-10: what an exact frame (infinite PSNR) counts as
SSIM_MIN_SIDE = 6  # the 11-pixel window's reflect padding needs frames of 6 x 6 or more
METRICS = ("mse", "psnr", "ssim")
HIGHER_IS_BETTER = {"mse": False, "psnr": True, "ssim": True}
PREDICTIONS = ("mean_prediction", "best_of_k", "sample_average", "temperature_0")
NOT_COMPUTED = (
    "LPIPS and FVD are not computed: they need pretrained networks (AlexNet or VGG features, "
    "an I3D video network) that seqflows does not download"
)


def frame_metrics(predicted: Tensor, real: Tensor) -> dict[str, Tensor | None]:
    r"""Per-frame MSE, PSNR and SSIM of predicted frames against real ones.

    Arguments:
        predicted: Predicted frames, with shape (N, L, C, H, W), or vectors (N, L, D); frames
            are clipped to [0, 1] first.
        real: The real frames in [0, 1], with the same shape; vectors may hold NaN (missing
            values), left out of their MSE (NaN for a step with none observed).

    Returns:
        ``{"mse": (N, L), "psnr": (N, L) or None, "ssim": (N, L) or None}``: PSNR and SSIM
        are None for vectors, SSIM also for frames smaller than :data:`SSIM_MIN_SIDE`.

    Example:
        >>> real = torch.full((1, 2, 1, 8, 8), 0.5)
        >>> scores = frame_metrics(real + 0.1, real)
        >>> [round(float(value), 4) for value in scores["mse"][0]]
        [0.01, 0.01]
        >>> [round(float(value), 2) for value in scores["psnr"][0]]
        [20.0, 20.0]
    """
    if predicted.shape != real.shape or predicted.dim() not in (3, 5):
        raise ValueError(
            "predicted and real must have the same shape (N, L, C, H, W) or (N, L, D), got "
            f"{tuple(predicted.shape)} and {tuple(real.shape)}"
        )
    N, L = predicted.shape[:2]
    predicted, real = predicted.float(), real.float()
    if predicted.dim() == 3:  # vectors: MSE only, over the observed values (NaN: missing)
        return {"mse": (predicted - real).square().nanmean(-1), "psnr": None, "ssim": None}
    try:
        from torchmetrics.functional.image import (
            peak_signal_noise_ratio,
            structural_similarity_index_measure,
        )
    except ModuleNotFoundError:
        raise MissingDependency(
            "prediction metrics need torchmetrics: pip install 'seqflows[train]'"
        ) from None
    predicted = predicted.clamp(0.0, 1.0).flatten(0, 1)  # (N * L, C, H, W)
    real = real.flatten(0, 1)
    mse = (predicted - real).square().mean((1, 2, 3))
    psnr = peak_signal_noise_ratio(
        predicted, real, data_range=1.0, reduction="none", dim=(1, 2, 3)
    ).clamp(max=MAX_PSNR)
    ssim = None
    if min(predicted.shape[-2:]) >= SSIM_MIN_SIDE:
        ssim = structural_similarity_index_measure(
            predicted,
            real,
            gaussian_kernel=True,
            sigma=1.5,
            kernel_size=11,
            data_range=1.0,
            k1=0.01,
            k2=0.03,
            reduction="none",
        ).view(N, L)
    return {"mse": mse.view(N, L), "psnr": psnr.view(N, L), "ssim": ssim}


@torch.no_grad()
def predict(
    checkpoint: str | Path,
    out: str | Path,
    overrides: Sequence[str] = (),
    split: str | None = None,
    context: int | None = None,
    length: int = 10,
    samples: int = DEFAULT_SAMPLES,
    sequences: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    name: str = "prediction",
    device: str = "auto",
    progress: str | None = None,
    conditions: str | Path | None = None,
    origins: int | None = None,
) -> dict[str, Any]:
    r"""Predicts the futures of evaluation sequences and scores them (the module's protocol).

    Arguments:
        checkpoint: A checkpoint written by ``seqflows train``.
        out: Folder for NAME.json (what this returns) and NAME.png (the metrics per frame).
        overrides: ``data.*`` / ``evaluate.*`` changes of the stored configuration; the crops
            are ``evaluate.crop``'s (random by default, fixed by ``data.seed``).
        split: ``test`` (default), ``validation`` or ``train``.
        context: Real frames that condition each prediction (None: the model's ``burn_in``,
            the fewest it can take; at least 1).
        length: Frames L to predict after the context.
        samples: Futures K sampled per sequence.
        sequences: Predict the first N sequences (None: ``evaluate.sequences``, or all).
        batch_size: Futures sampled per call of the model (``evaluate.batch_size``).
        seed: Seed of the sampled noise; the result is the same for the same seed, batch size
            and device.
        name: File stem.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.
        progress: Show the sequences predicted and the time left on stderr under this
            description (:class:`~seqflows.app.progress.Progress`); None: nothing.
        conditions: A conditioned model's conditions of the predicted frames, from a file
            (:mod:`seqflows.app.conditions`) instead of the data's: the predictions are then
            "what if" futures, still scored against what really followed.
        origins: Rolling origins: forecast the last N windows of ``length`` frames of each
            sequence (its last ``context + N length`` frames), each from the ``context`` frames
            before it (None: the first frames of each crop only). The default context is then
            every frame before the first origin of the shortest sequence.

    Returns:
        The metrics per predicted frame (averaged over sequences and origins) and over all
        predicted frames, for each of :data:`PREDICTIONS`, the protocol, and the files written;
        for a vector series also ``forecast_scores``
        (:func:`~seqflows.app.forecast_scores.summarize_scores`, in the data's units).

    Raises:
        NonFiniteError: A prediction holds NaN or infinite values (diverged weights).
    """
    from .figures import save_forecast_scores, save_prediction_metrics

    _at_least("length", length, 1)
    _at_least("samples", samples, 1)
    _at_least("sequences", sequences, 1)
    _at_least("batch_size", batch_size, 1)
    _at_least("context", context, 1)
    _at_least("origins", origins, 1)
    if conditions is not None and (origins or 1) > 1:
        raise ConfigError(
            f"{conditions}: one conditions file gives one future, but --origins {origins} "
            "forecasts several windows, each after its own past (predict them from the data's "
            "conditions without --conditions, or one window with --origins 1)"
        )
    target = resolve_device(device)
    model, config = load_for_evaluation(checkpoint, overrides, split)
    model = fold_batch_norm(model.to(target))  # BatchNorm in the convolutions: faster steps
    resolve_data(config, config.evaluate.split)  # checks the data before reading it
    source = build_source(config.data, config.evaluate.split)
    windows = 1 if origins is None else origins
    context_frames = _context_frames(model, source, context, length, origins)
    crop = context_frames + windows * length
    if source.stored and crop > source.num_frames:  # named by the options, not data.eval_length
        spans = "--length" if origins is None else f"--origins {origins} of --length"
        raise ConfigError(
            f"{source.name}: --context {context_frames} and {spans} {length}: cannot crop "
            f"{crop} frames from sequences of {source.num_frames} frames"
        )
    config = config.replace(
        data={
            "noise": "none",
            "eval_length": crop,
            "num_frames": max(config.data.num_frames, crop),
        },
        **({} if origins is None else {"evaluate": {"crop": "last"}}),
    )
    settings = config.evaluate
    dataset = evaluation_set(
        config, settings.split, count=settings.sequences if sequences is None else sequences
    )
    count = len(dataset)
    per_call = settings.batch_size if batch_size is None else batch_size
    generator = torch.Generator(device=target).manual_seed(seed)
    scores: dict[str, dict[str, list[Tensor]]] = {kind: {} for kind in PREDICTIONS}
    vectors = len(model.event_shape) == 1
    preprocessing = preprocessing_of(config.data)  # a standardised series: back to its units
    futures: list[Tensor] = []  # vectors: (K, G, L, D) per batch, in the data's units
    targets: list[Tensor] = []  # vectors: (G, L, D)
    group = max(1, per_call // (samples * windows))  # sequences whose K samples share a call
    shown = None if progress is None else Progress(count, progress, "sequences")
    for start in range(0, count, group):
        batch, known = sequence_batch(dataset, range(start, min(start + group, count)))
        batch, known = (
            _windows(batch, context_frames, length, windows),
            (None if known is None else _windows(known, context_frames, length, windows)),
        )
        gaps = batch[:, :context_frames] if config.data.gaps else None  # their masks
        steps = generation_conditions(
            model.condition_dim, len(batch), context_frames, length, known, conditions, gaps
        )
        observed = batch[:, :context_frames].to(target)
        real = batch[:, context_frames:].to(target)
        steps = None if steps is None else steps.to(target)
        found, drawn = _predict_batch(
            model, observed, real, length, samples, per_call, generator, steps
        )
        for kind, metrics in found.items():
            for metric, values in metrics.items():
                scores[kind].setdefault(metric, []).append(values.double().cpu())
        if vectors:
            futures.append(preprocessing.inverse(drawn.cpu()))
            targets.append(preprocessing.inverse(real.cpu()))
        if shown is not None:
            shown.update(len(batch) // windows)
    if shown is not None:
        shown.close()
    result = _summarize(scores, gaps=vectors)
    _check_finite(result, checkpoint, conditions)
    steps = (
        list(range(context_frames, context_frames + length))
        if origins is None
        else list(range(1, length + 1))
    )
    title = (
        f"{model_label(model)} on {_data_label(config)}: {count} {settings.split} sequences"
        + ("" if origins is None else f" x {origins} origins")
        + f", {context_frames} context frames, K = {samples}"
    )
    folder = Path(out)
    written = {
        "json": str(folder / f"{name}.json"),
        "png": str(save_prediction_metrics(steps, result, folder / f"{name}.png", title=title)),
    }
    if vectors:
        result["forecast_scores"] = summarize_scores(
            forecast_scores(torch.cat(futures, 1), torch.cat(targets))
        )
        path = folder / f"{name}_scores.png"
        written["scores_png"] = str(
            save_forecast_scores(
                steps,
                result["forecast_scores"],
                path,
                title=title,
                step_label="predicted time step t" if origins is None else "step after the origin",
            )
        )
    protocol = _protocol(model, config, count, context_frames, length, samples, seed)
    if origins is not None:
        protocol["origins"] = origins
        protocol["crop"] = (
            f"the last {crop} frames of each sequence: {origins} origins {length} frames apart, "
            f"the last window ending with the sequence, each forecast from the {context_frames} "
            "frames before its origin"
        )
        protocol["time_steps"] = "steps after each origin (1 = the first predicted frame)"
    if vectors:
        protocol["forecast_scores"] = dict(_FORECAST_PROTOCOL)
        if not protocol["standardised"]:  # e.g. a quantised series: uint8 values / 255
            protocol["forecast_scores"]["units"] = "the series' values as the model sees them"
    if model.condition_dim:
        protocol["conditions"] = (
            f"the predicted frames' conditions from {conditions}"
            if conditions is not None
            else "the data's conditions of every frame (what really happened)"
        )
    report = {
        "model": model_label(model),
        "checkpoint": str(checkpoint),
        "protocol": protocol,
        "time_steps": steps,
        **result,
        "written": written,
    }
    write_text_atomically(written["json"], json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


def forecast_samples(
    model: nn.Module,
    past: Tensor,
    horizon: int,
    num_samples: int,
    conditions: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    per_call: int | None = None,
) -> Tensor:
    r"""K sampled futures of each of B sequences, given their past.

    Arguments:
        model: A :class:`~seqflows.flows.FlowModel` or an SLVM (anything with their
            ``sample(num, length, context=..., generator=..., conditions=...)``).
        past: The real frames before each forecast, as the model sees them (standardised for a
            standardised series), with shape (B, c, *event_shape), c at least the model's
            ``burn_in``.
        horizon: Frames H to sample after the past.
        num_samples: Futures K per sequence.
        conditions: A conditioned model's conditions of the past and future frames,
            (B, c + H, A); None for an unconditioned model.
        generator: The noise's generator (seeded: the same futures every time).
        per_call: Futures sampled per call of the model (None: all B K at once); at least the
            B sequences' one each.

    Returns:
        The futures, (K, B, H, *event_shape), in the model's units: for a standardised series
        ``model.preprocessing.inverse`` (or ``preprocessing_of(config.data).inverse``) gives
        them in the data's. Sample k of every sequence comes from the same call.
    """
    B = past.shape[0]
    ones = [1] * (past.dim() - 1)
    chunk = max(1, (B * num_samples if per_call is None else per_call) // B)
    futures = []
    for first in range(0, num_samples, chunk):
        n = min(chunk, num_samples - first)
        given = {} if conditions is None else {"conditions": conditions.repeat(n, 1, 1)}
        drawn = model.sample(
            n * B, horizon, context=past.repeat(n, *ones), generator=generator, **given
        )  # (n * B, H, ...), sample-major
        futures.append(drawn.unflatten(0, (n, B)))
    return torch.cat(futures)


def _predict_batch(
    model: nn.Module,
    observed: Tensor,
    real: Tensor,
    length: int,
    samples: int,
    per_call: int,
    generator: torch.Generator,
    conditions: Tensor | None = None,
) -> tuple[dict[str, dict[str, Tensor]], Tensor]:
    """The metrics (G, L) of every prediction of G sequences, for each of PREDICTIONS (under
    their conditions (G, c + L, A) for a conditioned model), and the K futures (K, G, L, ...),
    clipped to [0, 1] for frames."""
    G = observed.shape[0]
    futures = forecast_samples(
        model, observed, length, samples, conditions, generator=generator, per_call=per_call
    )
    if len(model.event_shape) == 3:
        futures = futures.clamp(0.0, 1.0)
    each: dict[str, list[Tensor]] = {}  # metric -> per chunk (n, G, L)
    chunk = max(1, per_call // G)  # frame metrics of as many futures as a call samples
    for first in range(0, samples, chunk):
        drawn = futures[first : first + chunk]
        scores = frame_metrics(
            drawn.flatten(0, 1), real.repeat(len(drawn), *[1] * (real.dim() - 1))
        )
        for metric, values in scores.items():
            if values is not None:
                each.setdefault(metric, []).append(values.unflatten(0, (len(drawn), G)))
    per_sample = {metric: torch.cat(chunks) for metric, chunks in each.items()}  # (K, G, L)
    given = {} if conditions is None else {"conditions": conditions}
    deterministic = model.sample(
        G, length, context=observed, generator=generator, temperature=0.0, **given
    )
    found = {
        "mean_prediction": _present(frame_metrics(futures.mean(0), real)),
        "temperature_0": _present(frame_metrics(deterministic, real)),
        "sample_average": {metric: values.mean(0) for metric, values in per_sample.items()},
        "best_of_k": {},
    }
    for metric, values in per_sample.items():
        over_frames = values.mean(-1)  # (K, G): each sample's metric over the predicted frames
        best = over_frames.argmax(0) if HIGHER_IS_BETTER[metric] else over_frames.argmin(0)
        found["best_of_k"][metric] = values[best, torch.arange(G, device=values.device)]
    return found, futures


def _context_frames(
    model: nn.Module, source: Any, context: int | None, length: int, origins: int | None
) -> int:
    """The real frames before each forecast: ``context``, or by default the model's burn-in
    (at least 1) for forecasts from the first frames, every frame before the first origin of
    the shortest stored sequence for rolling origins."""
    least = max(model.burn_in, 1)
    if context is None and origins is not None and source.stored:
        before = source.num_frames - origins * length
        if before < least:
            raise ConfigError(
                f"{source.name}: --origins {origins} of --length {length} leave {max(before, 0)} "
                f"frames before the first origin in sequences of {source.num_frames} frames; "
                f"this model needs {least} context frames (fewer --origins or a shorter --length)"
            )
        return before
    context_frames = least if context is None else context
    check_context(model, context_frames)
    return context_frames


def _windows(batch: Tensor, context: int, length: int, windows: int) -> Tensor:
    """The ``windows`` forecasts of each crop (G, context + windows length, ...): window i is
    frames i length .. i length + context + length; (G windows, context + length, ...),
    sequence-major."""
    if windows == 1:
        return batch
    span = context + length
    return torch.stack(
        [batch[:, i * length : i * length + span] for i in range(windows)], 1
    ).flatten(0, 1)


def _present(metrics: dict[str, Tensor | None]) -> dict[str, Tensor]:
    return {metric: values for metric, values in metrics.items() if values is not None}


def _summarize(scores: dict[str, dict[str, list[Tensor]]], gaps: bool = False) -> dict[str, Any]:
    """Per prediction and metric: the mean over sequences per frame, and over every frame; with
    ``gaps`` (vectors, whose sampled futures the forecast scores checked to be finite) over the
    steps with an observed value."""
    mean = torch.nanmean if gaps else torch.mean
    result: dict[str, Any] = {}
    for kind in PREDICTIONS:
        per_frame, overall = {}, {}
        for metric in METRICS:
            if metric not in scores[kind]:
                per_frame[metric] = overall[metric] = None
                continue
            values = torch.cat(scores[kind][metric])  # (N, L)
            per_frame[metric] = [float(value) for value in mean(values, 0)]
            overall[metric] = float(mean(values))
        result[kind] = {"per_frame": per_frame, "mean": overall}
    return result


def _check_finite(
    result: dict[str, Any], checkpoint: str | Path, conditions: str | Path | None = None
) -> None:
    """Refuses NaN or infinite scores; a conditions file (already checked to be within float32's
    safe range) is named as the likelier cause than the weights."""
    cause = (
        "diverged weights?"
        if conditions is None
        else f"conditions in {conditions} far beyond those of training, or diverged weights?"
    )
    for kind in PREDICTIONS:
        for metric, value in result[kind]["mean"].items():
            if value is not None and not math.isfinite(value):
                raise NonFiniteError(
                    f"{checkpoint}: the {metric} of the {kind} is {value}: the predictions are "
                    f"not finite ({cause})"
                )


def _protocol(
    model: nn.Module,
    config: Any,
    count: int,
    context: int,
    length: int,
    samples: int,
    seed: int,
) -> dict[str, Any]:
    frames = len(model.event_shape) == 3
    standardised = not frames and config.data.mean is not None
    side = min(model.event_shape[1:]) if frames else 0
    metrics = {
        "mse": (
            "mean squared error over the values of a frame, frames in [0, 1]"
            if frames
            else "mean squared error over the D values of a frame, of the standardised series "
            "(x - mean) / std (1: the variance of the training split)"
            if standardised
            else "mean squared error over the D values of a frame, as the model sees them"
        ),
        "psnr": (
            f"10 log10(1 / mse) in dB (torchmetrics), exact frames count as {MAX_PSNR:g} dB"
            if frames
            else None
        ),
        "ssim": (
            "torchmetrics SSIM: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, data range 1"
            if side >= SSIM_MIN_SIDE
            else None
        ),
    }
    notes = [NOT_COMPUTED]
    if not frames:
        notes.append(
            "PSNR and SSIM are image metrics: vector series get the MSE and the forecast scores"
        )
    elif side < SSIM_MIN_SIDE:
        notes.append(f"SSIM needs frames of at least {SSIM_MIN_SIDE} x {SSIM_MIN_SIDE} pixels")
    return {
        "dataset": _data_label(config),
        "split": config.evaluate.split,
        "sequences": count,
        "context_frames": context,
        "predicted_frames": length,
        "samples": samples,
        "seed": seed,
        "crop": f"{config.evaluate.crop} crops of {context + length} frames",
        "data_seed": config.data.seed,
        "frames": "the data scaled to [0, 1] without noise (x / 255); samples clipped to [0, 1]"
        if frames
        else "the series standardised with the mean and std of the training split"
        if standardised
        else "the series as the model sees it, without noise",
        "standardised": standardised,
        "frame_shape": list(model.event_shape),
        "predictions": {
            "mean_prediction": "the pixel-wise mean of the K samples",
            "best_of_k": "per sequence and metric, the sample with the best metric averaged "
            "over the predicted frames",
            "sample_average": "the metric of one sample, averaged over the K samples",
            "temperature_0": "one prediction at temperature 0 (flows: shift + scale * 0 at "
            "every step; SLVMs: the likelihood's loc, latents sampled)",
        },
        "metrics": metrics,
        "notes": notes,
    }


def format_prediction_table(result: dict[str, Any]) -> str:
    """A readable table of a :func:`predict` result: each metric over every predicted frame."""
    protocol = result["protocol"]
    present = [
        metric for metric in METRICS if result["mean_prediction"]["mean"][metric] is not None
    ]
    headings = {metric: metric.upper() for metric in present}
    if protocol.get("standardised"):  # a series' MSE is of its standardised values
        headings["mse"] = "MSE (standardised)"
    widths = {metric: max(10, len(heading) + 2) for metric, heading in headings.items()}
    lines = [
        f"{result['model']} on {protocol['dataset']}, split {protocol['split']}: "
        f"{protocol['sequences']} sequences, {protocol['context_frames']} context frames, "
        f"{protocol['predicted_frames']} predicted, K = {protocol['samples']} samples",
        *([f"conditions: {protocol['conditions']}"] if "conditions" in protocol else []),
        "",
        f"{'prediction':<16}" + "".join(f"{headings[m]:>{widths[m]}}" for m in present),
    ]
    for kind in PREDICTIONS:
        values = result[kind]["mean"]
        lines.append(f"{kind:<16}" + "".join(f"{values[m]:>{widths[m]}.4f}" for m in present))
    lines += [""] + [f"{headings[m]}: {protocol['metrics'][m]}" for m in present]
    if "forecast_scores" in result:
        lines += ["", *_forecast_table(result)]
    lines += ["", *protocol["notes"]]
    lines += [f"{kind}: {path}" for kind, path in result["written"].items()]
    return "\n".join(lines)


FORECAST_HEADINGS = {
    "crps": "CRPS",
    "crps_sum": "CRPS-sum",
    "crps_sum_normalized": "CRPS-sum/|sum|",
    "energy": "energy",
    "coverage_50": "cover 50%",
    "coverage_90": "cover 90%",
    "mae_median": "MAE median",
}


def _forecast_table(result: dict[str, Any]) -> list[str]:
    """The forecast scores of a vector series: per step after the context (or origin), and
    over every step."""
    scores, protocol = result["forecast_scores"], result["protocol"]
    widths = {name: max(10, len(heading) + 2) for name, heading in FORECAST_HEADINGS.items()}

    def row(label: object, values: dict[str, Any], index: int | None = None) -> str:
        cells = []
        for name, width in widths.items():
            value = values[name] if index is None else values[name][index]
            cells.append(f"{'-' if value is None else format(value, '.4f'):>{width}}")
        return f"{label!s:<8}" + "".join(cells)

    lines = [
        f"forecast scores, in {protocol['forecast_scores']['units']}, of K = "
        f"{protocol['samples']} samples "
        f"({100 * scores['observed']:.1f}% of the target values observed)",
        f"{'step':<8}" + "".join(f"{h:>{widths[n]}}" for n, h in FORECAST_HEADINGS.items()),
    ]
    lines += [row(step, scores["per_step"], i) for i, step in enumerate(result["time_steps"])]
    lines.append(row("all", scores["mean"]))
    described = protocol["forecast_scores"]
    lines += [f"{heading}: {described[name]}" for name, heading in FORECAST_HEADINGS.items()]
    return lines
