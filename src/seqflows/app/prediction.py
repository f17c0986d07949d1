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
from .datasets import build_source, evaluation_set, resolve_data
from .progress import Progress

__all__ = [
    "DEFAULT_SAMPLES",
    "MAX_PSNR",
    "METRICS",
    "PREDICTIONS",
    "SSIM_MIN_SIDE",
    "format_prediction_table",
    "frame_metrics",
    "predict",
]

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
        real: The real frames in [0, 1], with the same shape.

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
    if predicted.dim() == 3:  # vectors: MSE only
        return {"mse": (predicted - real).square().mean(-1), "psnr": None, "ssim": None}
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

    Returns:
        The metrics per predicted frame (averaged over sequences) and over all predicted
        frames, for each of :data:`PREDICTIONS`, the protocol, and the files written.

    Raises:
        NonFiniteError: A prediction holds NaN or infinite values (diverged weights).
    """
    from .figures import save_prediction_metrics

    _at_least("length", length, 1)
    _at_least("samples", samples, 1)
    _at_least("sequences", sequences, 1)
    _at_least("batch_size", batch_size, 1)
    _at_least("context", context, 1)
    target = resolve_device(device)
    model, config = load_for_evaluation(checkpoint, overrides, split)
    model = fold_batch_norm(model.to(target))  # BatchNorm in the convolutions: faster steps
    context_frames = max(model.burn_in, 1) if context is None else context
    check_context(model, context_frames)
    crop = context_frames + length
    source = build_source(resolve_data(config, config.evaluate.split).data, config.evaluate.split)
    if source.stored and crop > source.num_frames:  # named by the options, not data.eval_length
        raise ConfigError(
            f"{source.name}: --context {context_frames} and --length {length}: cannot crop "
            f"{crop} frames from sequences of {source.num_frames} frames"
        )
    config = config.replace(
        data={
            "noise": "none",
            "eval_length": crop,
            "num_frames": max(config.data.num_frames, crop),
        }
    )
    settings = config.evaluate
    dataset = evaluation_set(
        config, settings.split, count=settings.sequences if sequences is None else sequences
    )
    count = len(dataset)
    per_call = settings.batch_size if batch_size is None else batch_size
    generator = torch.Generator(device=target).manual_seed(seed)
    scores: dict[str, dict[str, list[Tensor]]] = {kind: {} for kind in PREDICTIONS}
    group = max(1, per_call // samples)  # sequences whose K samples share a call
    shown = None if progress is None else Progress(count, progress, "sequences")
    for start in range(0, count, group):
        batch, known = sequence_batch(dataset, range(start, min(start + group, count)))
        gaps = batch[:, :context_frames] if config.data.gaps else None  # their masks
        steps = generation_conditions(
            model.condition_dim, len(batch), context_frames, length, known, conditions, gaps
        )
        observed = batch[:, :context_frames].to(target)
        real = batch[:, context_frames:].to(target)
        steps = None if steps is None else steps.to(target)
        found = _predict_batch(model, observed, real, length, samples, per_call, generator, steps)
        for kind, metrics in found.items():
            for metric, values in metrics.items():
                scores[kind].setdefault(metric, []).append(values.double().cpu())
        if shown is not None:
            shown.update(len(batch))
    if shown is not None:
        shown.close()
    result = _summarize(scores)
    _check_finite(result, checkpoint, conditions)
    steps = list(range(context_frames, context_frames + length))
    title = (
        f"{model.label} on {_data_label(config)}: {count} {settings.split} sequences, "
        f"{context_frames} context frames, K = {samples}"
    )
    folder = Path(out)
    written = {
        "json": str(folder / f"{name}.json"),
        "png": str(save_prediction_metrics(steps, result, folder / f"{name}.png", title=title)),
    }
    protocol = _protocol(model, config, count, context_frames, length, samples, seed)
    if model.condition_dim:
        protocol["conditions"] = (
            f"the predicted frames' conditions from {conditions}"
            if conditions is not None
            else "the data's conditions of every frame (what really happened)"
        )
    report = {
        "model": model.label,
        "checkpoint": str(checkpoint),
        "protocol": protocol,
        "time_steps": steps,
        **result,
        "written": written,
    }
    write_text_atomically(written["json"], json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


def _predict_batch(
    model: nn.Module,
    observed: Tensor,
    real: Tensor,
    length: int,
    samples: int,
    per_call: int,
    generator: torch.Generator,
    conditions: Tensor | None = None,
) -> dict[str, dict[str, Tensor]]:
    """The metrics (G, L) of every prediction of G sequences, for each of PREDICTIONS (under
    their conditions (G, c + L, A) for a conditioned model)."""
    G = observed.shape[0]
    frames = len(model.event_shape) == 3
    ones = [1] * (observed.dim() - 1)
    total = torch.zeros_like(real)
    each: dict[str, list[Tensor]] = {}  # metric -> per chunk (n, G, L)
    chunk = max(1, per_call // G)
    for first in range(0, samples, chunk):
        n = min(chunk, samples - first)
        given = {} if conditions is None else {"conditions": conditions.repeat(n, 1, 1)}
        futures = model.sample(
            n * G, length, context=observed.repeat(n, *ones), generator=generator, **given
        )  # (n * G, L, ...), sample-major
        if frames:
            futures = futures.clamp(0.0, 1.0)
        total += futures.unflatten(0, (n, G)).sum(0)
        for metric, values in frame_metrics(futures, real.repeat(n, *ones)).items():
            if values is not None:
                each.setdefault(metric, []).append(values.unflatten(0, (n, G)))
    per_sample = {metric: torch.cat(chunks) for metric, chunks in each.items()}  # (K, G, L)
    given = {} if conditions is None else {"conditions": conditions}
    deterministic = model.sample(
        G, length, context=observed, generator=generator, temperature=0.0, **given
    )
    found = {
        "mean_prediction": _present(frame_metrics(total / samples, real)),
        "temperature_0": _present(frame_metrics(deterministic, real)),
        "sample_average": {metric: values.mean(0) for metric, values in per_sample.items()},
        "best_of_k": {},
    }
    for metric, values in per_sample.items():
        over_frames = values.mean(-1)  # (K, G): each sample's metric over the predicted frames
        best = over_frames.argmax(0) if HIGHER_IS_BETTER[metric] else over_frames.argmin(0)
        found["best_of_k"][metric] = values[best, torch.arange(G, device=values.device)]
    return found


def _present(metrics: dict[str, Tensor | None]) -> dict[str, Tensor]:
    return {metric: values for metric, values in metrics.items() if values is not None}


def _summarize(scores: dict[str, dict[str, list[Tensor]]]) -> dict[str, Any]:
    """Per prediction and metric: the mean over sequences per frame, and over every frame."""
    result: dict[str, Any] = {}
    for kind in PREDICTIONS:
        per_frame, overall = {}, {}
        for metric in METRICS:
            if metric not in scores[kind]:
                per_frame[metric] = overall[metric] = None
                continue
            values = torch.cat(scores[kind][metric])  # (N, L)
            per_frame[metric] = [float(value) for value in values.mean(0)]
            overall[metric] = float(values.mean())
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
        notes.append("PSNR and SSIM are image metrics: vector series get the MSE only")
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
    lines += ["", *protocol["notes"]]
    lines += [f"{kind}: {path}" for kind, path in result["written"].items()]
    return "\n".join(lines)
