r"""The ``seqflows`` command: a thin adapter from the command line to typed functions.

Each subcommand parses its options and calls one function of the application layer
(:func:`~seqflows.app.train.train`, :func:`~seqflows.app.commands.evaluate`, ...), then prints
what it returns. Configuration changes are ``section.key=value`` arguments for every command
(values are YAML). Errors about the user's input or setup
(:class:`~seqflows.errors.SeqflowsError` and the OS errors of a missing or unusable path) end
with one line ``seqflows: error: ...`` and exit status 2; set SEQFLOWS_DEBUG=1 to see the
traceback. Any other exception (a ValueError or TypeError too) is a bug and keeps its
traceback. SIGTERM and SIGINT stop training at a step boundary with a resumable checkpoint, one
line saying how to resume, and exit status 143 or 130; SIGINT before training starts (or in
another command) ends with the line ``seqflows: interrupted by SIGINT`` and exit status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..config import choices
from ..errors import SeqflowsError
from ..version import __version__
from .interrupt import Interrupted, exit_on_sigint, sigint_at_once
from .progress import say

__all__ = [
    "build_parser",
    "main",
    "run_reporting",
]

DESCRIPTION = """\
seqflows: sequence models with autoregressive flows across time (Marino et al., 2020).

  seqflows train mmnist_1af --out runs/a          train (a shipped experiment, or a YAML file)
  seqflows evaluate runs/a/checkpoints/best.ckpt  nats per pixel per channel, on both scales
  seqflows configs                                the experiments that ship with seqflows
"""
OVERRIDES = (
    "configuration changes section.key=value, e.g. train.batch_size=8 model.window=2 "
    "data.noise=uniform (values are YAML)"
)
AFTER_TRAINING = (
    "changes of data.* or evaluate.* of the stored configuration, e.g. "
    "data.path=/data/mnist_test_seq.npy when the data moved"
)
# Commands that run models forward (evaluation, generation): they keep freed memory
# (seqflows.allocator.retain_freed_memory) instead of page-faulting their large activations in
# again on every batch; 1.2x faster evaluation of the paper's SLVM (benchmarks/README.md).
RETAINING_COMMANDS = frozenset({"evaluate", "sample", "predict", "visualize"})
# The errors that are the user's to fix: one line and exit status 2. Everything else, a
# ValueError or TypeError included, is a bug and keeps its traceback.
USER_ERRORS = (
    SeqflowsError,  # the project's own: bad settings, data, checkpoints, divergence (errors.py)
    # The OS errors of a path the user named (on the command line or in a setting) that does
    # not lead to a file the command can use: the message names the path.
    FileNotFoundError,  # a checkpoint, configuration or data file that is not there
    IsADirectoryError,  # a folder given where a file is expected (--output runs/)
    NotADirectoryError,  # a file given where a folder is expected (--out file.txt/...)
    PermissionError,  # a file or folder the user may not read or write
)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"seqflows: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``seqflows`` command and its subcommands."""
    parser = _Parser(
        prog="seqflows",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"seqflows {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary, declare, run in SUBCOMMANDS:
        sub = commands.add_parser(name, help=summary, description=f"{summary}.")
        declare(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqflows`` console script; returns the exit status."""
    return run_reporting(lambda: _run(argv), "seqflows")


def run_reporting(command: Callable[[], int | None], program: str) -> int:
    r"""Runs ``command`` and returns its exit status (0 for None); what ends it early is one line
    on stderr, ``PROGRAM: ...``, and an exit status: the user's errors (:data:`USER_ERRORS`,
    ``PROGRAM: error: ...``, 2), a stop by SIGTERM or SIGINT (143 or 130) and Ctrl-C where no
    training took it over (start-up, other commands; 130). Anything else is a bug and keeps its
    traceback, as do all of these with ``SEQFLOWS_DEBUG`` set."""
    debug = bool(os.environ.get("SEQFLOWS_DEBUG"))
    try:
        return command() or 0
    except KeyboardInterrupt:
        if debug:
            raise
        interrupted = sigint_at_once()
        print(f"{program}: {interrupted.message}", file=sys.stderr, flush=True)
        return interrupted.exit_status
    except Interrupted as interrupted:
        if interrupted.message:
            print(f"{program}: {interrupted.message}", file=sys.stderr, flush=True)
        return interrupted.exit_status
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2


def _run(argv: Sequence[str] | None) -> int:
    """The parsing (which imports the commands' modules) and the command, for :func:`main`."""
    with exit_on_sigint():  # the commands' modules import torch
        parser = build_parser()
    argv = _resume_before_override(list(sys.argv[1:] if argv is None else argv))
    if argv[:1] and argv[0] in MOVED_COMMANDS:
        return _run_moved_command(argv[0], argv[1:])
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE changes may come after options: collect them wherever they are.
    if extra and hasattr(args, "overrides") and all(_is_override(item) for item in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in RETAINING_COMMANDS:
        # The process's memory allocator: set here, by the command, never by the library
        # (seqflows train sets it from train.allocator).
        from .runtime import retain_freed_memory

        retain_freed_memory()
    return args.run(args)


def _resume_before_override(argv: list[str]) -> list[str]:
    """``train ... --resume KEY=VALUE``: the override is not a checkpoint (argparse would take it
    for one); ``--resume`` then means the run's last.ckpt, and the override keeps its place."""
    for index, item in enumerate(argv[:-1]):
        following = argv[index + 1]
        if item == "--resume" and _is_override(following) and not os.path.exists(following):
            return [*argv[:index], "--resume=last", *argv[index + 1 :]]
    return argv


def _is_override(text: str) -> bool:
    return "=" in text and not text.startswith("-")


def field_choices(config_type: type, name: str) -> tuple[Any, ...]:
    """The values that the ``Literal`` type of the field ``name`` of the configuration dataclass
    ``config_type`` allows: the CLI's choices, written once, in the configuration."""
    return choices(typing.get_type_hints(config_type)[name])


def _print_json(result: Any) -> None:
    print(json.dumps(result, indent=2, allow_nan=False))


# train ----------------------------------------------------------------------------------------


def _train_options(parser: argparse.ArgumentParser) -> None:
    from .config import TrainConfig

    parser.add_argument(
        "config",
        nargs="?",
        help="a shipped experiment (seqflows configs) or a YAML file; none: the defaults",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES)
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, config")
    parser.add_argument("--seed", type=int, help="train.seed: initial weights and data stream")
    parser.add_argument("--max-steps", type=at_least(1), help="train.max_steps")
    parser.add_argument("--batch-size", type=at_least(1), help="train.batch_size (all processes)")
    parser.add_argument("--accelerator", help="train.accelerator: auto, cpu, gpu, ...")
    parser.add_argument("--devices", help="train.devices: devices per node (int or auto)")
    parser.add_argument("--num-nodes", type=at_least(1), help="train.num_nodes")
    parser.add_argument("--strategy", help="train.strategy: auto, ddp, ... (Lightning)")
    parser.add_argument(
        "--precision", choices=field_choices(TrainConfig, "precision"), help="train.precision"
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
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress (steps done, time left)"
    )


def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runtime import retain_freed_memory
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
    if config_path is not None and _is_override(config_path) and not Path(config_path).exists():
        overrides.insert(0, config_path)  # no configuration given: the defaults and changes
        config_path = None
    config = load_config(config_path, overrides)
    # The process's memory allocator: set here, by the command, never by the library.
    retained = config.train.allocator == "retain" and retain_freed_memory()
    summary = train(
        config,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        allocator="retain" if retained else "system",
    )
    if summary.get("is_global_zero", True):
        _print_json({key: value for key, value in summary.items() if key != "throughput"})
    return 0


# evaluate, sample, visualize -------------------------------------------------------------------


def _checkpoint_options(parser: argparse.ArgumentParser) -> None:
    from .config import EvaluateConfig

    parser.add_argument("checkpoint", help="a checkpoint written by seqflows train")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=AFTER_TRAINING)
    parser.add_argument(
        "--split",
        choices=field_choices(EvaluateConfig, "split"),
        help="evaluate.split (default: test; train: fixed crops of training sequences; all: "
        "every sequence of an array, e.g. a new one given as data.path=new.npy)",
    )


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda")


def _evaluate_options(parser: argparse.ArgumentParser) -> None:
    _checkpoint_options(parser)
    _device_option(parser)
    parser.add_argument("--sequences", type=at_least(1), help="score the first N sequences")
    parser.add_argument("--batch-size", type=at_least(1), help="evaluate.batch_size")
    parser.add_argument(
        "--iwae-samples",
        type=at_least(0),
        help="SLVMs: K of the importance-weighted bound (evaluate.iwae_samples, default 100; "
        "0: the ELBO only)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--output", help="also write the JSON result to this file")
    parser.add_argument(
        "--scores",
        metavar="DIR",
        help="also write the score of every sequence and every scored frame into DIR: "
        "sequences.csv and frames.csv (with the sequences' ids) and .npy arrays, e.g. for "
        "anomaly detection (the lowest scores are the least likely)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress (batches, time left) on stderr"
    )


def _evaluate(args: argparse.Namespace) -> int:
    from .commands import evaluate, format_table

    result = evaluate(
        args.checkpoint,
        args.overrides,
        split=args.split,
        sequences=args.sequences,
        batch_size=args.batch_size,
        iwae_samples=args.iwae_samples,
        device=args.device,
        output=args.output,
        scores=args.scores,
        progress=not args.no_progress,
    )
    if args.json:
        _print_json(result)
    else:
        print(format_table(result))
    return 0


def _sample_options(parser: argparse.ArgumentParser) -> None:
    _checkpoint_options(parser)
    _device_option(parser)
    parser.add_argument("--out", required=True, help="folder for NAME.pt, NAME.gif, NAME.png")
    parser.add_argument("--num", type=at_least(1), default=4, help="sequences (default 4)")
    parser.add_argument("--length", type=at_least(1), default=10, help="frames (default 10)")
    parser.add_argument(
        "--context",
        type=at_least(0),
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
    _conditions_option(parser)


def _conditions_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conditions",
        metavar="FILE",
        help="a conditioned model: the conditions (actions, covariates) of the generated "
        "frames, a .npy/.npz (L, A) or (N, L, A) or a .csv of L rows of A numbers, instead of "
        "the data's (what really followed the context)",
    )


def _sample(args: argparse.Namespace) -> int:
    from .commands import sample

    _print_json(
        sample(
            args.checkpoint,
            args.out,
            args.overrides,
            split=args.split,
            num=args.num,
            length=args.length,
            context=args.context,
            seed=args.seed,
            temperature=args.temperature,
            name=args.name,
            fps=args.fps,
            device=args.device,
            conditions=args.conditions,
        )
    )
    return 0


def _predict_options(parser: argparse.ArgumentParser) -> None:
    from .prediction import DEFAULT_SAMPLES

    _checkpoint_options(parser)
    _device_option(parser)
    parser.add_argument("--out", required=True, help="folder for NAME.json and NAME.png")
    parser.add_argument(
        "--context",
        type=at_least(1),
        help="real frames that condition each prediction (default: the model's burn_in, the "
        "fewest it can take)",
    )
    parser.add_argument(
        "--length", type=at_least(1), default=10, help="frames to predict (default 10)"
    )
    parser.add_argument(
        "--samples",
        type=at_least(1),
        default=DEFAULT_SAMPLES,
        help=f"futures sampled per sequence, K (default {DEFAULT_SAMPLES}, for a CPU; SVG and "
        "SRVP report K = 100)",
    )
    parser.add_argument("--sequences", type=at_least(1), help="predict the first N sequences")
    parser.add_argument(
        "--origins",
        type=at_least(1),
        help="rolling origins: forecast the last N windows of --length frames of each sequence, "
        "each from the --context frames before it (default context: every frame before the "
        "first origin of the shortest sequence)",
    )
    parser.add_argument(
        "--batch-size",
        type=at_least(1),
        help="futures per call of the model (evaluate.batch_size)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled noise")
    parser.add_argument("--name", default="prediction", help="file stem (default: prediction)")
    parser.add_argument("--json", action="store_true", help="print the JSON result")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress (sequences, time left) on stderr"
    )
    _conditions_option(parser)


def _predict(args: argparse.Namespace) -> int:
    from .prediction import format_prediction_table, predict

    result = predict(
        args.checkpoint,
        args.out,
        args.overrides,
        split=args.split,
        context=args.context,
        length=args.length,
        samples=args.samples,
        sequences=args.sequences,
        batch_size=args.batch_size,
        seed=args.seed,
        name=args.name,
        device=args.device,
        progress=None if args.no_progress else f"predict {args.split or 'test'}",
        conditions=args.conditions,
        origins=args.origins,
    )
    if args.json:
        _print_json(result)
    else:
        print(format_prediction_table(result))
    return 0


def _visualize_options(parser: argparse.ArgumentParser) -> None:
    _checkpoint_options(parser)
    parser.add_argument("--out", required=True, help="folder for the figures")
    parser.add_argument("--index", type=at_least(0), default=0, help="evaluation sequence")
    parser.add_argument("--frames", type=at_least(1), default=8, help="scored frames (8)")


def _visualize(args: argparse.Namespace) -> int:
    from .commands import visualize

    _print_json(
        visualize(
            args.checkpoint,
            args.out,
            args.overrides,
            split=args.split,
            index=args.index,
            frames=args.frames,
        )
    )
    return 0


# convert, download, configs ------------------------------------------------------------------


def _convert_options(parser: argparse.ArgumentParser) -> None:
    from ..data.kth import KTH_SPLITS

    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    def source(name: str, summary: str, workers: bool = True) -> argparse.ArgumentParser:
        sub = sources.add_parser(name, help=summary, description=summary)
        sub.add_argument("src", help="the original files (see the description)")
        sub.add_argument("dst", help="the store folder to write (resumed when it exists)")
        if workers:
            sub.add_argument("--workers", type=at_least(1), default=1, help="processes (1)")
        return sub

    bair = source(
        "bair",
        "BAIR robot pushing: SRC holds softmotion30_44k/{train,test}/*.tfrecords (or the tar)",
    )
    bair.add_argument(
        "--validation",
        type=at_least(0),
        default=256,
        help="trajectories carved out of the end of train for validation (default 256)",
    )
    kth = source("kth", "KTH actions: SRC holds the six action zips or the extracted AVI files")
    kth.add_argument(
        "--split",
        choices=tuple(KTH_SPLITS),
        default="reference",
        help="persons: reference (the authors': train 11-18, validation 19-21, 23-25, 1, 4, "
        "test 22, 2, 3, 5-10) or standard (1-16 / 17-25)",
    )
    _frame_options(kth, grayscale=False)
    folder = source(
        "folder", "your data: SRC holds video files, or one sub-folder of frame images each"
    )
    _frame_options(folder, grayscale=True)
    _split_options(folder)
    series = source(
        "series",
        "vector time series: SRC holds CSV files or (T, D) .npy files, one per sequence",
        workers=False,
    )
    series.add_argument("--id-column", help="CSV column that names the sequence of each row")
    series.add_argument("--time-column", help="CSV column to sort the rows of a sequence by")
    series.add_argument("--columns", nargs="+", help="CSV columns to keep (default: all others)")
    series.add_argument(
        "--quantize",
        action="store_true",
        help="write uint8 frames, each dimension quantised over the training split's min-max "
        "range (default: the values as they are, float64; training standardises them)",
    )
    _split_options(series)
    gluonts = source(
        "gluonts",
        "a GluonTS dataset: SRC is a JSON-lines file or folder (one entry a line: start, "
        "target (T,) or (D, T), optional feat_dynamic_real (F, T)); needs seqflows[gluonts]",
        workers=False,
    )
    gluonts.add_argument("--freq", required=True, help="the entries' frequency (e.g. H, D)")
    _split_options(gluonts)


def _frame_options(parser: argparse.ArgumentParser, grayscale: bool) -> None:
    from ..data.video import RESIZES

    parser.add_argument("--size", type=at_least(1), default=64, help="frame side (64)")
    parser.add_argument(
        "--resize",
        choices=RESIZES,
        default="squash",
        help="squash the whole frame to a square (the reference's KTH protocol) or take the "
        "centred square crop first",
    )
    if grayscale:
        parser.add_argument("--grayscale", action="store_true", help="one channel (luma)")


def _split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validation", type=float, default=0.05, help="validation share")
    parser.add_argument("--test", type=float, default=0.05, help="test share")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert

    options = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "run", "source", "src", "dst")
    }
    _print_json(convert(args.source, args.src, args.dst, **options))
    return 0


def _download_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", choices=("mnist",), help="mnist: the MNIST digit files (IDX, gzipped)"
    )
    parser.add_argument("--root", default="data", help="data root (files go to ROOT/mnist)")
    parser.add_argument(
        "--all", action="store_true", help="also the test images and both label files"
    )


def _download(args: argparse.Namespace) -> int:
    from .commands import download

    _print_json(download(args.dataset, args.root, every=args.all))
    return 0


def _configs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", action="store_true", help="print each file's path too")


def _configs(args: argparse.Namespace) -> int:
    from .config import available_configs, find_config

    configs = available_configs()
    width = max(len(name) for name in configs)
    # Whole sentences, wrapped to the terminal beside the names (at least 40 columns of text).
    text_width = max(shutil.get_terminal_size((100, 24)).columns - width - 2, 40)
    for name, summary in configs.items():
        where = f" ({find_config(name)})" if args.path else ""
        lines = textwrap.wrap(summary + where, text_width, break_on_hyphens=False)
        print(f"{name:<{width}}  " + f"\n{'':<{width}}  ".join(lines))
    return 0


# motion, reproduce: moved ---------------------------------------------------------------------

# Commands that moved out of the package to the repository's reproduction/ folder (issue 25).
MOVED_COMMANDS = ("motion", "reproduce")


def _run_moved_command(command: str, arguments: Sequence[str]) -> int:
    r"""``seqflows motion`` and ``seqflows reproduce``, deprecated: ``python -m reproduction
    COMMAND ARGUMENTS`` of the repository checkout this package runs from (an editable install),
    after a warning line; installed without the checkout, one line saying where they went and
    exit status 2."""
    root = Path(__file__).resolve().parents[3]  # src/seqflows/app/cli.py -> the checkout
    where = f"python -m reproduction {command} (make {command}) from a checkout of the repository"
    if not (root / "reproduction" / "__main__.py").is_file():
        print(
            f"seqflows: error: seqflows {command} moved out of the installed package: run {where}",
            file=sys.stderr,
        )
        return 2
    say(f"warning: seqflows {command} is deprecated: run {where}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from reproduction.__main__ import main as reproduction_main

    return reproduction_main([command, *arguments])


SUBCOMMANDS: list[tuple[str, str, Callable[[Any], None], Callable[[Any], int]]] = [
    ("train", "train a model from a configuration", _train_options, _train),
    (
        "evaluate",
        "score a checkpoint on fixed evaluation sequences (a table, or --json)",
        _evaluate_options,
        _evaluate,
    ),
    (
        "sample",
        "sample sequences, or predict from real context frames (GIF, PNG, tensors)",
        _sample_options,
        _sample,
    ),
    (
        "predict",
        "predict the futures of evaluation sequences from their first frames, or from rolling "
        "origins: MSE, PSNR and SSIM per frame; CRPS, CRPS-sum, energy score and coverage of "
        "series (JSON, plots)",
        _predict_options,
        _predict,
    ),
    (
        "visualize",
        "the rows of Fig. 4 / Fig. 9 (x, shift, scale, noise) and the training curves",
        _visualize_options,
        _visualize,
    ),
    (
        "convert",
        "convert BAIR, KTH, your videos or time series into a store for training",
        _convert_options,
        _convert,
    ),
    (
        "download",
        "download the MNIST digits (checksummed) that Moving MNIST is rendered from",
        _download_options,
        _download,
    ),
    (
        "configs",
        "list the experiment configurations that ship with seqflows",
        _configs_options,
        _configs,
    ),
]
