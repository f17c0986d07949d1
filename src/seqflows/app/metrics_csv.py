r"""The training curves of a run: Lightning ``CSVLogger`` metrics.csv files, read and written.

:func:`read_metrics_csv` reads one file into curves for :func:`~seqflows.app.figures.save_curves`;
:func:`read_run_metrics` merges those of every session of a run (the first training and each
resume log to their own ``logs/version_N``, :func:`run_metrics_files`, :func:`merge_curves`),
and :func:`write_metrics_csv` writes merged curves back as one file.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..atomic import write_text_atomically
from ..errors import DataError

__all__ = [
    "merge_curves",
    "read_metrics_csv",
    "read_run_metrics",
    "run_metrics_files",
    "write_metrics_csv",
]


def read_metrics_csv(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    r"""Reads a Lightning ``CSVLogger`` metrics.csv into curves for :func:`save_curves`.

    Arguments:
        path: The CSV file, with a "step" column and one column per metric; empty cells (a
            metric not logged on that row) are skipped.

    Returns:
        Metric name -> list of (step, value), in file order, for every column but "step" and
        "epoch" (a column with no value gives an empty list).
    """
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        fields = list(reader.fieldnames or [])
        if "step" not in fields:
            raise DataError(f"{path} has no 'step' column, only {fields}")
        curves: dict[str, list[tuple[float, float]]] = {
            name: [] for name in fields if name not in ("step", "epoch")
        }
        for line, row in enumerate(reader, start=2):
            step = (row.get("step") or "").strip()
            for name, points in curves.items():
                cell = (row.get(name) or "").strip()
                if not cell:
                    continue
                if not step:
                    raise DataError(f"{path}, line {line}: {name} has a value but no step")
                try:
                    points.append((float(step), float(cell)))
                except ValueError as error:
                    raise DataError(f"{path}, line {line}: cannot read {name}: {error}") from None
    return curves


def run_metrics_files(run: str | os.PathLike[str]) -> list[Path]:
    r"""``RUN/logs/version_N/metrics.csv`` of every session of a run, in the order of N as a
    number (``version_10`` after ``version_9``, which sorting the names as text would invert)."""
    files = []
    for path in Path(run).glob("logs/version_*/metrics.csv"):
        match = re.fullmatch(r"version_(\d+)", path.parent.name)
        if match is not None:
            files.append((int(match.group(1)), path))
    return [path for _, path in sorted(files)]


def merge_curves(
    sessions: Sequence[Mapping[str, Sequence[tuple[float, float]]]],
) -> dict[str, list[tuple[float, float]]]:
    r"""The curves of a run from those of its sessions (first training, then each resume).

    A resumed session continues from a checkpoint, so for each metric its points replace every
    point of the earlier sessions from its own first step on: the steps both sessions logged
    (the later one wins) and those the earlier session logged after the checkpoint it was
    resumed from (work that was lost). Within a session, a later row at the same step wins.

    Arguments:
        sessions: Metric name -> list of (step, value) of each session (as
            :func:`read_metrics_csv` gives them), oldest session first.

    Returns:
        Metric name -> list of (step, value), sorted by step, in the order metrics first appear.
    """
    merged: dict[str, dict[float, float]] = {}
    for session in sessions:
        for name, points in session.items():
            earlier = merged.setdefault(name, {})
            if not points:
                continue
            start = min(step for step, _ in points)
            kept = {step: value for step, value in earlier.items() if step < start}
            kept.update(points)
            merged[name] = kept
    return {name: sorted(values.items()) for name, values in merged.items()}


def read_run_metrics(run: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    r"""The training curves of a run folder over all its sessions (:func:`merge_curves` of
    :func:`run_metrics_files`); empty when the run has no metrics.csv."""
    return merge_curves([read_metrics_csv(path) for path in run_metrics_files(run)])


def write_metrics_csv(
    curves: Mapping[str, Sequence[tuple[float, float]]], path: str | os.PathLike[str]
) -> Path:
    r"""Writes curves as a metrics.csv that :func:`read_metrics_csv` reads back: a ``step``
    column and one column per metric, one row per step, empty cells where a metric has no value.

    Returns:
        ``path``, as a Path (written atomically).
    """
    rows: dict[float, dict[str, float]] = {}
    for name, points in curves.items():
        for step, value in points:
            rows.setdefault(float(step), {})[name] = float(value)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["step", *curves])
    for step in sorted(rows):
        cells = [rows[step].get(name) for name in curves]
        writer.writerow([_number(step), *("" if cell is None else repr(cell) for cell in cells)])
    return write_text_atomically(path, text.getvalue())  # creates the parent folders


def _number(step: float) -> str:
    return str(int(step)) if step.is_integer() else repr(step)
