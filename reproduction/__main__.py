r"""``python -m reproduction COMMAND``: the reproduction's command line, from the repository root.

Commands: ``reproduce`` (the paper's findings at reduced scale, :func:`reproduction.reproduce`;
``make reproduce``), ``motion`` (the motivating example of Sec. 3.1,
:func:`reproduction.motion.run_and_write`; ``make motion``), ``what_if`` (a conditioned model
under four pushes, :func:`reproduction.what_if.what_if`) and ``series`` (within-step bases on
real multivariate series beside a VAR, :func:`reproduction.series.run_series`). The first three
were ``seqflows reproduce``, ``seqflows motion`` and ``python -m seqflows.app.what_if`` before
the reproduction moved out of the installed package. Errors about the user's input end with one
line ``reproduction: error: ...`` and exit status 2, as those of ``seqflows`` do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import seqflows
from seqflows.app.cli import OVERRIDES, at_least, run_reporting

from . import what_if

__all__ = ["build_parser", "main"]

PROG = "python -m reproduction"
DESCRIPTION = (
    "The paper's reproduction, run from the root of the seqflows repository (make reproduce, "
    "make motion); it is not part of the installed package."
)


def _motion_options(parser: argparse.ArgumentParser) -> None:
    from .motion import MotionExampleConfig

    defaults = MotionExampleConfig()
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/motion"),
        help="folder for results.json and motion.png (default: runs/motion)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--steps", type=at_least(1), default=defaults.steps, help="Adam steps")
    parser.add_argument(
        "--sigma", type=float, default=defaults.sigma, help="standard deviation of the force w_t"
    )
    parser.add_argument("--length", type=at_least(3), default=defaults.length, help="steps T")
    parser.add_argument("--dim", type=at_least(1), default=defaults.dim, help="dimension D")
    parser.add_argument(
        "--num-train", type=at_least(1), default=defaults.num_train, help="training sequences"
    )
    parser.add_argument(
        "--num-test", type=at_least(1), default=defaults.num_test, help="held-out sequences"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the figure")


def _motion(args: argparse.Namespace) -> int:
    from .motion import MotionExampleConfig, run_and_write

    config = MotionExampleConfig(
        num_train=args.num_train,
        num_test=args.num_test,
        length=args.length,
        dim=args.dim,
        sigma=args.sigma,
        steps=args.steps,
        seed=args.seed,
    )
    result = run_and_write(args.out, config, plot=not args.no_plot)
    print(result["table"])
    for kind, path in result["written"].items():
        print(f"{kind}: {path}")
    return 0


def _reproduce_options(parser: argparse.ArgumentParser) -> None:
    from . import DATASETS, DEFAULT_MODELS, LABELS, STUDIES

    parser.description = (
        "The paper's findings at reduced scale, from scratch, with fixed seeds: renders "
        "half-resolution Moving MNIST from MNIST digits, trains every model (and bouncing balls "
        "and the studies), each as its own resumable seqflows train process logging into "
        "RUNS/NAME/train.log, evaluates the best-by-validation checkpoints on both scales, draws "
        "the paper's figures and writes OUT/summary.json and OUT/tables.md (docs/results.md "
        "reads them). Progress goes to stderr: which run of how many, each training's steps "
        "and time left, and the time left overall. Run it again after an interruption: "
        "finished trainings are not repeated."
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help=OVERRIDES + " for every run (a quick try; the published results use none)",
    )
    parser.add_argument("--out", default="results", help="results and figures (results)")
    parser.add_argument("--runs", default="runs/reproduce", help="checkpoints and logs")
    parser.add_argument(
        "--digits",
        help="the MNIST test images t10k-images-idx3-ubyte.gz (default: downloaded into "
        "ROOT/mnist, MD5-checked)",
    )
    parser.add_argument("--root", default="data", help="data root for the download")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help=f"comma-separated, of {', '.join(LABELS)}, or none (default: all but slvm_2af)",
    )
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help="comma-separated, of moving_mnist, bouncing_balls",
    )
    parser.add_argument(
        "--studies",
        default=",".join(STUDIES),
        help=f"comma-separated, of {', '.join(STUDIES)}, or none (default: all)",
    )
    parser.add_argument(
        "--sequences", type=at_least(1), help="evaluate the first N sequences of each split"
    )
    parser.add_argument("--no-motion", action="store_true", help="skip the motivating example")


def _reproduce(args: argparse.Namespace) -> int:
    from . import format_tables, reproduce

    def names(text: str) -> list[str]:
        return [name for name in text.split(",") if name and name != "none"]

    summary = reproduce(
        args.out,
        args.runs,
        digits=args.digits,
        root=args.root,
        models=names(args.models),
        datasets=names(args.datasets),
        studies=names(args.studies),
        overrides=args.overrides,
        sequences=args.sequences,
        motion=not args.no_motion,
    )
    print(format_tables(summary))
    return 0


def _series_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/series"),
        help="folder for summary.json and table.md (default: results/series)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="ROW",
        help="run only these rows (labels or shell patterns: 'SLVM*' 'VAR'), keeping the other "
        "rows of the summary.json in --out; the table is made from them all (default: every row)",
    )


def _series(args: argparse.Namespace) -> int:
    from .series import format_table, run_series

    print(format_table(run_series(args.out, models=args.models)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m reproduction`` (``what_if`` keeps its own:
    :func:`reproduction.what_if.main`)."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary, declare, run in (
        (
            "reproduce",
            "the paper's findings at reduced scale: train, evaluate and draw every model",
            _reproduce_options,
            _reproduce,
        ),
        (
            "motion",
            "the motivating example of Sec. 3.1: flows on a particle with momentum (seconds)",
            _motion_options,
            _motion,
        ),
        (
            "series",
            "dependence within a time step: the 1-AF's within-step bases beside a VAR (minutes)",
            _series_options,
            _series,
        ),
    ):
        sub = commands.add_parser(name, help=summary, description=f"{summary}.")
        declare(sub)
        sub.set_defaults(run=run)
    commands.add_parser(
        "what_if",
        help="a conditioned model's predictions under four pushes (what_if --help)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["what_if"]:
        return what_if.main(argv[1:])
    args = build_parser().parse_args(argv)
    # As seqflows evaluate does: the process keeps freed memory for the models' activations.
    seqflows.allocator.retain_freed_memory()
    # Ctrl-C outside a training (each has its own process), SIGTERM and the user's errors: one
    # line and an exit status, as for seqflows.
    return run_reporting(lambda: args.run(args), "reproduction")


if __name__ == "__main__":
    raise SystemExit(main())
