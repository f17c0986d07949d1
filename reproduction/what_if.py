r"""What if the actions were others: a model conditioned on velocity commands (the controlled
balls, :class:`~seqflows.data.ControlledBalls`) predicts the same context's future under a push
in each of four directions, and the predicted objects' centre of mass says whether it follows.

For each push p (down, up, right, left: (p, 0), (-p, 0), (0, p), (0, -p) pixels per frame, the
action of every predicted frame), the model predicts ``length`` frames at temperature 0 (for a
flow the mean prediction, shift + scale * 0 at every step) after the first ``context`` real
frames of the first ``sequences`` test sequences, under the real actions of the context frames.
Reported per push: the mean displacement (rows, columns) of the centre of mass of the last
predicted frame from that of the last context frame, and what the push would move a ball that
meets no wall, ``length`` * p. A model that ignores its conditions moves the same way under
every push.

Run it on a checkpoint of ``configs/controlled_balls_*.yaml``::

    python -m reproduction what_if runs/controlled/checkpoints/best.ckpt --out what_if
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seqflows.app.commands import check_context, load_for_evaluation, real_sequences
from seqflows.app.figures import model_label
from seqflows.atomic import write_text_atomically
from seqflows.errors import ConfigError
from seqflows.inference import fold_batch_norm
from seqflows.metrics import centre_of_mass

__all__ = [
    "PUSHES",
    "main",
    "what_if",
]

# Direction name -> unit action (d_row, d_column) per predicted frame.
PUSHES: dict[str, tuple[float, float]] = {
    "down": (1.0, 0.0),
    "up": (-1.0, 0.0),
    "right": (0.0, 1.0),
    "left": (0.0, -1.0),
}


@torch.no_grad()
def what_if(
    checkpoint: str | Path,
    out: str | Path,
    push: float = 2.0,
    sequences: int = 16,
    context: int | None = None,
    length: int = 5,
) -> dict[str, Any]:
    r"""Predicts the same contexts under each of :data:`PUSHES` (the module's protocol).

    Arguments:
        checkpoint: A checkpoint of a model conditioned on 2-D velocity actions.
        out: Folder for what_if.json (what this returns) and what_if.png.
        push: Pixels per frame of every push.
        sequences: The first N test sequences give the contexts.
        context: Real frames before the prediction (None: the model's burn_in, at least 1).
        length: Frames L to predict.

    Raises:
        ConfigError: A model not conditioned on 2 values per step.
    """
    from seqflows.app.figures import save_prediction

    model, config = load_for_evaluation(checkpoint, (), "test")
    if model.condition_dim != 2:
        raise ConfigError(
            f"{checkpoint}: what_if pushes in 2-D (d_row, d_column): the model takes "
            f"{model.condition_dim} conditions per step"
        )
    model = fold_batch_norm(model)
    context_frames = max(model.burn_in, 1) if context is None else context
    check_context(model, context_frames)
    frames, _, known = real_sequences(config, sequences, context_frames, length)
    if known is None:
        raise ConfigError(f"{checkpoint}: the data gives no conditions (data.conditions)")
    start = centre_of_mass(frames[:, -1])  # (N, 2)
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "push": push, "pushes": {}}
    predictions = {}
    for name, direction in PUSHES.items():
        future = (push * torch.tensor(direction)).expand(sequences, length, 2)
        conditions = torch.cat([known[:, :context_frames], future], dim=1)
        predicted = model.sample(
            sequences, length, context=frames, temperature=0.0, conditions=conditions
        ).clamp(0.0, 1.0)
        moved = centre_of_mass(predicted[:, -1]) - start  # (N, 2)
        report["pushes"][name] = {
            "mean_displacement": [round(float(value), 3) for value in moved.mean(0)],
            "without_walls": [length * push * value for value in direction],
        }
        predictions[name] = predicted
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = torch.stack([predictions[name][0] for name in PUSHES])  # the first sequence
    title = (
        f"{model_label(model)}: one context, predicted under a push of {push:g} px/frame "
        f"({', '.join(PUSHES)}, one row each)"
    )
    shown = frames[:1].expand(len(PUSHES), *frames.shape[1:])
    png = save_prediction(shown, None, rows, folder / "what_if.png", title=title)
    report["protocol"] = {
        "context_frames": context_frames,
        "predicted_frames": length,
        "sequences": sequences,
        "temperature": 0.0,
        "displacement": "centre of mass of the last predicted frame minus that of the last "
        "context frame, pixels (rows, columns), averaged over the sequences",
    }
    report["written"] = {"json": str(folder / "what_if.json"), "png": str(png)}
    write_text_atomically(report["written"]["json"], json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reproduction what_if CHECKPOINT --out DIR``: prints one line per push."""
    parser = argparse.ArgumentParser(
        prog="python -m reproduction what_if", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="folder for what_if.json and what_if.png")
    parser.add_argument("--push", type=float, default=2.0, help="pixels per frame (default 2)")
    parser.add_argument("--sequences", type=int, default=16, help="test contexts (default 16)")
    parser.add_argument("--context", type=int, help="context frames (default: burn_in)")
    parser.add_argument("--length", type=int, default=5, help="predicted frames (default 5)")
    args = parser.parse_args(argv)
    try:
        report = what_if(
            args.checkpoint, args.out, args.push, args.sequences, args.context, args.length
        )
    except (ConfigError, FileNotFoundError) as error:
        print(f"what_if: error: {error}", file=sys.stderr)
        return 2
    for name, result in report["pushes"].items():
        row, column = result["mean_displacement"]
        free_row, free_column = result["without_walls"]
        print(
            f"{name:>5}: centre of mass moved ({row:+.2f}, {column:+.2f}) px "
            f"(a free ball: ({free_row:+.1f}, {free_column:+.1f}))"
        )
    print(f"written: {report['written']['json']}, {report['written']['png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
