r"""Evaluation throughput of the paper's models beside the conv peak and the training step (CPU).

For each model (1-AF, 2-AF: exact log-likelihood; SLVM, SLVM w/ 1-AF: the ELBO and the IWAE
bound with K importance samples, in chunks), one evaluation batch is scored as ``seqflows
evaluate`` scores it (:meth:`seqflows.app.evaluation.SequenceScores.update`: eval mode, inference
mode, the flow's normalize and the encoder run once), at the paper's sizes by default: frames of
64x64, crops of 13, the evaluation batch of ``configs/mmnist_*.yaml`` (32 for flows, 16 for
SLVMs), K = 100 in chunks of 10.

Reported per model and variant (``eval``: the model in eval mode; ``folded``: BatchNorm folded
into the convolutions, :func:`seqflows.inference.fold_batch_norm`; ``folded_cl``: the same with
channels-last weights):

* **s/batch**: the median of ``--reps`` timed calls, after one untimed call that counts FLOPs;
* **frames/s**: scored frames per second; for SLVMs scored frames x K (one per importance
  sample), the ELBO's sample being extra work;
* **GFLOP/s**: counted FLOPs (convolutions, transposed ones included, and matmuls) per second;
* **peak**: GFLOP/s of one ``width -> width`` 3x3 convolution, forward only, on as many S x S
  images as the batch has windows, measured in the same process (:func:`common.conv_peak`);
* **ratio**: GFLOP/s / peak;
* **train**: the same model's training step (loss, backward, Adam; the training batch of the
  configuration) in GFLOP/s, and its ratio to the forward + backward peak on its windows;
* **eval/train**: the evaluation's ratio over the training step's: 1 or more means evaluation is
  at least as efficient per FLOP as training;
* **others**: cores other processes kept busy meanwhile (should be ~0).

The process keeps freed memory (``--allocator retain``, the default), as ``seqflows train`` and
``seqflows evaluate`` do; ``--allocator system`` measures glibc's default, under which every
large block is page-faulted in again on every call (the conv peak included).

``--quick`` runs every model at a tiny size in seconds (what the tests run). Examples::

    python benchmarks/evaluate.py --json evaluate.json            # the paper's sizes
    python benchmarks/evaluate.py --models 1af,slvm_1af --size 32 --width 32
    python benchmarks/evaluate.py --quick --json quick.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

from common import (
    LABELS,
    WINDOW,
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
    training_step,
)
from seqflows.app.evaluation import SequenceScores

# configs/mmnist_*.yaml: evaluate.batch_size and train.batch_size
EVALUATION_BATCH = {"1af": 32, "2af": 32, "slvm": 16, "slvm_1af": 16}
TRAINING_BATCH = {"1af": 16, "2af": 8, "slvm": 16, "slvm_1af": 16}
QUICK = {
    "size": 8,
    "width": 4,
    "frames": 7,
    "batch": 2,
    "train_batch": 2,
    "samples": 4,
    "chunk": 2,
    "latent": 4,
    "reps": 1,
    "train_steps": 1,
    "peak_reps": 1,
}


def evaluation_call(model: Any, x: torch.Tensor, args: argparse.Namespace) -> Callable[[], Any]:
    """One batch scored as ``seqflows evaluate`` scores it (the IWAE bound for SLVMs)."""
    scores = SequenceScores(
        model.event_shape, iwae_samples=0 if model.exact else args.samples, iwae_chunk=args.chunk
    )

    def call() -> Any:
        with autocast(args.precision == "bf16", args.device):
            return scores.update(model, x, generator(args))

    return call


def generator(args: argparse.Namespace) -> torch.Generator:
    return torch.Generator(device=args.device).manual_seed(args.seed)


def measure_training(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """GFLOP/s of the model's training step and its ratio to the forward + backward peak."""
    torch.manual_seed(args.seed)
    model = build(args, name).to(args.device).train()
    batch = args.train_batch or TRAINING_BATCH[name]
    x = torch.rand(batch, args.frames, 1, args.size, args.size, device=args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    samples = generator(args)
    bf16 = args.precision == "bf16"

    def step() -> tuple[float, float, float]:
        return training_step(model, optimizer, x, samples, bf16, args.device)

    _, flops = count_flops(step)
    times, usage = time_calls(step, args.train_steps, args.device)
    seconds = statistics.median(times)
    peak = conv_peak(
        args.width,
        args.size,
        batch * (args.frames - WINDOW),
        args.peak_reps,
        backward=True,
        bf16=bf16,
        seed=args.seed,
        device=args.device,
    )
    gflops = flops["total"] / seconds / 1e9
    return {
        "batch": batch,
        "seconds_per_step": seconds,
        "step_times": times,
        "flops": flops,
        "gflops_per_s": gflops,
        "peak": peak,
        "ratio": gflops / peak["gflops_per_s"],
        "other_cpu_cores": max(usage.other_cores, peak["other_cpu_cores"]),
    }


def build(args: argparse.Namespace, name: str) -> Any:
    return paper_model(
        name,
        args.size,
        args.width,
        latent_dim=args.latent,
        lstm_hidden=args.latent,
        encoder_features=args.latent // 2 or 1,
    )


def measure_model(args: argparse.Namespace, name: str) -> list[dict[str, Any]]:
    """The evaluation of one model in every variant, beside its training step."""
    training = measure_training(args, name)
    torch.manual_seed(args.seed)
    model = build(args, name).to(args.device).eval()
    batch = args.batch or EVALUATION_BATCH[name]
    x = torch.rand(batch, args.frames, 1, args.size, args.size, device=args.device)
    samples = 1 if model.exact else args.samples
    scored = batch * (args.frames - model.burn_in) * samples
    peak = conv_peak(
        args.width,
        args.size,
        batch * (args.frames - WINDOW),
        args.peak_reps,
        backward=False,
        bf16=args.precision == "bf16",
        seed=args.seed,
        device=args.device,
    )
    rows = []
    for variant in args.variants:
        candidate = inference_variant(model, variant)
        call = evaluation_call(candidate, x, args)
        _, flops = count_flops(call)  # also the warm-up call
        times, usage = time_calls(call, args.reps, args.device)
        seconds = statistics.median(times)
        gflops = flops["total"] / seconds / 1e9
        ratio = gflops / peak["gflops_per_s"]
        rows.append(
            {
                "name": f"{name}/{variant}",
                "model": name,
                "label": LABELS[name],
                "variant": variant,
                "device": args.device,
                "precision": args.precision,
                "batch": batch,
                "frames": args.frames,
                "importance_samples": None if model.exact else args.samples,
                "chunk": None if model.exact else args.chunk,
                "scored_per_batch": scored,
                "seconds_per_batch": seconds,
                "seconds": seconds,
                "times": times,
                "frames_per_s": scored / seconds,
                "flops": flops,
                "gflops_per_s": gflops,
                "peak": peak,
                "ratio": ratio,
                "training": training,
                "eval_over_train": ratio / training["ratio"],
                "others": max(usage.other_cores, peak["other_cpu_cores"]),
            }
        )
        print(
            f"  {LABELS[name]} {variant}: {seconds:.3f} s per batch, {gflops:.1f} GFLOP/s, "
            f"ratio {ratio:.1%} (training {training['ratio']:.1%})",
            flush=True,
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'model':<13} {'variant':<9} {'s/batch':>8} {'frames/s':>9} {'GFLOP/s':>8} "
        f"{'peak':>7} {'ratio':>6} {'train':>7} {'t.ratio':>7} {'eval/train':>10} {'others':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        training = row["training"]
        print(
            f"{row['label']:<13} {row['variant']:<9} {row['seconds_per_batch']:>8.3f} "
            f"{row['frames_per_s']:>9.1f} {row['gflops_per_s']:>8.1f} "
            f"{row['peak']['gflops_per_s']:>7.1f} {row['ratio']:>6.1%} "
            f"{training['gflops_per_s']:>7.1f} {training['ratio']:>7.1%} "
            f"{row['eval_over_train']:>10.2f} {row['others']:>6.2f}"
        )
    print(
        "frames/s: scored frames per second (x K importance samples for SLVMs); GFLOP/s: "
        "counted FLOPs;\npeak: one width->width 3x3 conv, forward only, on the batch's "
        "windows; ratio: GFLOP/s / peak;\ntrain: the training step's GFLOP/s, t.ratio: its "
        "ratio to the forward+backward peak;\neval/train: ratio / t.ratio (>= 1: evaluation "
        "at least as efficient per FLOP as training)"
    )
    warning = busy_warning(rows)
    if warning:
        print(warning)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Evaluation throughput of the paper's models beside the conv peak.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument("--frames", type=int, default=13, help="frames per evaluated crop")
    parser.add_argument(
        "--batch", type=int, default=None, help="sequences per batch (default: the configs')"
    )
    parser.add_argument(
        "--train-batch", type=int, default=None, help="sequences per training step (configs')"
    )
    parser.add_argument("--samples", type=int, default=100, help="K of the IWAE bound")
    parser.add_argument("--chunk", type=int, default=10, help="importance samples per pass")
    parser.add_argument("--reps", type=int, default=3, help="timed evaluation calls (median)")
    parser.add_argument("--train-steps", type=int, default=2, help="timed training steps")
    add_run_options(parser)
    args = parse_model_run(parser, argv, QUICK)
    if args.frames <= 2 * WINDOW and "2af" in args.models:
        parser.error(f"--frames must exceed the 2-AF's context ({2 * WINDOW})")
    if args.frames <= WINDOW:
        parser.error(f"--frames must exceed the window ({WINDOW})")
    check_at_least_one(
        parser, args, "reps", "train_steps", "peak_reps", "samples", "chunk", "size", "width"
    )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = start_run(
        args,
        f"frames 1x{args.size}x{args.size}, crops of {args.frames}, width {args.width}, "
        f"K = {args.samples} in chunks of {args.chunk} for SLVMs; device {args.device}, "
        f"precision {args.precision}",
    )
    rows = []
    for name in args.models:
        rows += measure_model(args, name)
    print()
    print_table(rows)
    report(info, rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
