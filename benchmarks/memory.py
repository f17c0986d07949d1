r"""The trade-off of activation checkpointing: peak memory and step time with and without.

For every model, batch size and precision mode, the training step of ``train_step.py`` (forward,
backward, Adam) runs twice, each time in a fresh process: with the model's default and with
``checkpoint_activations=True`` (the conditioners, and an SLVM's encoder and decoder, recompute
their activations in the backward pass; see :mod:`seqflows.normalization`). Reported per pair:
seconds per step (median of ``--steps`` after the warm-up), peak memory (the process's max RSS on
CPU, ``torch.cuda.max_memory_allocated`` on CUDA) and the ratios checkpointed / plain.

The paper's sizes (64x64 frames, 13-frame crops, hidden 64, the SLVM of Fig. 6) at batch 16 (the
paper's) and 64 by default::

    python benchmarks/memory.py --json benchmarks/results/memory.json
    python benchmarks/memory.py --device cuda --modes fp32,tf32,bf16 --steps 10
    python benchmarks/memory.py --quick          # tiny sizes: checks that the script runs
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_step  # noqa: E402

MODELS = ("1af", "slvm", "slvm_1af")


def measure(step_args: list[str]) -> dict[str, Any]:
    """One training-step measurement of ``train_step.py`` in a fresh process."""
    args = train_step.parse_args(step_args)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(train_step.run_mode, args, args.modes[0]).result()


def print_table(rows: list[dict[str, Any]], device: str) -> None:
    memory = "GPU peak allocated" if device == "cuda" else "max RSS"
    header = (
        f"{'model':<9} {'batch':>5} {'mode':<5} {'s/step':>7} {'ckpt s/step':>11} "
        f"{'time x':>6} {'memory':>8} {'ckpt memory':>11} {'memory x':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['model']:<9} {row['batch']:>5} {row['mode']:<5} "
            f"{row['plain']['seconds_per_step']:>7.2f} "
            f"{row['checkpointed']['seconds_per_step']:>11.2f} {row['time_ratio']:>6.2f} "
            f"{row['plain']['peak_memory_mib'] / 1024:>6.2f} G "
            f"{row['checkpointed']['peak_memory_mib'] / 1024:>9.2f} G {row['memory_ratio']:>8.2f}"
        )
    print(
        f"s/step: median of the timed steps; memory: {memory} of the mode's own process; "
        "ckpt: model.checkpoint_activations=true;\ntime x, memory x: checkpointed / plain."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Peak memory and step time with and without activation checkpointing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", default="1af,slvm_1af", help=f"comma-separated, of {MODELS}")
    parser.add_argument("--batches", default="16,64", help="comma-separated batch sizes")
    parser.add_argument("--modes", default="fp32,bf16", help="comma-separated train_step modes")
    parser.add_argument("--device", choices=train_step.DEVICES, default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument(
        "--allocator",
        choices=train_step.ALLOCATORS,
        default="retain",
        help="glibc's setting in each process (retain: as seqflows train)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one step")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.models = [item for item in args.models.split(",") if item]
    args.modes = [item for item in args.modes.split(",") if item]
    for model in args.models:
        if model not in MODELS:
            parser.error(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    for mode in args.modes:
        if mode not in train_step.MODES:
            parser.error(f"unknown mode {mode!r}; choose from {', '.join(train_step.MODES)}")
    try:
        args.batches = [int(item) for item in args.batches.split(",") if item]
    except ValueError:
        parser.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if args.quick:
        args.batches = [2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for model in args.models:
        for batch in args.batches:
            for mode in args.modes:
                common = [
                    f"--model={model}",
                    f"--batch={batch}",
                    f"--modes={mode}",
                    f"--device={args.device}",
                    f"--steps={args.steps}",
                    f"--allocator={args.allocator}",
                    "--peak-reps=1",  # the conv peak is not what this measures
                    "--peak-batch=1",
                ] + (["--quick"] if args.quick else [])
                started = time.perf_counter()
                plain = measure(common)
                checkpointed = measure([*common, "--checkpoint-activations"])
                row = {
                    "model": model,
                    "batch": batch,
                    "mode": mode,
                    "plain": plain,
                    "checkpointed": checkpointed,
                    "time_ratio": checkpointed["seconds_per_step"] / plain["seconds_per_step"],
                    "memory_ratio": checkpointed["peak_memory_mib"] / plain["peak_memory_mib"],
                }
                rows.append(row)
                print(
                    f"  {model} batch {batch} {mode}: {plain['seconds_per_step']:.2f} -> "
                    f"{checkpointed['seconds_per_step']:.2f} s/step, "
                    f"{plain['peak_memory_mib']:.0f} -> {checkpointed['peak_memory_mib']:.0f} "
                    f"MiB ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    print()
    print_table(rows, args.device)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"config": vars(args), "results": rows}, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
