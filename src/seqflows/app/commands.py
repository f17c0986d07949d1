r"""The ``train``, ``evaluate``, ``sample`` and ``visualize`` subcommands of ``seqflows``.

Each command has a ``add_*_arguments(parser)`` function that declares its options and a
``run_*(args)`` function that runs it; :mod:`seqflows.cli` wires them together.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_text_atomically
from .checkpoints import model_from_checkpoint, save_atomically
from .config import Config, ConfigError, load_config
from .datasets import evaluation_set
from .objectives import frame_objective, model_label

__all__ = [
    "add_download_arguments",
    "add_evaluate_arguments",
    "add_sample_arguments",
    "add_train_arguments",
    "add_visualize_arguments",
    "run_download",
    "run_evaluate",
    "run_sample",
    "run_train",
    "run_visualize",
]

OVERRIDE_HELP = (
    "configuration overrides section.key=value, e.g. train.batch_size=8 model.window=2 "
    "data.noise=uniform (values are YAML)"
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows train``."""
    parser.add_argument("config", nargs="?", help="YAML configuration (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDE_HELP)
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, config")
    parser.add_argument("--seed", type=int, help="train.seed: initial weights and data stream")
    parser.add_argument("--max-steps", type=int, help="train.max_steps: optimizer steps")
    parser.add_argument("--batch-size", type=int, help="train.batch_size: over all processes")
    parser.add_argument("--accelerator", help="train.accelerator: auto, cpu, gpu, ...")
    parser.add_argument("--devices", help="train.devices: devices per node (int or auto)")
    parser.add_argument("--num-nodes", type=int, help="train.num_nodes")
    parser.add_argument("--strategy", help="train.strategy: auto, ddp, ... (Lightning)")
    parser.add_argument(
        "--precision", choices=("32", "bf16-mixed", "16-mixed", "64"), help="train.precision"
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        nargs="?",
        const="last",
        metavar="CHECKPOINT",
        help="continue from CHECKPOINT, or from OUT/checkpoints/last.ckpt when none is given "
        "(a fresh start when that does not exist yet); the learning rate, max_steps (constant "
        "schedule), cadences and hardware may change, the model, data, seed, batch size and "
        "optimizer may not",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that OUT holds: remove its config.yaml, resumes.yaml, "
        "checkpoints/ and logs/ and start afresh (without --resume or --overwrite, a folder "
        "that holds a run is refused)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from .train import train

    flags = {
        "train.seed": args.seed,
        "train.max_steps": args.max_steps,
        "train.batch_size": args.batch_size,
        "train.accelerator": args.accelerator,
        "train.devices": args.devices,
        "train.num_nodes": args.num_nodes,
        "train.strategy": args.strategy,
        "train.precision": args.precision,
    }
    overrides = list(args.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None]
    config_path = args.config
    if config_path is not None and "=" in config_path and not Path(config_path).exists():
        overrides.insert(0, config_path)  # no file given: the defaults and overrides only
        config_path = None
    config = load_config(config_path, overrides)
    summary = train(
        config,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    if summary.get("is_global_zero", True):
        shown = {key: value for key, value in summary.items() if key != "throughput"}
        print(json.dumps(shown, indent=2, allow_nan=False))
    return 0


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint written by seqflows train")
    parser.add_argument(
        "--split",
        choices=("test", "validation", "train"),
        help="evaluation.split (default: test; train: fixed crops of training sequences)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override data.* or evaluate.* of the stored configuration, e.g. "
        "data.path=/data/mnist_test_seq.npy when the data moved",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows evaluate``."""
    _add_checkpoint_arguments(parser)
    parser.add_argument("--sequences", type=int, help="score only the first N sequences")
    parser.add_argument("--batch-size", type=int, help="evaluate.batch_size")
    parser.add_argument(
        "--iwae-samples",
        type=int,
        help="SLVMs: K of the importance-weighted bound (evaluate.iwae_samples, default 100; "
        "0: ELBO only)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--output", help="also write the JSON result to this file")


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_model

    _at_least("--sequences", args.sequences, 1)
    _at_least("--batch-size", args.batch_size, 1)
    _at_least("--iwae-samples", args.iwae_samples, 0)
    device = _device(args.device)
    model, config = _load(args)
    changed = {"batch_size": args.batch_size, "iwae_samples": args.iwae_samples}
    config = config.replace(evaluate={k: v for k, v in changed.items() if v is not None})
    split = config.evaluate.split
    count = config.evaluate.sequences if args.sequences is None else args.sequences
    dataset = evaluation_set(config, split, count=count)
    try:
        result = evaluate_model(
            model,
            dataset,
            config,
            split,
            batch_size=config.evaluate.batch_size,
            device=device,
            iwae_samples=config.evaluate.iwae_samples,
            iwae_chunk=config.evaluate.iwae_chunk,
            scored_frames=config.evaluate.scored_frames,
        )
    except FloatingPointError as error:
        raise FloatingPointError(f"{args.checkpoint}: {error}") from None
    result["checkpoint"] = str(args.checkpoint)
    text = json.dumps(result, indent=2, allow_nan=False)
    if args.output:
        write_text_atomically(args.output, text + "\n")
    if args.json:
        print(text)
    else:
        print(format_table(result))
    return 0


def format_table(result: dict[str, Any]) -> str:
    """A readable table of an evaluation result."""
    protocol = result["protocol"]

    def number(value: float | None, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    def both_scales(key: str) -> str:  # [0, 1] density, then the paper's 0-255 scale
        return f"{number(result[key])} on [0, 1]; {number(result[key + '_8bit'])} on 0-255"

    bits = result["bits_per_dim"]
    rows = [("model", f"{result['model']} ({result['bound']})")]
    if result.get("elbo_nats_per_dim") is not None:
        rows.append(("ELBO, nats per pixel per channel", both_scales("elbo_nats_per_dim")))
    if result.get("iwae_nats_per_dim") is not None:
        rows.append(
            (
                f"IWAE (K={result['iwae_samples']}), nats per pixel per channel",
                both_scales("iwae_nats_per_dim"),
            )
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
        ("noise", f"{protocol['scaling']}, {protocol['noise']}; seed {protocol['seed']}"),
        (
            "nats per pixel per channel (best bound)"
            if result.get("elbo_nats_per_dim") is not None
            else "nats per pixel per channel",
            both_scales("nats_per_dim"),
        ),
        (
            "bits per dimension",
            number(bits) if bits is not None else "n/a (needs data.noise=uniform)",
        ),
        ("temporal correlation of x", number(result["corr_x"], 3)),
        ("temporal correlation of noise", number(result["corr_noise"], 3)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows sample``."""
    _add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, help="folder for samples.gif and samples.png")
    parser.add_argument("--num", type=int, default=4, help="sequences to sample (default 4)")
    parser.add_argument("--length", type=int, default=10, help="frames to generate (default 10)")
    parser.add_argument(
        "--context",
        type=int,
        help="real frames from the evaluation data to condition on (video prediction); "
        "default: the model's burn_in, the fewest it can take",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled noise")
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="spread of the base noise (1: samples of the model; 0: for flows their mean "
        "prediction, shift + scale * mean noise, at every step; for SLVMs the likelihood's loc, "
        "with the latents still sampled)",
    )
    parser.add_argument("--name", default="samples", help="file stem (default: samples)")
    parser.add_argument("--fps", type=float, default=4.0, help="frames per second of the GIF")


@torch.no_grad()
def run_sample(args: argparse.Namespace) -> int:
    from .figures import save_gif, save_prediction

    _at_least("--num", args.num, 1)
    _at_least("--length", args.length, 1)
    _at_least("--context", args.context, 0)
    device = _device(args.device)
    model, config = _load(args)
    model.to(device)
    context_frames = model.burn_in if args.context is None else args.context
    if context_frames < model.burn_in:
        raise ConfigError(
            f"--context {context_frames} is too short: this model needs {model.burn_in} "
            "context frames (num_transforms * window)"
        )
    real = None
    context = None
    if context_frames > 0:
        sequences = _real_sequences(config, args.num, context_frames + args.length)
        context = sequences[:, :context_frames].to(device)
        real = sequences[:, context_frames:]
    generator = torch.Generator(device=device).manual_seed(args.seed)
    predicted = model.sample(
        args.num, args.length, context=context, generator=generator, temperature=args.temperature
    ).cpu()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"context": None if context is None else context.cpu(), "predicted": predicted}
    save_atomically(tensors, out / f"{args.name}.pt")
    if len(model.event_shape) != 3:  # vector series: the tensors, no pictures
        report = {"written": {"pt": str(out / f"{args.name}.pt")}}
        print(json.dumps(report, indent=2, allow_nan=False))
        return 0
    full = predicted if context is None else torch.cat([context.cpu(), predicted], dim=1)
    paths = {
        "gif": str(save_gif(full.clamp(0, 1), out / f"{args.name}.gif", fps=args.fps)),
        "png": str(
            save_prediction(
                context.cpu() if context is not None else predicted[:, :0],
                real,
                predicted,
                out / f"{args.name}.png",
                title=f"{model_label(model)}: {context_frames} real context frames, "
                f"{args.length} sampled at temperature {args.temperature:g}",
            )
        ),
    }
    report = {"written": paths, "context_frames": context_frames}
    print(json.dumps(report, indent=2, allow_nan=False))
    return 0


def add_visualize_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows visualize``."""
    _add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, help="folder for the figures")
    parser.add_argument("--index", type=int, default=0, help="evaluation sequence to show")
    parser.add_argument("--frames", type=int, default=8, help="scored frames to show (default 8)")


@torch.no_grad()
def run_visualize(args: argparse.Namespace) -> int:
    r"""Fig. 4 / Fig. 9: rows x, then shift, scale and output of each transform; and the
    training curves of every session of the run (the first training and each resume):
    curves.png, and their data in curves.csv."""
    from .figures import (
        merge_curves,
        read_metrics_csv,
        run_metrics_files,
        save_curves,
        save_flow_rows,
        write_metrics_csv,
    )

    _at_least("--index", args.index, 0)
    _at_least("--frames", args.frames, 1)
    model, config = _load(args)
    if len(model.event_shape) != 3:
        raise ConfigError(
            f"visualize draws frames (C, H, W); this model has vector events {model.event_shape}"
        )
    dataset = evaluation_set(config, config.evaluate.split, count=args.index + 1)
    x = dataset[args.index].unsqueeze(0)
    frames = slice(0, args.frames)
    generator = torch.Generator().manual_seed(config.data.seed)
    objective = frame_objective(model, x, generator)
    out = objective.flow
    if out is not None:  # the flow (of a flow model, or inside an SLVM): Fig. 4 and Fig. 9
        outputs = list(out.inputs[1:]) + [out.noise]
        layers = [
            {"shift": shift[0, frames], "scale": scale[0, frames], "noise": output[0, frames]}
            for shift, scale, output in zip(out.shifts, out.scales, outputs, strict=True)
        ]
        data = out.inputs[0][0, frames]
    else:  # SLVM baseline: loc, scale and standardized residual of p(x_t | z_t)
        terms = model.elbo_terms(x, generator)
        loc, scale = terms.likelihood_loc[0, frames], terms.likelihood_scale[0, frames]
        data = x[0, model.burn_in :][frames]
        layers = [{"shift": loc, "scale": scale, "noise": (data - loc) / scale}]
    folder = Path(args.out)
    written = {
        "flow_rows": str(
            save_flow_rows(
                data,
                layers,
                folder / "flow_rows.png",
                first_frame=model.burn_in,
                title=f"{model_label(model)} on {_data_label(config)} "
                f"({config.evaluate.split} sequence {args.index})",
            )
        )
    }
    # The run's curves: every session (first training and each resume), in order.
    metrics = run_metrics_files(Path(args.checkpoint).resolve().parent.parent)
    if metrics:
        columns = merge_curves([read_metrics_csv(path) for path in metrics])
        written["curves_data"] = str(write_metrics_csv(columns, folder / "curves.csv"))
        wanted = [
            "train/loss",
            "train/nats_per_dim",
            "val/nats_per_dim",
            "val/corr_noise",
            "train/kl",
        ]
        curves = {name: columns[name] for name in wanted if columns.get(name)}
        if curves:
            written["curves"] = str(save_curves(curves, folder / "curves.png"))
    report = {"written": written, "curves_from": [str(path) for path in metrics]}
    print(json.dumps(report, indent=2, allow_nan=False))
    return 0


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows download``."""
    parser.add_argument(
        "dataset", choices=("mnist",), help="mnist: the MNIST digit files (IDX, gzipped)"
    )
    parser.add_argument("--root", default="data", help="data root (files go to ROOT/mnist)")
    parser.add_argument(
        "--all", action="store_true", help="also the test images and both label files"
    )


def run_download(args: argparse.Namespace) -> int:
    r"""Downloads MNIST from its mirrors and checks every file's MD5 (what data.dataset=
    moving_mnist renders sequences from). Offline, put the files into ROOT/mnist by hand."""
    from ..data import mnist

    files = tuple(mnist.MNIST_FILES) if args.all else ("train-images-idx3-ubyte.gz",)
    paths = mnist.download_mnist(Path(args.root) / "mnist", files=files)
    written = {name: str(path) for name, path in paths.items()}
    print(json.dumps(written, indent=2, allow_nan=False))
    return 0


def _load(args: argparse.Namespace) -> tuple[Any, Config]:
    """The model of ``args.checkpoint`` and its configuration with the allowed overrides."""
    model, config, _ = model_from_checkpoint(args.checkpoint)
    overrides = list(args.overrides or [])
    for override in overrides:
        section = override.partition(".")[0]
        if section not in ("data", "evaluate"):
            raise ConfigError(
                f"--set {override}: only data.* and evaluate.* can change after training"
            )
    if args.split is not None:
        overrides.append(f"evaluate.split={args.split}")
    config = Config.from_dict(config.to_dict(), overrides, source=str(args.checkpoint))
    return model, config


def _real_sequences(config: Config, count: int, length: int) -> torch.Tensor:
    """``count`` evaluation sequences of ``length`` frames, from their first frame."""
    config = config.replace(
        evaluate={"crop": "first"},
        data={"eval_length": length, "num_frames": max(config.data.num_frames, length)},
    )
    dataset = evaluation_set(config, config.evaluate.split, count=count)
    return torch.stack([dataset[index] for index in range(count)])


def _data_label(config: Config) -> str:
    """The data of figure titles: the file or store for file-backed datasets."""
    if config.data.path is not None and config.data.dataset in ("array", "store"):
        return Path(config.data.path).name
    return config.data.dataset


def _device(name: str) -> torch.device:
    """The device of ``--device``, checked to exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name}: unknown device; use auto, cpu or cuda") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            built = "built without CUDA" if torch.version.cuda is None else "finds no GPU"
            raise ConfigError(
                f"--device {name}: CUDA is not available (this PyTorch {torch.__version__} "
                f"{built}); use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine")
    return device


def _at_least(flag: str, value: int | None, minimum: int) -> None:
    """Refuses a numeric option below ``minimum`` (None: not given)."""
    if value is not None and value < minimum:
        raise ConfigError(f"{flag} must be at least {minimum}, got {value}")
