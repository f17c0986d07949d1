r"""The ``seqflows`` command.

Subcommands:
    train      train a model from a YAML configuration (Lightning: CPU, GPUs, nodes)
    evaluate   nats per pixel per channel (and bits/dim) of a checkpoint on fixed sequences
    sample     samples and video predictions of a checkpoint, as GIF and PNG
    visualize  the paper's Fig. 4 / Fig. 9 rows (x, shift, scale, noise) and training curves
    convert    BAIR, KTH, your videos, frames or time series into a store (uint8 shards)
    download   MNIST digits for Moving MNIST, checksummed
    motion     the motivating example of Sec. 3.1 (trains three small flows in seconds)
    reproduce  the paper's findings at reduced scale: trains, evaluates, draws (docs/results.md)

Bad input (a missing or corrupt file, an unknown configuration key, frames of the wrong shape, a
checkpoint of another model) and a full disk end with a one-line error and exit status 2; set
SEQFLOWS_DEBUG=1 to see the traceback. SIGTERM and SIGINT stop training at a step boundary with a
resumable checkpoint, one line saying how to resume, and exit status 143 or 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .atomic import DiskFullError
from .examples import motion

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``seqflows`` command and its subcommands."""
    from .app import commands, convert, reproduce

    parser = argparse.ArgumentParser(
        prog="seqflows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"seqflows {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    table = [
        (
            "train",
            "train a model from a YAML configuration",
            commands.add_train_arguments,
            commands.run_train,
        ),
        (
            "evaluate",
            "score a checkpoint on the evaluation sequences (table or --json)",
            commands.add_evaluate_arguments,
            commands.run_evaluate,
        ),
        (
            "sample",
            "sample sequences or predict from real context frames (GIF and PNG)",
            commands.add_sample_arguments,
            commands.run_sample,
        ),
        (
            "visualize",
            "Fig. 4 / Fig. 9 rows: x, shift, scale and noise of each transform",
            commands.add_visualize_arguments,
            commands.run_visualize,
        ),
        (
            "convert",
            "convert BAIR, KTH, your videos or time series into a store for training",
            convert.add_convert_arguments,
            convert.run_convert,
        ),
        (
            "download",
            "download MNIST digits (checksummed) for data.dataset=moving_mnist",
            commands.add_download_arguments,
            commands.run_download,
        ),
        (
            "reproduce",
            "the paper's findings at reduced scale: train, evaluate and draw every model",
            reproduce.add_reproduce_arguments,
            reproduce.run_reproduce,
        ),
    ]
    for name, summary, add_arguments, handler in table:
        sub = subcommands.add_parser(
            name,
            help=summary,
            description=f"{summary}.\n\n{handler.__doc__ or ''}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    motion_parser = subcommands.add_parser(
        "motion",
        help="the motivating example of Sec. 3.1: 1-AF and 2-AF on a particle with momentum",
        description=motion.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    motion.build_parser(motion_parser)
    motion_parser.set_defaults(handler=motion.run_from_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``seqflows`` console script."""
    parser = build_parser()
    argv = _resume_before_override(list(sys.argv[1:] if argv is None else argv))
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come after options: collect them wherever they are.
    if extra and hasattr(args, "overrides") and all(_is_override(item) for item in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .app.interrupt import Interrupted

    try:
        return _status(args.handler(args))
    except Interrupted as interrupted:  # SIGTERM, SIGINT: one line, exit status 143 or 130
        if interrupted.message:
            print(f"seqflows: {interrupted.message}", file=sys.stderr, flush=True)
        return interrupted.exit_status
    except (FileNotFoundError, DiskFullError, ValueError, RuntimeError, ArithmeticError) as error:
        if os.environ.get("SEQFLOWS_DEBUG"):
            raise
        if isinstance(error, RuntimeError) and not _is_reported(error):
            raise
        print(f"seqflows: error: {error}", file=sys.stderr)
        return 2


def _status(result: object) -> int:
    """Exit status of a handler: its int result, else 0 (some return their results)."""
    return result if isinstance(result, int) else 0


def _is_reported(error: RuntimeError) -> bool:
    """Runtime errors about the user's setup, not bugs: a failed download, no Lightning, a
    failed training process of ``seqflows reproduce`` (its log has the details)."""
    reported = ("DownloadError", "TrainingFailed")
    return type(error).__name__ in reported or "pip install" in str(error)


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


if __name__ == "__main__":
    raise SystemExit(main())
