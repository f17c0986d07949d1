r"""The ``seqflows`` command.

Subcommands:
    motion   the motivating example of Sec. 3.1 (trains three small flows in seconds)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import __version__
from .examples import motion

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``seqflows`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="seqflows",
        description="Sequence modelling with affine autoregressive flows across time.",
    )
    parser.add_argument("--version", action="version", version=f"seqflows {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    motion_parser = commands.add_parser(
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
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
