r"""Figures for ``seqflows sample``, ``visualize`` and ``predict``: frame grids, flow rows, curves.

* :func:`model_label` names a model as the paper does (``1-AF``, ``SLVM w/ 1-AF``) in titles,
  summaries and messages; :func:`figure_rows` computes the rows of Fig. 4 / 9 from the model's
  per-frame scores (:class:`~seqflows.objective.FrameScores`: the flow's outputs, or the
  likelihood of an SLVM without a flow);
* :func:`save_grid` shows generated sequences (Fig. 10, 11; their GIFs: :mod:`.animation`);
* :func:`save_prediction` shows context frames followed by real and predicted continuations;
* :func:`save_flow_rows` shows the flow component of one sequence (Fig. 4, 8, 9): the data
  x_t, the shift mu(x_<t), the scale sigma(x_<t) and the noise y_t of each stacked transform
  (for an SLVM without a flow: the loc, scale and residual of p(x_t | z_t));
  :func:`save_vector_rows` draws the same for vector series as line plots, and
  :func:`save_vector_prediction` their context, real and sampled continuations;
* :func:`save_prediction_metrics` plots per-frame prediction metrics (``seqflows predict``);
* :func:`save_curves` plots training curves (read by :mod:`.metrics_csv`) and
  :func:`save_overlay` several curves on one axis.

Frames are Tensors with shape (T, C, H, W), C = 1 (grayscale) or 3 (RGB), data in [0, 1]
(clipped for display). Every ``save_*`` function creates the parent folders of ``path`` and
returns it. matplotlib is imported inside the functions that need it, so importing this module
does not import it. Figures are ``matplotlib.figure.Figure`` objects drawn and saved without
pyplot: no function here selects a backend or registers a figure with pyplot, so a notebook's
backend and open figures are left as they were.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from functools import singledispatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..flows import FlowModel
from ..objective import SequenceModel
from ..slvm import SLVM
from .animation import _as_numpy, _prepare, _sequences_as_rgb, _tile, _to_uint8

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "figure_rows",
    "model_label",
    "save_curves",
    "save_flow_rows",
    "save_forecast_scores",
    "save_grid",
    "save_overlay",
    "save_prediction",
    "save_prediction_metrics",
    "save_vector_prediction",
    "save_vector_rows",
]


@singledispatch
def model_label(model: SequenceModel) -> str:
    """The paper's name of ``model``: ``1-AF``, ``2-AF``, ``SLVM``, ``SLVM w/ 1-AF``, ... (the
    model classes register below; another class is a TypeError naming it)."""
    raise TypeError(f"no label for a {type(model).__name__}: register one with model_label")


@model_label.register
def _flow_label(model: FlowModel) -> str:
    """M-AF (Eq. 9); with spline transforms the kinds follow, outermost first: ``1-AF
    (spline)``, ``2-AF (affine, spline)``; a within-step base is named after them: ``1-AF, maf
    base``."""
    kinds = model.config.kinds
    name = f"{model.num_transforms}-AF"
    if not all(kind == "affine" for kind in kinds):
        name = f"{name} ({', '.join(kinds)})"
    base = model.config.base
    if base == "glow":
        return f"{name} + frame flow"
    return name if base in ("standard", "learned") else f"{name}, {base} base"


@model_label.register
def _slvm_label(model: SLVM) -> str:
    """``SLVM``, or ``SLVM w/`` its flow's label (Sec. 3.3); with a flow prior ``, flow prior``
    follows (``SLVM w/ 1-AF, flow prior``), with a within-step likelihood its name
    (``, full-covariance likelihood``, ``, maf likelihood``, ``, frame-flow likelihood``)."""
    label = "SLVM" if model.flow is None else f"SLVM w/ {model_label(model.flow)}"
    label = label if model.latent.prior_flow is None else f"{label}, flow prior"
    base = {"glow": "frame_flow"}.get(model.latent.likelihood_base, model.latent.likelihood_base)
    return label if base == "diagonal" else f"{label}, {base.replace('_', '-')} likelihood"


def figure_rows(
    model: SequenceModel,
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    conditions: Tensor | None = None,
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    r"""The rows of Fig. 4 and Fig. 9 of sequences x, on the scored frames, from ``model.scores``.

    With a flow (a flow, or an SLVM w/ M-AF), per transform m (outermost first): its ``shift``,
    its ``scale`` and its output ``noise`` u^{m+1} = (u^m - shift) / scale (Eq. 15; y for the
    innermost). An SLVM without a flow: its likelihood p(x_t | z_t) at one posterior sample
    drawn with ``generator``: the ``loc``, the ``scale`` and the standardized ``residual``
    (x - loc) / scale.

    Arguments:
        model: A flow or an SLVM.
        x: Sequences, with shape (B, T, *event_shape).
        generator: Random numbers of the SLVM's posterior sample.
        conditions: Their conditions (B, T, A), for a conditioned model only.

    Returns:
        The data x_t of the scored frames and one mapping of rows per layer, each tensor
        (B, T - burn_in, *event_shape).
    """
    scores = model.scores(x, generator, conditions=conditions)
    flow = scores.flow
    if flow is not None:
        outputs = [*flow.inputs[1:], flow.noise]
        layers = [
            {"shift": shift, "scale": scale, "noise": output}
            for shift, scale, output in zip(flow.shifts, flow.scales, outputs, strict=True)
        ]
        return flow.inputs[0], layers
    data = x[:, model.burn_in :]
    loc, scale = scores.likelihood_loc, scores.likelihood_scale
    return data, [{"loc": loc, "scale": scale, "residual": (data - loc) / scale}]


# The rows of a layer (figure_rows), by key: how each is drawn, and which keys
# fill the three slots of a layer (location, scale, output).
ROW_KINDS = {
    "shift": "image",
    "loc": "image",
    "scale": "scale",
    "noise": "noise",
    "residual": "noise",
}
ROW_SLOTS = (("shift", "loc"), ("scale",), ("noise", "residual"))
PREDICTION_LABELS = {
    "mean_prediction": "mean of the K samples",
    "best_of_k": "best of K samples",
    "sample_average": "one sample (average)",
    "temperature_0": "temperature 0",
}
NOTE_SIZE = 7  # points, captions below figures
NOTE_LINE = 0.14  # inches per caption line
DPI = 120
INCHES_PER_PIXEL = 0.6 / 64  # 0.6 inch per 64 pixels, before the minimum sizes below
MIN_IMAGE_WIDTH = 4.0  # inches
MIN_ROW_HEIGHT = 0.45  # inches, flow rows
MIN_GRID_ROW = 0.3  # inches, rows of save_grid and save_prediction
MAX_TIME_LABELS = 25
NOISE_PERCENTILE = 99.5  # colour limit of noise rows, so that a few outliers do not wash out


def save_grid(
    sequences: Tensor,
    path: str | os.PathLike[str],
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    first_frame: int = 0,
) -> Path:
    r"""A PNG of sequences tiled by :func:`~.animation.tile_frames`, labelled by row and time step.

    Arguments:
        sequences: Frames in [0, 1], with shape (B, T, C, H, W) and C = 1 or 3.
        path: The ``.png`` file to write.
        row_labels: One label per sequence, shown on the left, or None for none.
        title: Figure title.
        first_frame: Time step of the first column; columns are numbered from it.

    Returns:
        ``path``, as a Path.
    """
    frames = _sequences_as_rgb(sequences, "sequences")  # (B, T, H, W, 3)
    return _save_tiled(frames, path, row_labels, title, first_frame, separator_after=None)


def save_prediction(
    context: Tensor,
    real: Tensor | None,
    predicted: Tensor,
    path: str | os.PathLike[str],
    title: str | None = None,
    first_frame: int = 0,
) -> Path:
    r"""Writes a PNG of context frames followed by the real and the predicted continuations.

    For each sequence b there is a row "seq b real" (context, then real continuation) and a row
    "seq b predicted" (context, then prediction); without ``real`` only the predicted rows. A
    vertical line separates the context from the continuation.

    Arguments:
        context: Observed frames in [0, 1], with shape (B, c, C, H, W).
        real: True continuation, with shape (B, L, C, H, W), or None.
        predicted: Predicted continuation, with shape (B, L, C, H, W).
        path: The ``.png`` file to write.
        title: Figure title.
        first_frame: Time step of the first context frame.

    Returns:
        ``path``, as a Path.
    """
    context_frames = _sequences_as_rgb(context, "context")  # (B, c, H, W, 3)
    predicted_frames = _sequences_as_rgb(predicted, "predicted")  # (B, L, H, W, 3)
    B, c, H, W = context_frames.shape[:4]
    if predicted.shape[0] != B or predicted.shape[2:] != context.shape[2:]:
        raise ValueError(
            "predicted must have shape (B, L, C, H, W) with B, C, H, W as in context "
            f"{tuple(context.shape)}, got {tuple(predicted.shape)}"
        )
    rows = [("predicted", predicted_frames)]
    if real is not None:
        if real.shape != predicted.shape:
            raise ValueError(
                f"real must have the shape of predicted {tuple(predicted.shape)}, "
                f"got {tuple(real.shape)}"
            )
        rows.insert(0, ("real", _sequences_as_rgb(real, "real")))
    frames = np.stack(
        [np.concatenate([context_frames[b], cont[b]]) for b in range(B) for _, cont in rows]
    )  # (B * len(rows), c + L, H, W, 3)
    labels = [f"seq {b} {name}" for b in range(B) for name, _ in rows]
    separator = c if 0 < c < frames.shape[1] else None
    return _save_tiled(frames, path, labels, title, first_frame, separator_after=separator)


def save_flow_rows(
    x: Tensor,
    layers: Sequence[Mapping[str, Tensor]],
    path: str | os.PathLike[str],
    first_frame: int = 0,
    title: str | None = None,
    note: str | None = None,
) -> Path:
    r"""Writes the flow visualisation of Fig. 4 (one transform) or Fig. 9 (two) for one sequence.

    Transform m (1-based, outermost first) maps u_m to u_{m+1} = (u_m - mu_m) / sigma_m (Eq. 6),
    with u_1 = x and u_{M+1} = y. Rows, top to bottom: "x", then for each transform "shift m",
    "scale m" and "u m+1" ("noise y" for the last); a single transform gives x, shift, scale,
    noise y. An SLVM without a flow gives its likelihood p(x_t | z_t) instead: "loc", "scale"
    and "residual" (x - loc) / scale. Columns are time steps, numbered from ``first_frame``.
    Each row has its own colour scale and colour bar: x, shift and loc in gray over [0, 1]
    (arrows when values leave it); scale with viridis over the row's min..max; u, y and the
    residual with a diverging map symmetric around 0 up to the 99.5th percentile of |value|.
    For RGB frames, x, shift and loc are shown in colour (no colour bar) and the other rows as
    the mean over channels.

    Arguments:
        x: Data frames (the scored frames), with shape (T, C, H, W) and C = 1 or 3.
        layers: One mapping per transform, outermost first, with a location (``"shift"`` mu
            or ``"loc"``), ``"scale"`` (sigma, not log sigma) and an output (``"noise"``, the
            transform's output, or ``"residual"``), each with the shape of ``x``
            (:func:`figure_rows`).
        path: The ``.png`` file to write.
        first_frame: Time step of the first frame, shown above the first row.
        title: Figure title.
        note: A caption below the rows (e.g. what a pattern in them means), wrapped to the
            figure's width.

    Returns:
        ``path``, as a Path.
    """
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"x must have shape (T, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    if len(layers) == 0:
        raise ValueError("layers must hold at least one transform")
    M = len(layers)
    rows: list[tuple[str, str, np.ndarray]] = [("x", "image", _as_numpy(x))]
    for m, layer in enumerate(_checked_layers(layers, tuple(x.shape)), start=1):
        suffix = f" {m}" if M > 1 else ""
        for key, values in layer:
            label = f"{key}{suffix}"
            if key == "noise":
                label = "noise y" if m == M else f"u {m + 1}"
            rows.append((label, ROW_KINDS[key], _as_numpy(values)))

    import matplotlib
    from matplotlib.figure import Figure

    T, C, H, W = x.shape
    # sizes in inches: the axes are placed exactly, so that each image fills its row's width
    width_px = T * W + T - 1
    image_width = max(width_px * INCHES_PER_PIXEL, MIN_IMAGE_WIDTH)
    row_height = max(H * image_width / width_px, MIN_ROW_HEIGHT)
    left, gap, bar, right = 1.0, 0.1, 0.12, 0.6  # label, image-bar gap, colourbar, bar ticks
    row_gap, top, bottom = 0.08, 0.55 + (0.3 if title is not None else 0.0), 0.1
    width = left + image_width + gap + bar + right
    caption = _wrap(note, width) if note else None
    if caption is not None:
        bottom += NOTE_LINE * (caption.count("\n") + 1) + 0.15
    height = top + len(rows) * row_height + (len(rows) - 1) * row_gap + bottom
    figure = Figure(figsize=(width, height))
    grid = figure.add_gridspec(
        len(rows),
        2,
        width_ratios=[image_width, bar],
        wspace=gap / ((image_width + bar) / 2),
        hspace=row_gap / row_height,
        left=left / width,
        right=(left + image_width + gap + bar) / width,
        top=1.0 - top / height,
        bottom=bottom / height,
    )
    for i, (label, kind, values) in enumerate(rows):
        axis = figure.add_subplot(grid[i, 0])
        colorbar_axis = figure.add_subplot(grid[i, 1])
        if kind == "image" and C == 3:
            frames = np.clip(values.transpose(0, 2, 3, 1), 0.0, 1.0)  # (T, H, W, 3)
            axis.imshow(_tile(frames[None], 1), interpolation="nearest")
            colorbar_axis.set_axis_off()
        else:
            frames = values.mean(axis=1)  # (T, H, W)
            row = _tile(frames[None, :, :, :, None], 1, fill=np.nan)[..., 0]  # (H, T*W + T-1)
            if kind == "image":
                cmap, vmin, vmax = "gray", 0.0, 1.0
                extend = _extension(frames, vmin, vmax)
            elif kind == "scale":
                cmap, (vmin, vmax), extend = "viridis", _finite_range(frames), "neither"
            else:
                cmap, limit, extend = "RdBu_r", *_noise_limit(frames)
                vmin, vmax = -limit, limit
            # separators (NaN) in white, or in gray where white means 0
            bad = "0.5" if kind == "noise" else "white"
            colormap = matplotlib.colormaps[cmap].with_extremes(bad=bad)
            shown = axis.imshow(row, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest")
            colorbar = figure.colorbar(shown, cax=colorbar_axis, extend=extend)
            colorbar.ax.tick_params(labelsize=6, length=2)
        _label_row(axis, label, H, W, T, first_frame if i == 0 else None)
    if title is not None:
        figure.suptitle(title, fontsize=10)
    if caption is not None:
        figure.text(0.02, 0.1 / height, caption, fontsize=NOTE_SIZE, va="bottom", ha="left")
    return _save_figure(figure, path)


def _checked_layers(
    layers: Sequence[Mapping[str, Tensor]], shape: tuple[int, ...]
) -> list[list[tuple[str, Tensor]]]:
    """Each layer's (key, values) in the order location, scale, output; checked."""
    checked = []
    for m, layer in enumerate(layers):
        unknown = [key for key in layer if key not in ROW_KINDS]
        if unknown:
            raise ValueError(
                f"layers[{m}] has unknown key(s) {unknown}; the rows are {list(ROW_KINDS)}"
            )
        chosen, missing = [], []
        for choices in ROW_SLOTS:
            present = [key for key in choices if key in layer]
            if len(present) != 1:
                missing.append(" or ".join(repr(key) for key in choices))
            else:
                chosen.append(present[0])
        if missing:
            raise ValueError(
                f"layers[{m}] needs one of each: {', '.join(missing)} (it has {list(layer)})"
            )
        for key in chosen:
            if tuple(layer[key].shape) != shape:
                raise ValueError(
                    f"layers[{m}][{key!r}] must have the shape of x {shape}, "
                    f"got {tuple(layer[key].shape)}"
                )
        checked.append([(key, layer[key]) for key in chosen])
    return checked


def save_vector_rows(
    x: Tensor,
    layers: Sequence[Mapping[str, Tensor]],
    path: str | os.PathLike[str],
    first_frame: int = 0,
    title: str | None = None,
    dimensions: int = 4,
    names: Sequence[str] | None = None,
) -> Path:
    r"""The rows of :func:`save_flow_rows` for vector series, as line plots over time.

    One column per dimension (the first ``dimensions``). Row m (m = 1 .. M) shows the input
    u_m of transform m (u_1 = x, black) with the transform's prediction of it, the shift
    (or an SLVM's loc), and the band shift +- scale; the last row shows the output: the noise
    y (or the residual) with the band +-1 of the standard normal base.

    Arguments:
        x: Data (the scored frames), with shape (T, D).
        layers: As for :func:`save_flow_rows`, each value with shape (T, D).
        path: The ``.png`` file to write.
        first_frame: Time step of the first frame.
        title: Figure title.
        dimensions: How many dimensions to show (the first ones).
        names: The D dimensions' names (a CSV's columns), the columns' titles; None:
            "dimension 0", "dimension 1", ...

    Returns:
        ``path``, as a Path.
    """
    if x.dim() != 2:
        raise ValueError(f"x must have shape (T, D), got {tuple(x.shape)}")
    headings = _dimension_headings(names, x.shape[1])
    if len(layers) == 0:
        raise ValueError("layers must hold at least one transform")
    checked = _checked_layers(layers, tuple(x.shape))
    T, D = x.shape
    shown = min(D, dimensions)
    M = len(checked)
    steps = np.arange(first_frame, first_frame + T)

    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.6 * shown + 0.8, 1.7 * (M + 1) + 0.6))
    axes = figure.subplots(M + 1, shown, sharex=True, squeeze=False)
    inputs = [_as_numpy(x)] + [_as_numpy(layer[2][1]) for layer in checked]
    for m, layer in enumerate(checked):
        (location_key, location), (_, scale) = layer[0], layer[1]
        centre, spread = _as_numpy(location), _as_numpy(scale)
        name = "x" if m == 0 else f"u {m + 1}"
        for d in range(shown):
            axis = axes[m, d]
            axis.fill_between(
                steps,
                centre[:, d] - spread[:, d],
                centre[:, d] + spread[:, d],
                color="tab:blue",
                alpha=0.25,
                linewidth=0,
                label=f"{location_key} ± scale",
            )
            axis.plot(steps, centre[:, d], color="tab:blue", linewidth=1.2, label=location_key)
            axis.plot(steps, inputs[m][:, d], color="black", marker=".", linewidth=1, label=name)
            if m == 0:
                axis.set_title(headings[d], fontsize=9)
        axes[m, 0].set_ylabel(name if M == 1 else f"{name} (transform {m + 1})", fontsize=8)
    output_key = checked[-1][2][0]
    output_label = "noise y" if output_key == "noise" else output_key
    for d in range(shown):
        axis = axes[M, d]
        axis.axhspan(-1.0, 1.0, color="0.85", zorder=0, label="±1")
        axis.axhline(0.0, color="0.5", linewidth=0.8)
        axis.plot(steps, inputs[M][:, d], color="tab:red", marker=".", linewidth=1)
        axis.set_xlabel("time step t", fontsize=8)
    axes[M, 0].set_ylabel(output_label, fontsize=8)
    for axis in axes.flat:
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    if D > shown:
        figure.text(0.01, 0.005, f"the first {shown} of {D} dimensions", fontsize=NOTE_SIZE)
    if title is not None:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_vector_prediction(
    context: Tensor,
    real: Tensor | None,
    predicted: Tensor,
    path: str | os.PathLike[str],
    spread: Tensor | None = None,
    title: str | None = None,
    first_frame: int = 0,
    sequences: int = 4,
    dimensions: int = 4,
    names: Sequence[str] | None = None,
) -> Path:
    r"""Line plots of vector sequences: context, real continuation and sampled futures.

    One row per sequence (the first ``sequences``), one column per dimension (the first
    ``dimensions``). The context is black; the real continuation black and dashed; the sampled
    continuation red; with ``spread``, more samples of the same context give a band from their
    5th to their 95th percentile and their median (dotted).

    Arguments:
        context: Observed frames, with shape (B, c, D) (c may be 0).
        real: True continuation, with shape (B, L, D), or None.
        predicted: One sampled continuation, with shape (B, L, D).
        path: The ``.png`` file to write.
        spread: More sampled continuations of the same contexts, with shape (K, B, L, D).
        title: Figure title.
        first_frame: Time step of the first context frame.
        sequences: How many sequences to show.
        dimensions: How many dimensions to show.
        names: The D dimensions' names (a CSV's columns), the columns' titles; None:
            "dimension 0", "dimension 1", ...

    Returns:
        ``path``, as a Path.
    """
    if predicted.dim() != 3 or context.dim() != 3:
        raise ValueError(
            "context and predicted must have shape (B, T, D), got "
            f"{tuple(context.shape)} and {tuple(predicted.shape)}"
        )
    B, L, D = predicted.shape
    if context.shape[0] != B or context.shape[2] != D:
        raise ValueError(
            f"context must have shape (B, c, D) = ({B}, c, {D}), got {tuple(context.shape)}"
        )
    if real is not None and real.shape != predicted.shape:
        raise ValueError(
            f"real must have the shape of predicted {tuple(predicted.shape)}, "
            f"got {tuple(real.shape)}"
        )
    if spread is not None and (spread.dim() != 4 or spread.shape[1:] != predicted.shape):
        raise ValueError(
            f"spread must have shape (K, *predicted.shape) = (K, {B}, {L}, {D}), "
            f"got {tuple(spread.shape)}"
        )
    headings = _dimension_headings(names, D)
    c = context.shape[1]
    rows, columns = min(B, sequences), min(D, dimensions)
    past = np.arange(first_frame, first_frame + c)
    future = np.arange(first_frame + c, first_frame + c + L)
    joined = np.arange(first_frame + c - 1, first_frame + c + L) if c > 0 else future

    def after_context(values: np.ndarray, b: int, d: int) -> np.ndarray:
        """The continuation, joined to the last context frame so that the lines meet."""
        last = _as_numpy(context[b, -1:, d]) if c > 0 else np.zeros(0)
        return np.concatenate([last, values])

    from matplotlib.figure import Figure

    figure = Figure(figsize=(2.6 * columns + 0.8, 1.6 * rows + 0.8))
    axes = figure.subplots(rows, columns, sharex=True, squeeze=False)
    band = None if spread is None else _as_numpy(spread)
    for b in range(rows):
        for d in range(columns):
            axis = axes[b, d]
            if band is not None:
                low, middle, high = np.percentile(band[:, b, :, d], [5, 50, 95], axis=0)
                axis.fill_between(
                    future,
                    low,
                    high,
                    color="tab:red",
                    alpha=0.2,
                    linewidth=0,
                    label=f"5-95% of {band.shape[0]} samples",
                )
                axis.plot(
                    future, middle, color="tab:red", linestyle=":", linewidth=1, label="median"
                )
            if c > 0:
                axis.plot(past, _as_numpy(context[b, :, d]), color="black", label="context")
                axis.axvline(first_frame + c - 0.5, color="0.6", linewidth=0.8)
            if real is not None:
                axis.plot(
                    joined,
                    after_context(_as_numpy(real[b, :, d]), b, d),
                    color="black",
                    linestyle="--",
                    label="real future",
                )
            axis.plot(
                joined,
                after_context(_as_numpy(predicted[b, :, d]), b, d),
                color="tab:red",
                label="sampled future",
            )
            axis.tick_params(labelsize=7)
            axis.grid(alpha=0.3)
            if b == 0:
                axis.set_title(headings[d], fontsize=9)
            if b == rows - 1:
                axis.set_xlabel("time step t", fontsize=8)
        axes[b, 0].set_ylabel(f"sequence {b}", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="best")
    if title is not None:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_prediction_metrics(
    time_steps: Sequence[int],
    result: Mapping[str, Mapping[str, Mapping[str, Sequence[float] | None]]],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    r"""Per-frame prediction metrics (``seqflows predict``): one panel per metric, one line per
    prediction.

    Arguments:
        time_steps: The time step of each predicted frame.
        result: Prediction name -> {"per_frame": metric -> values per frame, or None for a
            metric that was not computed}; the metrics are ``mse``, ``psnr`` and ``ssim``.
        path: The ``.png`` file to write.
        title: Figure title.

    Returns:
        ``path``, as a Path.
    """
    units = {
        "mse": ("MSE", "mean squared error, lower is better"),
        "psnr": ("PSNR", "dB, higher is better"),
        "ssim": ("SSIM", "higher is better"),
    }
    kinds = {name: values["per_frame"] for name, values in result.items()}
    metrics = [m for m in units if any(kinds[name].get(m) is not None for name in kinds)]
    if not metrics:
        raise ValueError("result holds no metric to plot")

    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(3.4 * len(metrics) + 0.4, 3.2))
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axis, metric in zip(axes, metrics, strict=True):
        for name, per_frame in kinds.items():
            values = per_frame.get(metric)
            if values is None:
                continue
            if len(values) != len(time_steps):
                raise ValueError(
                    f"{name} {metric} has {len(values)} values for {len(time_steps)} time steps"
                )
            label = PREDICTION_LABELS.get(name, name.replace("_", " "))
            axis.plot(time_steps, values, marker=".", linewidth=1.2, label=label)
        heading, unit = units[metric]
        axis.set_title(heading, fontsize=9)
        axis.set_ylabel(unit, fontsize=8)
        axis.set_xlabel("predicted time step t", fontsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title is not None:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


MAX_DIMENSION_LINES = 8  # the CRPS panel draws each dimension's line for series of so few


def save_forecast_scores(
    time_steps: Sequence[int],
    scores: Mapping[str, Any],
    path: str | os.PathLike[str],
    title: str | None = None,
    step_label: str = "predicted time step t",
) -> Path:
    r"""Forecast scores of a vector series against the step (``seqflows predict``): CRPS (and
    each dimension's, up to :data:`MAX_DIMENSION_LINES` dimensions), CRPS-sum, energy score,
    MAE of the median, and the coverage of the central intervals beside their nominal 50% and
    90%.

    Arguments:
        time_steps: The time step (or the step after the origin) of each predicted frame.
        scores: :func:`~seqflows.app.forecast_scores.summarize_scores`'s result; its
            ``per_step`` values (None where nothing was observed) are plotted.
        path: The ``.png`` file to write.
        title: Figure title.
        step_label: The label of the steps' axis.

    Returns:
        ``path``, as a Path.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    per_step = scores["per_step"]
    panels = {
        "CRPS": {"mean over dimensions": "crps"},
        "CRPS-sum": {"CRPS of the sum": "crps_sum"},
        "energy score": {"energy score": "energy"},
        "MAE of the median": {"MAE": "mae_median"},
        "coverage": {"central 50%": "coverage_50", "central 90%": "coverage_90"},
    }
    figure = Figure(figsize=(3.2 * len(panels) + 0.4, 3.2))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (heading, lines) in zip(axes, panels.items(), strict=True):
        for label, name in lines.items():
            values = [np.nan if value is None else value for value in per_step[name]]
            if len(values) != len(time_steps):
                raise ValueError(
                    f"{name} has {len(values)} values for {len(time_steps)} time steps"
                )
            axis.plot(time_steps, values, marker=".", linewidth=1.2, label=label)
        if name == "crps" and len(scores["per_dimension"]["crps"]) <= MAX_DIMENSION_LINES:
            for d, per_dimension in enumerate(scores["per_dimension"]["crps"]):
                values = [np.nan if value is None else value for value in per_dimension]
                axis.plot(time_steps, values, linewidth=0.7, alpha=0.6, label=f"dimension {d}")
            axis.legend(fontsize=6)
        if heading == "coverage":
            for nominal in (0.5, 0.9):
                axis.axhline(nominal, color="gray", linestyle=":", linewidth=1)
            axis.set_ylim(-0.05, 1.05)
            axis.legend(fontsize=7)
        axis.set_title(heading, fontsize=9)
        axis.set_ylabel("lower is better" if heading != "coverage" else "share", fontsize=8)
        axis.set_xlabel(step_label, fontsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    if title is not None:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_curves(
    columns: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike[str],
    title: str | None = None,
    labels: Mapping[str, tuple[str, str]] | None = None,
    note: str | None = None,
) -> Path:
    r"""Writes line plots of training curves, one subplot per curve, stacked vertically.

    Arguments:
        columns: Curve name -> list of (step, value); NaN, infinite and None values are
            skipped, and points are sorted by step. A curve of fewer than 2 points gets a panel
            that says so (``too few points to draw: 1 (step 60: 2.31)``).
        path: The ``.png`` file to write.
        title: Figure title.
        labels: Curve name -> (the subplot's title, the y axis' label with its unit); a curve
            without one is titled by its name.
        note: A caption below the plots, wrapped to the figure's width.

    Returns:
        ``path``, as a Path.
    """
    if len(columns) == 0:
        raise ValueError("columns must hold at least one curve")
    labels = labels or {}

    from matplotlib.figure import Figure

    width = 6.4
    caption = _wrap(note, width) if note else None
    extra = NOTE_LINE * (caption.count("\n") + 1) + 0.2 if caption is not None else 0.0
    figure = Figure(figsize=(width, 1.9 * len(columns) + 0.6 + extra))
    axes = figure.subplots(len(columns), 1, sharex=True, squeeze=False)
    for axis, (name, points) in zip(axes[:, 0], columns.items(), strict=True):
        kept = _finite_points(points)
        if len(kept) >= 2:
            steps, values = zip(*kept, strict=True)
            axis.plot(steps, values, marker="." if len(kept) < 50 else None, linewidth=1.2)
        else:  # a lone dot is no curve: say why there is none (a short run, a long cadence)
            if kept or not points:
                message = f"too few points to draw: {len(kept)}"
                message += f" (step {kept[0][0]:g}: {kept[0][1]:.4g})" if kept else ""
            else:
                message = "no finite values"
            axis.text(
                0.5,
                0.5,
                message,
                ha="center",
                va="center",
                fontsize=8,
                transform=axis.transAxes,
            )
        panel, unit = labels.get(name, (name, ""))
        axis.set_title(panel, fontsize=9)
        axis.set_ylabel(unit, fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("training step")
    if title is not None:
        figure.suptitle(title, fontsize=10)
    if caption is not None:
        figure.tight_layout(rect=(0.0, extra / figure.get_figheight(), 1.0, 1.0))
        figure.text(0.02, 0.02, caption, fontsize=NOTE_SIZE, va="bottom", ha="left")
    else:
        figure.tight_layout()
    return _save_figure(figure, path)


def save_overlay(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike[str],
    ylabel: str,
) -> Path:
    r"""Writes several curves on one axis, with a legend (e.g. every model's validation score).

    Arguments:
        curves: Legend label -> list of (step, value); non-finite values are skipped.
        path: The ``.png`` file to write.
        ylabel: Label of the vertical axis.

    Returns:
        ``path``, as a Path.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.6))
    axis = figure.subplots()
    for label, points in curves.items():
        kept = _finite_points(points)
        if kept:
            steps, values = zip(*kept, strict=True)
            axis.plot(steps, values, label=label, linewidth=1.2)
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel, fontsize=8)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return _save_figure(figure, path)


def _finite_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(step, value) pairs with a finite value, sorted by step."""
    return sorted(
        (float(step), float(value))
        for step, value in points
        if value is not None and math.isfinite(float(value))
    )


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    """min..max of the finite values, widened when empty or constant so that a norm exists."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        pad = 0.5 * max(abs(high), 1.0) * 1e-3
        return low - pad, high + pad
    return low, high


def _extension(values: np.ndarray, vmin: float, vmax: float) -> str:
    """The colour bar's arrows for values beyond vmin..vmax: neither, min, max or both."""
    finite = values[np.isfinite(values)]
    below = finite.size > 0 and bool(finite.min() < vmin)
    above = finite.size > 0 and bool(finite.max() > vmax)
    return {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
        (below, above), "both"
    )


def _dimension_headings(names: Sequence[str] | None, D: int) -> list[str]:
    """The titles of the D dimensions' columns: their names, or "dimension d"."""
    if names is None:
        return [f"dimension {d}" for d in range(D)]
    if len(names) != D:
        raise ValueError(f"names must hold {D} names, one per dimension, got {len(names)}")
    return list(names)


def _wrap(text: str, width: float) -> str:
    """``text`` wrapped for a caption of NOTE_SIZE points across ``width`` inches."""
    characters = max(int(width * 144 / NOTE_SIZE / 1.1), 30)  # about 0.55 em per character
    return "\n".join(
        textwrap.fill(paragraph, characters) for paragraph in text.split("\n") if paragraph
    )


def _noise_limit(values: np.ndarray) -> tuple[float, str]:
    """Symmetric colour limit: the 99.5th percentile of |value|, and the colourbar extension."""
    magnitude = np.abs(values[np.isfinite(values)])
    if magnitude.size == 0:
        return 1.0, "neither"
    limit = float(np.percentile(magnitude, NOISE_PERCENTILE))
    if limit <= 0.0:
        return (float(magnitude.max()) or 1.0), "neither"
    return limit, "both" if magnitude.max() > limit else "neither"


def _label_row(
    axis: Axes, label: str | None, H: int, W: int, T: int, first_frame: int | None
) -> None:
    """Hides the axes' frame and ticks; adds a row label and, if asked, time steps on top."""
    for spine in axis.spines.values():
        spine.set_visible(False)
    axis.set_yticks([])
    if label is not None:
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if first_frame is None:
        axis.set_xticks([])
        return
    every = max(1, math.ceil(T / MAX_TIME_LABELS))
    steps = range(0, T, every)
    axis.xaxis.tick_top()
    axis.xaxis.set_label_position("top")
    axis.set_xlabel("time step t", fontsize=8, labelpad=4)
    axis.set_xticks([k * (W + 1) + (W - 1) / 2 for k in steps])
    axis.set_xticklabels([str(first_frame + k) for k in steps], fontsize=7)
    axis.tick_params(axis="x", length=0, pad=2)


def _save_tiled(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    row_labels: Sequence[str] | None,
    title: str | None,
    first_frame: int,
    separator_after: int | None,
) -> Path:
    """Draws (B, T, H, W, 3) frames tiled with 1-pixel borders, labelled, into a PNG."""
    B, T, H, W = frames.shape[:4]
    if row_labels is not None and len(row_labels) != B:
        raise ValueError(f"row_labels must hold {B} labels, one per row, got {len(row_labels)}")

    from matplotlib.figure import Figure

    image = _to_uint8(_tile(frames, 1))  # (B * H + B - 1, T * W + T - 1, 3)
    height_px, width_px = image.shape[:2]
    # inches per image pixel, the same along both axes so that pixels stay square
    scale = max(INCHES_PER_PIXEL, MIN_IMAGE_WIDTH / width_px, B * MIN_GRID_ROW / height_px)
    figure = Figure(figsize=(width_px * scale + 1.5, height_px * scale + 0.8))
    axis = figure.subplots()
    axis.imshow(image, interpolation="nearest")
    _label_row(axis, None, H, W, T, first_frame)
    if row_labels is not None:
        axis.set_yticks([b * (H + 1) + (H - 1) / 2 for b in range(B)])
        axis.set_yticklabels(list(row_labels), fontsize=8)
        axis.tick_params(axis="y", length=0)
    if separator_after is not None:
        axis.axvline(separator_after * (W + 1) - 1.0, color="tab:red", linewidth=1.5)
    if title is not None:
        axis.set_title(title, fontsize=10, pad=14)
    return _save_figure(figure, path)


def _save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Saves a figure as a PNG with a tight bounding box (Agg, chosen by the file type)."""
    path = _prepare(path)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path
