r"""The SLVM decoder's two layers that seqflows computes as matrix products, against oneDNN's
transposed convolutions, at the shapes an evaluation chunk and a training step give them (CPU).

* **first**: the first layer, a 4x4 transposed conv of the 1x1 latent (latent -> 8 * width
  filters): ``F.conv_transpose2d`` against :class:`seqflows.networks.LatentProjection` (one
  matmul);
* **heads**: the joined output heads, a 4x4 stride-2 transposed conv from ``width`` channels at
  S/2 to 2 channels at S: ``F.conv_transpose2d`` against
  :func:`seqflows.networks.transposed_conv_by_matmul` (a batched matmul and col2im).

Each is timed forward only (under ``torch.inference_mode``, as evaluation and sampling run)
and forward + backward (as training runs), on N latents or frames: by default 2,080 (an IWAE
chunk of 10 samples of 16 sequences of 13 frames) and 208 (a training batch of 16 x 13). The
median of ``--reps`` calls after one warm-up; the process keeps freed memory
(``--allocator retain``, as the commands run). Both forms give the same values (checked here
to float tolerance, and in float64 by tests/test_networks.py). Examples::

    python benchmarks/decoder_layers.py --json benchmarks/results/decoder_layers.json
    python benchmarks/decoder_layers.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from common import add_allocator_option, apply_quick, report, start_run, time_calls
from seqflows.networks import ConvDecoder, transposed_conv_by_matmul

QUICK = {"size": 8, "width": 4, "latent": 8, "frames": "16,4", "reps": 1}


def timed(function: Callable[[], Any], reps: int) -> float:
    """Median seconds of ``reps`` calls after one warm-up call."""
    function()
    times, _ = time_calls(function, reps)
    return statistics.median(times)


def compare(
    oneDNN: Callable[[torch.Tensor], torch.Tensor],
    ours: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    reps: int,
) -> dict[str, float]:
    """Forward-only and forward + backward seconds of both forms on ``inputs``."""
    with torch.inference_mode():
        error = (oneDNN(inputs) - ours(inputs)).abs().max().item()
        forward = [timed(lambda f=f: f(inputs), reps) for f in (oneDNN, ours)]
    leaf = inputs.detach().requires_grad_()
    grad = torch.randn_like(oneDNN(leaf.detach()))
    both = [timed(lambda f=f: f(leaf).backward(grad), reps) for f in (oneDNN, ours)]
    return {
        "max_abs_difference": error,
        "forward_onednn": forward[0],
        "forward_matmul": forward[1],
        "forward_speedup": forward[0] / forward[1],
        "train_onednn": both[0],
        "train_matmul": both[1],
        "train_speedup": both[0] / both[1],
    }


def measure(args: argparse.Namespace, frames: int) -> list[dict[str, Any]]:
    """Both layers of the paper's decoder (at ``--size``, ``--width``, ``--latent``) on N =
    ``frames``."""
    torch.manual_seed(args.seed)
    decoder = ConvDecoder((1, args.size, args.size), latent_dim=args.latent, width=args.width)
    first = decoder.net[0]  # a LatentProjection
    latents = torch.randn(frames, args.latent, 1, 1).contiguous(memory_format=torch.channels_last)
    weight, bias = (tensor.detach().requires_grad_() for tensor in decoder.joined_heads())
    side = args.size // 2
    hidden = torch.randn(frames, args.width, side, side)
    hidden = hidden.contiguous(memory_format=torch.channels_last)
    return [
        {
            "layer": "first",
            "frames": frames,
            "shape": f"{args.latent}x1x1 -> {first.out_channels}x4x4",
            **compare(lambda z: F.conv_transpose2d(z, first.weight), first, latents, args.reps),
        },
        {
            "layer": "heads",
            "frames": frames,
            "shape": f"{args.width}x{side}x{side} -> 2x{args.size}x{args.size}",
            **compare(
                lambda h: F.conv_transpose2d(h, weight, bias, 2, 1),
                lambda h: transposed_conv_by_matmul(h, weight, bias, 2, 1),
                hidden,
                args.reps,
            ),
        },
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The SLVM decoder's matmul layers against oneDNN's transposed convolutions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--size", type=int, default=64, help="frame side S")
    parser.add_argument("--width", type=int, default=64, help="the decoder's last filters")
    parser.add_argument("--latent", type=int, default=256, help="size of z_t")
    parser.add_argument("--frames", default="2080,208", help="N, comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="timed calls (median)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    add_allocator_option(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, in seconds (tests)")
    args = parser.parse_args(argv)
    apply_quick(args, QUICK)
    args.frames = [int(item) for item in str(args.frames).split(",") if item.strip()]
    if args.reps < 1 or not args.frames or min(args.frames) < 1:
        parser.error("--reps and every --frames must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = start_run(args, f"decoder of {args.size}x{args.size} frames, width {args.width}")
    rows = [row for frames in args.frames for row in measure(args, frames)]
    header = (
        f"{'layer':<6} {'N':>5} {'shape':<24} {'fwd oneDNN':>10} {'fwd matmul':>10} {'x':>5} "
        f"{'f+b oneDNN':>10} {'f+b matmul':>10} {'x':>5} {'max diff':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['layer']:<6} {row['frames']:>5} {row['shape']:<24} "
            f"{row['forward_onednn'] * 1e3:>8.1f}ms {row['forward_matmul'] * 1e3:>8.1f}ms "
            f"{row['forward_speedup']:>5.2f} {row['train_onednn'] * 1e3:>8.1f}ms "
            f"{row['train_matmul'] * 1e3:>8.1f}ms {row['train_speedup']:>5.2f} "
            f"{row['max_abs_difference']:>9.1e}"
        )
    print("x: oneDNN's time over the matmul form's (above 1: the matmul form is faster)")
    report(info, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
