r"""What ``seqflows evaluate``, ``sample``, ``visualize`` and ``download`` do, as typed functions.

Each takes a checkpoint written by ``seqflows train`` (or other plain arguments), does its work
and returns a JSON-ready dict of what it computed and wrote; :mod:`seqflows.app.cli` only parses
the command line and prints. ``overrides`` are ``section.key=value`` strings, as for ``train``;
after training only ``data.*`` (e.g. a moved data file) and ``evaluate.*`` may change. Training
is :func:`seqflows.app.train.train` and conversion :func:`seqflows.app.convert.convert`; the
paper's reproduction lives outside the package, in the repository's ``reproduction/`` folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import write_text_atomically
from ..errors import ConfigError, NonFiniteError
from ..inference import fold_batch_norm
from ..missing import observation_conditions
from .checkpoints import model_from_checkpoint, save_atomically
from .conditions import generation_conditions
from .config import Config
from .datasets import evaluation_set
from .figures import figure_rows, model_label
from .new_files import check_new_file, new_file_settings, reads_new_file
from .progress import say
from .resolution import preprocessing_of, resolve_data
from .sources import build_source

__all__ = [
    "check_context",
    "check_folder_argument",
    "curve_labels",
    "download",
    "evaluate",
    "format_table",
    "real_sequences",
    "resolve_device",
    "rows_note",
    "sample",
    "visualize",
]


def evaluate(
    checkpoint: str | Path,
    overrides: Sequence[str] = (),
    split: str | None = None,
    sequences: int | None = None,
    batch_size: int | None = None,
    iwae_samples: int | None = None,
    device: str = "auto",
    output: str | Path | None = None,
    scores: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    r"""Scores a checkpoint on fixed evaluation sequences (nats/dim, bounds, correlations).

    Arguments:
        checkpoint: A checkpoint written by ``seqflows train``.
        overrides: ``data.*`` / ``evaluate.*`` changes of the stored configuration (e.g.
            ``data.path=new.npy`` to score new sequences).
        split: ``test`` (default), ``validation``, ``train`` (fixed crops of training
            sequences) or ``all`` (every sequence of an array).
        sequences: Score only the first N sequences (None: ``evaluate.sequences``, or all).
        batch_size: Sequences per batch (``evaluate.batch_size``).
        iwae_samples: SLVMs: K of the importance-weighted bound (0: the ELBO only).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.
        output: Also write the result to this JSON file.
        scores: Also write the score of every sequence and every frame into this folder
            (CSV and .npy, with the sequences' ids: :func:`~seqflows.app.evaluation.write_scores`).
        progress: Show the batches scored and the time left on stderr (a bar on a terminal, a
            line every few seconds elsewhere: the IWAE bound of an SLVM takes minutes).

    The model is scored with its BatchNorm layers folded into the convolutions before them
    (:func:`~seqflows.inference.fold_batch_norm`): in eval mode that is the same function, and
    it moves the numbers by float rounding only (within 1e-5 nats per dimension: tested).

    Returns:
        The result of :func:`~seqflows.app.evaluation.evaluate_model` and the checkpoint.

    Raises:
        ConfigError: ``scores`` is a file, or lies under one (checked before scoring).
        NonFiniteError: A score is NaN or infinite (diverged weights); nothing is written.
    """
    from .evaluation import evaluate_model

    if scores is not None:
        check_folder_argument("--scores", scores)
    _at_least("sequences", sequences, 1)
    _at_least("batch_size", batch_size, 1)
    _at_least("iwae_samples", iwae_samples, 0)
    target = resolve_device(device)
    model, config = load_for_evaluation(checkpoint, overrides, split)
    model = fold_batch_norm(model)  # the same densities, to float rounding; faster
    changed = {"batch_size": batch_size, "iwae_samples": iwae_samples}
    config = config.replace(evaluate={k: v for k, v in changed.items() if v is not None})
    settings = config.evaluate
    count = settings.sequences if sequences is None else sequences
    conditioned = bool(config.data.conditions)
    data = resolve_data(config, settings.split)
    dataset = evaluation_set(
        config, settings.split, count=count, conditions=conditioned, data=data
    )
    _check_event_shape(model, dataset, config)
    try:
        result = evaluate_model(
            model,
            dataset,
            config,
            settings.split,
            batch_size=settings.batch_size,
            device=target,
            iwae_samples=settings.iwae_samples,
            iwae_chunk=settings.iwae_chunk,
            scored_frames=settings.scored_frames,
            scores=scores,
            progress=f"evaluate {settings.split}" if progress else None,
        )
    except NonFiniteError as error:
        raise NonFiniteError(f"{checkpoint}: {error}") from None
    result["checkpoint"] = str(checkpoint)
    if output is not None:
        write_text_atomically(output, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def format_table(result: dict[str, Any]) -> str:
    """A readable table of an evaluation result (:func:`evaluate`)."""
    protocol = result["protocol"]

    def number(value: float | None, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    series = "standardization" in protocol  # a real-valued series: its own units
    unit = (
        "nats per pixel per channel" if len(protocol["frame_shape"]) == 3 else "nats per dimension"
    )

    def both_scales(key: str) -> str:  # [0, 1] density, then the paper's 0-255 scale
        if series:
            return f"{number(result[key])} in the series' own units"
        return f"{number(result[key])} on [0, 1]; {number(result[key + '_8bit'])} on 0-255"

    bits = result["bits_per_dim"]
    rows = [("model", f"{result['model']} ({result['bound']})")]
    if result.get("elbo_nats_per_dim") is not None:
        rows.append((f"ELBO, {unit}", both_scales("elbo_nats_per_dim")))
    if result.get("iwae_nats_per_dim") is not None:
        rows.append(
            (f"IWAE (K={result['iwae_samples']}), {unit}", both_scales("iwae_nats_per_dim"))
        )
    rows += [
        ("data", f"{protocol['dataset']}, split {protocol['split']}"),
        ("sequences", str(result["sequences"])),
        (
            "frames scored",
            f"{result['frames_scored']} ({protocol['scored_frames_per_sequence']} per sequence "
            f"after {protocol['context_frames']} context frames; crops of "
            f"{protocol['crop_length']})",
        ),
        # a series is standardised, not noised; frames are scaled and noised
        ("standardisation", protocol["scaling"])
        if series
        else ("noise", f"{protocol['scaling']}, {protocol['noise']}; seed {protocol['seed']}"),
        (
            f"{unit} (best bound)" if result.get("elbo_nats_per_dim") is not None else unit,
            both_scales("nats_per_dim"),
        ),
        (
            "bits per dimension",
            number(bits)
            if bits is not None
            else "n/a (real values)"
            if series
            else "n/a (needs data.noise=uniform)",
        ),
        ("temporal correlation of x", number(result["corr_x"], 3)),
        ("temporal correlation of noise", number(result["corr_noise"], 3)),
    ]
    share = result.get("share_scored")
    if share is not None and share < 1:  # gaps (NaN): the missing values are not scored
        rows.insert(
            4,
            (
                "share scored",
                f"{share:.4f} of the values of the scored frames ({result['dims_scored']} "
                "observed; the missing ones are left out)",
            ),
        )
        rows[-2:] = [(name, "n/a (gaps)") for name, _ in rows[-2:]]
    if result.get("scores"):
        rows.append(("scores of every sequence and frame", result["scores"]["folder"]))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


@torch.no_grad()
def sample(
    checkpoint: str | Path,
    out: str | Path,
    overrides: Sequence[str] = (),
    split: str | None = None,
    num: int = 4,
    length: int = 10,
    context: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    name: str = "samples",
    fps: float = 4.0,
    device: str = "auto",
    conditions: str | Path | None = None,
) -> dict[str, Any]:
    r"""Samples sequences, or predicts the continuation of real context frames.

    Arguments:
        checkpoint: A checkpoint written by ``seqflows train``.
        out: Folder for NAME.pt (the tensors: ``context``, ``predicted`` and ``future``, the
            real frames that followed the context where the data has them; a standardised
            series in its own units) and NAME.png; for frames NAME.gif too. For vector series
            NAME.png draws lines: the context, the real future and the sampled one, with the
            5-95% band of :data:`SPREAD_SAMPLES` more samples of each context.
        overrides: ``data.*`` / ``evaluate.*`` changes (where the context frames come from).
        split: The split of the context frames (default: the configuration's, test).
        num: Sequences to sample (with context: the first ``num`` sequences of the split, taken
            again from the first when the split has fewer).
        length: Frames to generate (they may go on past the end of the real sequences).
        context: Real frames to condition on (None: the model's ``burn_in``, the fewest).
        seed: Seed of the sampled noise.
        temperature: Spread of the base noise (1: the model; 0: for flows the mean prediction,
            shift + scale * mean noise, at every step; for SLVMs the likelihood's loc, with the
            latents still sampled).
        name: File stem.
        fps: Frames per second of the GIF.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        conditions: A conditioned model's conditions of the generated frames, a file
            (:mod:`seqflows.app.conditions`); None: the data's (what followed the context).

    Returns:
        ``{"written": {kind: path}, "context_frames": c, "units": ..., "conditions": ...}``:
        every file written, and where the generated frames' conditions came from (``data``,
        ``file`` or None for an unconditioned model).
    """
    from .animation import save_gif
    from .figures import save_prediction, save_vector_prediction

    _at_least("num", num, 1)
    _at_least("length", length, 1)
    _at_least("context", context, 0)
    target = resolve_device(device)
    model, config = load_for_evaluation(checkpoint, overrides, split)
    model = fold_batch_norm(model.to(target))  # BatchNorm in the convolutions: faster steps
    context_frames = model.burn_in if context is None else context
    check_context(model, context_frames)
    real = frames = known = None
    if context_frames > 0 or (model.condition_dim and conditions is None):
        frames, real, known = real_sequences(config, num, context_frames, length)
        frames = frames.to(target) if context_frames > 0 else None
    gaps = None  # the context's observation masks, for a model given them
    if config.data.gaps:
        gaps = torch.zeros(num, 0, *model.event_shape) if frames is None else frames.cpu()
    steps = generation_conditions(
        model.condition_dim, num, context_frames, length, known, conditions, gaps
    )
    steps = None if steps is None else steps.to(target)
    generator = torch.Generator(device=target).manual_seed(seed)
    predicted = model.sample(
        num, length, context=frames, generator=generator, temperature=temperature, conditions=steps
    ).cpu()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    preprocessing = preprocessing_of(config.data)  # a standardised series: back to its units
    tensors = {
        "context": None if frames is None else preprocessing.inverse(frames.cpu()),
        "predicted": preprocessing.inverse(predicted),
        "future": None if real is None else preprocessing.inverse(real),
        "conditions": None if steps is None else steps.cpu(),
    }
    written = {"pt": str(save_atomically(tensors, folder / f"{name}.pt"))}
    units = (
        "the series' own units (the standardisation undone)"
        if preprocessing.standardizes
        else "frames scaled to [0, 1]"
        if len(model.event_shape) == 3
        else "values scaled to [0, 1]"
    )
    if real is not None and real.shape[1] < length:
        real = None  # the data ends before the prediction: no real row in the figure
    shown_context = frames.cpu() if frames is not None else predicted[:, :0]
    title = (
        f"{model_label(model)} on {_data_label(config)}: {context_frames} real context frames, "
        f"{length} sampled at temperature {temperature:g}"
    )
    if conditions is not None:  # "what if": not what followed the context in the data
        names = ", ".join(config.data.condition_names) or "conditions"
        title += f",\nfollowing the {names} of {Path(conditions).name} (not the data's)"
    if len(model.event_shape) == 3:  # frames: pictures too
        full = predicted if frames is None else torch.cat([frames.cpu(), predicted], dim=1)
        written["gif"] = str(save_gif(full.clamp(0, 1), folder / f"{name}.gif", fps=fps))
        written["png"] = str(
            save_prediction(shown_context, real, predicted, folder / f"{name}.png", title=title)
        )
    else:  # vector series: lines, with the spread of more samples of the same context
        repeated = None if frames is None else frames.repeat(SPREAD_SAMPLES, 1, 1)
        more = model.sample(
            SPREAD_SAMPLES * num,
            length,
            context=repeated,
            generator=generator,
            temperature=temperature,
            conditions=None if steps is None else steps.repeat(SPREAD_SAMPLES, 1, 1),
        ).cpu()

        def own_units(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else preprocessing.inverse(values).float()

        written["png"] = str(
            save_vector_prediction(
                own_units(shown_context),
                own_units(real),
                own_units(predicted),
                folder / f"{name}.png",
                spread=own_units(more.unflatten(0, (SPREAD_SAMPLES, num))),
                title=title,
                names=config.data.dimension_names,
            )
        )
    source = None if steps is None else "file" if conditions is not None else "data"
    return {
        "written": written,
        "context_frames": context_frames,
        "units": units,
        "conditions": source,
    }


# More samples of each context for the spread of the line plots of vector series.
SPREAD_SAMPLES = 50


def curve_labels(model: nn.Module) -> tuple[dict[str, tuple[str, str]], str]:
    r"""Readable titles and units of the logged curves that :func:`visualize` draws, and the
    caption that explains them, for ``model``: (name -> (title, y-axis label), caption)."""
    dims = math.prod(model.event_shape)
    shape = " x ".join(str(size) for size in model.event_shape)
    objective = "log-likelihood" if model.exact else "ELBO"
    labels = {
        "train/loss": (f"training loss (minus the {objective} of a frame)", "nats / frame"),
        "train/nats_per_dim": (f"training {objective} per dimension", "nats / dim"),
        "val/nats_per_dim": (
            "validation " + ("log-likelihood" if model.exact else "bound") + " per dimension",
            "nats / dim",
        ),
        "val/corr_noise": ("validation: lag-1 correlation of the noise y (Eq. 31)", "correlation"),
        "train/kl": ("training KL(q(z_t) || p(z_t)) of a frame", "nats / frame"),
    }
    note = (
        f"The loss is minus the {objective} of a frame, its {shape} = {dims:,} values summed, "
        "averaged over the scored frames of a batch"
        + ("" if model.exact else ", with the KL weighted during warm-up")
        + f"; divided by {dims:,} it is minus the training curve per dimension. "
        + (
            "Per dimension: nats of frames scaled to [0, 1], higher is better; on the paper's "
            f"0-255 scale they are {math.log(256):.3f} lower. "
            if len(model.event_shape) == 3
            else "Per dimension: nats of the series as the model sees it, higher is better. "
        )
        + "A correlation of 0 is white noise."
    )
    return labels, note


@torch.no_grad()
def visualize(
    checkpoint: str | Path,
    out: str | Path,
    overrides: Sequence[str] = (),
    split: str | None = None,
    index: int = 0,
    frames: int = 8,
) -> dict[str, Any]:
    r"""Fig. 4 / Fig. 9: rows x, then shift, scale and output of each transform (for an SLVM
    without a flow: the loc, scale and residual of p(x_t | z_t)), as images for frames and as
    line plots for vector series; and the training curves of every session of the run (the
    first training and each resume): curves.png and curves.csv.

    Arguments:
        checkpoint: A checkpoint written by ``seqflows train`` (its run folder has the logs).
        out: Folder for the figures.
        overrides: ``data.*`` / ``evaluate.*`` changes.
        split: The split of the sequence shown (default: the configuration's, test).
        index: Which evaluation sequence.
        frames: Scored frames to show.
    """
    from .figures import save_curves, save_flow_rows, save_vector_rows
    from .metrics_csv import merge_curves, read_metrics_csv, run_metrics_files, write_metrics_csv

    _at_least("index", index, 0)
    _at_least("frames", frames, 1)
    model, config = load_for_evaluation(checkpoint, overrides, split)
    dataset = evaluation_set(config, config.evaluate.split, count=index + 1)
    x, known = sequence_batch(dataset, [index])  # read once, with its conditions if any
    # a conditioned model's rows are those of the sequence's conditions
    conditions = known if model.condition_dim else None
    if config.data.gaps:  # and of its observation masks
        conditions = observation_conditions(x, known)
    generator = torch.Generator().manual_seed(config.data.seed)
    data, layers = figure_rows(model, x, generator, conditions=conditions)
    shown = slice(0, frames)
    rows = [{key: value[0, shown] for key, value in layer.items()} for layer in layers]
    folder = Path(out)
    data_label = _data_label(config)
    title = f"{model_label(model)} on {data_label} ({config.evaluate.split} sequence {index})"
    if len(model.event_shape) == 3:
        path = save_flow_rows(
            data[0, shown],
            rows,
            folder / "flow_rows.png",
            first_frame=model.burn_in,
            title=title,
            note=rows_note(model, rows),
        )
    else:
        path = save_vector_rows(
            data[0, shown],
            rows,
            folder / "flow_rows.png",
            first_frame=model.burn_in,
            title=title,
            names=config.data.dimension_names,
        )
    written = {"flow_rows": str(path)}
    metrics = run_metrics_files(Path(checkpoint).resolve().parent.parent)
    if metrics:
        columns = merge_curves([read_metrics_csv(path) for path in metrics])
        written["curves_data"] = str(write_metrics_csv(columns, folder / "curves.csv"))
        curves = {key: columns[key] for key in CURVES if columns.get(key)}
        if curves:
            labels, note = curve_labels(model)
            written["curves"] = str(
                save_curves(
                    curves,
                    folder / "curves.png",
                    title=f"{model_label(model)} on {data_label}: training curves",
                    labels=labels,
                    note=note,
                )
            )
    return {"written": written, "curves_from": [str(path) for path in metrics]}


def rows_note(model: nn.Module, rows: Sequence[dict[str, torch.Tensor]]) -> str | None:
    r"""The caption of :func:`visualize`'s rows: what the SLVM's rows are, and for conv flows
    with zero padding the frame that the border leaves in the noise, measured on these rows."""
    if "residual" in rows[0]:
        return (
            "loc and scale: the likelihood p(x_t | z_t) at one sample of the posterior; "
            "residual: (x_t - loc) / scale."
        )
    flow = model.config.flow  # the flow's settings (an SLVM w/ M-AF's likelihood)
    if flow is None:
        return None
    conditioner = flow.conditioner
    if conditioner.kind_for(model.event_shape) != "conv" or conditioner.padding != "zeros":
        return None
    H, W = model.event_shape[1:]
    if H < 3 or W < 3:
        return None
    border = torch.ones(H, W, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    ratios = []
    for row in rows:
        scale = row["scale"].double()
        ratios.append(float(scale[..., border].mean() / scale[..., ~border].mean()))
    if len(ratios) == 1:
        measured = f"{ratios[0]:.2f}x"
    else:
        measured = ", ".join(f"{ratio:.2f}x (transform {m})" for m, ratio in enumerate(ratios, 1))
    return (
        "Border: the conditioner's convolutions pad with zeros (model.padding=zeros, the "
        "paper's), so at the outermost rows and columns they see zeros beyond the frame. Where "
        "the data there are nearly always black, the model learns another scale there and the "
        "noise panels show a frame: here the mean scale of the outermost rows and columns is "
        f"{measured} the interior's. docs/design.md explains it; model.padding=replicate "
        "repeats the outermost pixels instead."
    )


CURVES = ("train/loss", "train/nats_per_dim", "val/nats_per_dim", "val/corr_noise", "train/kl")


def download(dataset: str = "mnist", root: str | Path = "data", every: bool = False) -> dict:
    r"""Downloads MNIST from its mirrors and checks every file's MD5 (what
    ``data.dataset=moving_mnist`` renders sequences from): the training images, or ``every``
    file. Offline, put the files into ROOT/mnist by hand."""
    from ..data import mnist

    if dataset != "mnist":
        raise ConfigError(f"download: unknown dataset {dataset!r}; the only one is mnist")
    files = tuple(mnist.MNIST_FILES) if every else ("train-images-idx3-ubyte.gz",)
    paths = mnist.download_mnist(Path(root) / "mnist", files=files)
    return {name: str(path) for name, path in paths.items()}


def check_context(model: nn.Module, context_frames: int) -> None:
    """Refuses fewer real context frames than the model's ``burn_in`` (what it conditions on)."""
    if context_frames < model.burn_in:
        raise ConfigError(
            f"context {context_frames} is too short: this model needs {model.burn_in} "
            "context frames"
        )


def load_for_evaluation(
    checkpoint: str | Path, overrides: Sequence[str] = (), split: str | None = None
) -> tuple[nn.Module, Config]:
    r"""The model of a checkpoint (eval mode) and its configuration with the allowed changes.

    ``data.path`` of another file than the training run's: the file's dataset kind, frame size
    and held-out parts are its own (read from it, unless ``overrides`` give them), and the file
    is checked against what the checkpoint models before anything else
    (:func:`~seqflows.app.new_files.check_new_file`); a series far outside the model's
    standardisation gets a warning line on stderr.
    """
    model, config, _ = model_from_checkpoint(checkpoint)
    trained = config.data
    changes = list(overrides)
    for override in changes:
        if override.partition(".")[0] not in ("data", "evaluate"):
            raise ConfigError(f"{override}: only data.* and evaluate.* can change after training")
    if split is not None:
        changes.append(f"evaluate.split={split}")
    if changes:
        config = Config.from_dict(config.to_dict(), changes, source=str(checkpoint))
    if reads_new_file(trained, config.data):
        given = {override.partition("=")[0].removeprefix("data.") for override in overrides}
        config = config.replace(data=new_file_settings(config.data, given))
        _, warning = check_new_file(config.data, tuple(model.event_shape), config.evaluate.split)
        if warning is not None:
            say(f"warning: {warning}")
    return model, config


def real_sequences(
    config: Config, count: int, context: int, length: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    r"""The first ``context`` frames of ``count`` evaluation sequences (the split's first ones,
    again from the first when it has fewer), the real frames that follow them, up to ``length``
    (fewer where the sequences end, None when none follow), and the conditions of all those
    frames where the data has conditions (else None).

    Returns:
        (context frames (N, context, ...), following frames (N, L', ...) or None, conditions
        (N, context + L', A) or None), N = ``count``, L' <= ``length``.
    """
    split = config.evaluate.split
    total = context + length
    config = config.replace(
        evaluate={"crop": "first", "scored_frames": None},
        data={"num_frames": max(config.data.num_frames, total)},
    )
    resolve_data(config, split)  # checks the data before reading it
    source = build_source(config.data, split)
    if source.stored:
        if context > source.num_frames:
            raise ConfigError(
                f"{source.name}: --context {context} is longer than its shortest sequence "
                f"({source.num_frames} frames)"
            )
        total = min(total, source.num_frames)
        count_read = min(count, len(source))
    else:
        count_read = count
    dataset = evaluation_set(config.replace(data={"eval_length": total}), split, count=count_read)
    sequences, known = sequence_batch(dataset, [index % count_read for index in range(count)])
    future = sequences[:, context:] if total > context else None
    return sequences[:, :context], future, known


def sequence_batch(
    dataset: Any, indices: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Items ``indices`` of an evaluation set, stacked: frames (N, L, ...) and conditions
    (N, L, A) where its data has conditions (whether or not its items carry them), else None."""
    if getattr(dataset.source, "condition_dim", 0) > 0:
        items = [dataset.with_conditions(index) for index in indices]
    else:
        items = [dataset[index] for index in indices]
        items = [(item, None) if isinstance(item, torch.Tensor) else item for item in items]
    frames = torch.stack([sequence for sequence, _ in items])
    if items[0][1] is None:
        return frames, None
    return frames, torch.stack([conditions for _, conditions in items])


def _check_event_shape(model: nn.Module, dataset: Any, config: Config) -> None:
    """Refuses data whose frames are not the model's (say, a series of other dimensions)."""
    shape = tuple(int(size) for size in dataset.frame_shape)
    if shape != tuple(model.event_shape):
        where = dataset.source.name if dataset.source.stored else config.data.dataset
        raise ConfigError(
            f"{where}: frames of shape {shape}, but the model was trained on frames of shape "
            f"{tuple(model.event_shape)}"
        )


def _data_label(config: Config) -> str:
    """The data of figure titles: the file or store for file-backed datasets."""
    if config.data.path is not None and config.data.dataset in ("array", "store"):
        return Path(config.data.path).name
    return config.data.dataset


def resolve_device(name: str) -> torch.device:
    """The device ``name`` (``auto``: CUDA when present), checked to exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name}: unknown device; use auto, cpu or cuda") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = "built without CUDA" if torch.version.cuda is None else "finds no GPU"
            raise ConfigError(
                f"device {name}: CUDA is not available (this PyTorch {torch.__version__} "
                f"{built}); use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name}: MPS is not available on this machine")
    return device


def check_folder_argument(option: str, folder: str | Path) -> None:
    """Refuses a folder argument that is a file or lies under one, before any work is done."""
    path = Path(folder)
    for existing in (path, *path.parents):
        if existing.is_symlink() or existing.exists():  # a dangling link is in the way too
            break
    else:
        return
    if not existing.is_dir():
        where = "is not a folder" if existing == path else f"lies under {existing}, not a folder"
        raise ConfigError(f"{option} {folder} {where}; it must name a folder (made when missing)")


def _at_least(name: str, value: int | None, minimum: int) -> None:
    """Refuses a numeric argument below ``minimum`` (None: not given)."""
    if value is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
