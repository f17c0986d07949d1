"""Convert under faults and hostile inputs (issue 24, items 10 and 12).

A full disk, a destination that cannot be written, Ctrl-C and kill -9 during ``seqflows
convert``; values that overflow float32, conditions far outside the training range, and settings
that are not numbers a seed or a clip can be. Each ends with one line naming the file or the
setting and exit status 2 (130 for Ctrl-C), and leaves nothing half-written.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seqflows.app.cli import main

from helpers import TINY_RUN


def one_line_error(capsys, arguments: list[str], status: int = 2) -> str:
    """Runs the command, checks its exit status and that stderr is one line; returns it."""
    got = main(arguments)
    error = capsys.readouterr().err
    assert got == status, error
    assert error.count("\n") == 1 and error.startswith("seqflows: "), error
    return error


# Settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.gradient_clip=.nan", "train.gradient_clip must be >= 0 and finite"),
        ("train.gradient_clip=.inf", "train.gradient_clip must be >= 0 and finite"),
        ("train.gradient_clip=-1", "train.gradient_clip must be >= 0 and finite"),
        ("data.seed=-1", "data.seed must be an integer from 0 to 4294967295, got -1"),
        ("train.seed=-1", "train.seed must be an integer from 0 to 4294967295, got -1"),
        ("train.seed=4294967296", "train.seed must be an integer from 0 to 4294967295"),
    ],
)
def test_settings_that_are_no_clip_or_seed_are_refused_naming_them(
    tmp_path: Path, capsys, override: str, message: str
) -> None:
    out = tmp_path / "run"
    arguments = [
        "train",
        "data.size=8",
        *TINY_RUN,
        override,
        "--out",
        str(out),
        "--max-steps",
        "1",
    ]
    error = one_line_error(capsys, arguments)
    assert message in error
    assert not out.exists()
