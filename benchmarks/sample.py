r"""Generation speed of the paper's models beside the forward-only conv peak (CPU).

For the 1-AF, the 2-AF and SLVM w/ 1-AF at the paper's sizes (frames of 64x64, conditioner width
64), each batch size (1, 16, 64 by default) and each length T (10 and 100), ``model.sample(B, T,
context)`` after the model's ``burn_in`` context frames, as ``seqflows sample`` and ``seqflows
predict`` call it. Variants: ``eval`` (the model in eval mode), ``folded`` (BatchNorm folded into
the convolutions, :func:`seqflows.inference.fold_batch_norm`, what the commands use) and
``folded_cl`` (the same with channels-last weights).

Reported per model, variant, batch and T:

* **s/step**: seconds per generated step, the median of ``--reps`` calls over T;
* **frames/s**: generated frames per second, B * T / seconds;
* **GFLOP/s**: FLOPs per call (convolutions, transposed ones included, and matmuls) over its
  time. FLOPs are counted at T = 1 and T = 2 (:class:`~torch.utils.flop_counter.FlopCounterMode`,
  the calls that warm up): a call costs ``once + T * per step``;
* **peak**: GFLOP/s of one ``width -> width`` 3x3 convolution, forward only, on B images of the
  frame size (a step's convolutions see B frames), measured in the same process;
* **ratio**: GFLOP/s / peak;
* **T-ratio** (on the longest T): seconds per step at that T over seconds per step at the
  shortest: ~1 when the cost per step is constant in T;
* **others**: cores other processes kept busy meanwhile (should be ~0).

The process keeps freed memory (``--allocator retain``, the default, as ``seqflows sample`` and
``seqflows predict`` do); ``--allocator system`` measures glibc's default.

``--quick`` runs every model at a tiny size in seconds (what the tests run). Examples::

    python benchmarks/sample.py --json sample.json                  # the paper's sizes
    python benchmarks/sample.py --models 1af --batches 16 --lengths 10,100
    python benchmarks/sample.py --quick --json quick.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import torch

from common import (
    LABELS,
    add_model_options,
    add_run_options,
    autocast,
    busy_warning,
    check_at_least_one,
    conv_peak,
    count_flops,
    inference_variant,
    paper_model,
    parse_model_run,
    report,
    start_run,
    time_calls,
)

MODELS = ("1af", "2af", "slvm_1af")
QUICK = {
    "size": 8,
    "width": 4,
    "latent": 4,
    "batches": "1,2",
    "lengths": "2,6",
    "reps": 1,
    "peak_reps": 1,
}


def measure(args: argparse.Namespace, name: str) -> list[dict[str, Any]]:
    """Every variant, batch and length of one model."""
    torch.manual_seed(args.seed)
    model = (
        paper_model(
            name,
            args.size,
            args.width,
            latent_dim=args.latent,
            lstm_hidden=args.latent,
            encoder_features=args.latent // 2 or 1,
        )
        .to(args.device)
        .eval()
    )
    device, bf16 = args.device, args.precision == "bf16"
    rows = []
    for batch in args.batches:
        peak = conv_peak(
            args.width,
            args.size,
            batch,
            args.peak_reps,
            backward=False,
            bf16=bf16,
            seed=args.seed,
            device=device,
        )
        context = torch.rand(batch, model.burn_in, 1, args.size, args.size, device=device)
        for variant in args.variants:
            candidate = inference_variant(model, variant)

            def call(length: int, sampler: Any = candidate, context: Any = context) -> Any:
                generator = torch.Generator(device=device).manual_seed(args.seed)
                with autocast(bf16, device):
                    return sampler.sample(context.shape[0], length, context, generator)

            _, one = count_flops(lambda call=call: call(1))
            _, two = count_flops(lambda call=call: call(2))
            per_step = two["total"] - one["total"]
            once = one["total"] - per_step
            first = None
            for length in args.lengths:
                times, usage = time_calls(
                    lambda call=call, length=length: call(length), args.reps, device
                )
                seconds = statistics.median(times)
                flops = once + length * per_step
                step = seconds / length
                first = step if first is None else first
                gflops = flops / seconds / 1e9
                row = {
                    "name": f"{name}/{variant}/B={batch}/T={length}",
                    "model": name,
                    "label": LABELS[name],
                    "variant": variant,
                    "device": device,
                    "precision": args.precision,
                    "batch": batch,
                    "length": length,
                    "seconds": seconds,
                    "times": times,
                    "seconds_per_step": step,
                    "frames_per_s": batch * length / seconds,
                    "flops": flops,
                    "flops_per_step": per_step,
                    "flops_once": once,
                    "gflops_per_s": gflops,
                    "peak": peak,
                    "ratio": gflops / peak["gflops_per_s"],
                    "step_ratio_to_shortest": step / first,
                    "others": max(usage.other_cores, peak["other_cpu_cores"]),
                }
                rows.append(row)
                print(
                    f"  {LABELS[name]} {variant} B={batch} T={length}: {step:.4f} s/step, "
                    f"{gflops:.1f} GFLOP/s, ratio {row['ratio']:.1%}",
                    flush=True,
                )
    return rows


def print_table(rows: list[dict[str, Any]], longest: int) -> None:
    header = (
        f"{'model':<13} {'variant':<9} {'B':>3} {'T':>4} {'s/step':>8} {'frames/s':>9} "
        f"{'GFLOP/s':>8} {'peak':>7} {'ratio':>6} {'T-ratio':>7} {'others':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        growth = f"{row['step_ratio_to_shortest']:.2f}" if row["length"] == longest else ""
        print(
            f"{row['label']:<13} {row['variant']:<9} {row['batch']:>3} {row['length']:>4} "
            f"{row['seconds_per_step']:>8.4f} {row['frames_per_s']:>9.1f} "
            f"{row['gflops_per_s']:>8.1f} {row['peak']['gflops_per_s']:>7.1f} "
            f"{row['ratio']:>6.1%} {growth:>7} {row['others']:>6.2f}"
        )
    print(
        "s/step: seconds per generated step; frames/s: B*T per second; peak: one width->width "
        "3x3 conv,\nforward only, on B frames; ratio: GFLOP/s / peak; T-ratio: s/step at the "
        "longest T over s/step\nat the shortest (~1: the cost per step is constant in T)"
    )
    warning = busy_warning(rows)
    if warning:
        print(warning)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generation speed of the paper's models beside the conv peak.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_options(parser, MODELS)
    parser.add_argument("--batches", default="1,16,64", help="comma-separated batch sizes")
    parser.add_argument("--lengths", default="10,100", help="comma-separated lengths T")
    parser.add_argument("--reps", type=int, default=1, help="timed calls per length (median)")
    add_run_options(parser)
    args = parse_model_run(parser, argv, QUICK, MODELS)
    try:
        args.batches = [int(item) for item in args.batches.split(",")]
        args.lengths = sorted(int(item) for item in args.lengths.split(","))
    except ValueError:
        parser.error("--batches and --lengths take comma-separated whole numbers")
    if min(args.batches + args.lengths) < 1:
        parser.error("--batches and --lengths must be at least 1")
    check_at_least_one(parser, args, "reps", "peak_reps", "size", "width", "latent")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = start_run(
        args,
        f"frames 1x{args.size}x{args.size}, width {args.width}, batches {args.batches}, "
        f"lengths {args.lengths}; device {args.device}, precision {args.precision}",
    )
    rows = []
    with torch.inference_mode():
        for name in args.models:
            rows += measure(args, name)
    print()
    print_table(rows, max(args.lengths))
    report(info, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
