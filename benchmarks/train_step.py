r"""Training-step throughput of the paper's 1-AF on Moving-MNIST-sized input (CPU or CUDA).

Model: ``FlowModel(event_shape=(1, S, S), num_transforms=1, window=3, conditioner="conv",
hidden=H)``; by default S = 64, H = 64, a batch of 16 sequences of 13 frames, so 10 scored frames
per sequence and 160 per step. One step is ``loss = -model.log_prob(x).mean()``,
``loss.backward()``, ``Adam.step()``.

Modes:

* ``fp32``: float32, the model in the default (NCHW) memory format;
* ``fp32_cl``: float32, ``model.to(memory_format=torch.channels_last)``; the input has one
  channel, so it is passed as it is (NCHW and NHWC are then the same bytes);
* ``tf32``: float32 with TensorFloat-32 convolutions and matrix products on CUDA
  (``torch.backends.cudnn.allow_tf32``, ``torch.backends.cuda.matmul.allow_tf32``); on CPU the
  same as ``fp32``;
* ``bf16``: ``torch.autocast(device, dtype=torch.bfloat16)``, NCHW model;
* ``bf16_cl``: autocast bf16 and a channels-last model.

``--device cuda`` runs the step on the GPU (timings between ``torch.cuda.synchronize()`` calls;
peak memory from ``torch.cuda.max_memory_allocated``). ``--checkpoint-activations`` builds the
model with ``checkpoint_activations=True`` (:mod:`seqflows.normalization`); ``--quick`` runs
tiny sizes (a check that the script works, not a measurement).

(On CPU the conv conditioner runs its activations channels-last whatever the memory format of
the model, so the ``_cl`` modes differ from the others only in the layout of the weights.)

For every mode the script reports seconds per step (median of the timed steps), scored frames
per second, the achieved GFLOP/s counting only the convolutions' FLOPs, the peak GFLOP/s of one
``hidden -> hidden`` 3x3 convolution (forward + grad-input + grad-weight at S x S, on a batch of
as many images as the step has windows, in the same dtype, layout, thread count and process),
their ratio, the ratio to the best peak measured in the run for the same dtype (any layout), the
process's peak resident memory during the timed steps, and the share of the CPU time spent in
the kernel (page faults: see ``--allocator``).

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` during the first
warm-up step (2*K*K*Cin*Cout*H*W per image and convolution for the forward; the backward counts
grad-weight always and grad-input only where the input needs a gradient, i.e. not for the first
encoder convolution, whose input is data) and checked against the closed form: the encoder sees
B*(T-1) frames (the newest frame conditions nothing), the decoder and the heads see B*(T-k)
windows.

Every mode runs in a fresh process (``--no-isolate`` turns that off), so that the peak memory
(``ru_maxrss``) is that of the mode alone.

``--allocator retain`` calls glibc's ``mallopt`` in that process so that freed memory is kept
and reused (no ``mmap`` per large block, no trimming): by default glibc maps every block over
32 MiB afresh and unmaps it when freed, so the activations and gradients of every step (several
GiB) are page-faulted in again each step, which costs a large share of the step on this kind of
machine. The first steps after the switch still grow the heap, hence two warm-up steps.

Examples::

    python benchmarks/train_step.py                 # all modes, about 3 minutes on 2 cores
    python benchmarks/train_step.py --allocator retain --json retain.json
    python benchmarks/train_step.py --modes fp32_cl --steps 5
    python benchmarks/train_step.py --device cuda --modes fp32,tf32,bf16 --steps 20
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch

from common import (
    DEVICES,
    Usage,
    conv_peak,
    cpu_flags,
    cpu_model,
    maxrss_mib,
    set_tf32,
    training_step,
)
from seqflows.allocator import retain_freed_memory

MODES = ("fp32", "fp32_cl", "tf32", "bf16", "bf16_cl")
ALLOCATORS = ("system", "retain")
WINDOW = 3


def reset_peak_memory(device: str) -> None:
    """Starts a new peak: the GPU's allocated peak, or the process's resident high-water mark
    (Linux: ``/proc/self/clear_refs``; elsewhere the peak stays that of the whole process)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_memory_mib(device: str) -> float:
    """Peak memory since :func:`reset_peak_memory`: the GPU's allocated peak on CUDA, else the
    process's resident high-water mark (VmHWM; max RSS where /proc cannot tell)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return maxrss_mib()


def mode_settings(mode: str) -> tuple[torch.memory_format, bool]:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    memory_format = torch.channels_last if mode.endswith("_cl") else torch.contiguous_format
    return memory_format, mode.startswith("bf16")


def closed_form_conv_flops(args: argparse.Namespace) -> dict[str, int]:
    """Conv FLOPs of one step of the default ConvConditioner (4 encoder + 4 decoder layers)."""
    hidden, channels = args.hidden, 1

    def conv(cin: int, cout: int) -> int:  # one image, one 3x3 conv, stride 1, same padding
        return 2 * 9 * cin * cout * args.size * args.size

    encoder = conv(channels, hidden) + 3 * conv(hidden, hidden)
    decoder = conv(WINDOW * hidden, hidden) + 3 * conv(hidden, hidden) + 2 * conv(hidden, channels)
    frames = args.batch * (args.frames - 1)  # encoded: the newest frame conditions nothing
    windows = args.batch * (args.frames - WINDOW)  # decoded
    forward = frames * encoder + windows * decoder
    grad_weight = forward
    grad_input = forward - frames * conv(channels, hidden)  # the data needs no gradient
    backward = grad_weight + grad_input
    return {"forward": forward, "backward": backward, "total": forward + backward}


def measure_conv_peak(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """GFLOP/s of one hidden -> hidden 3x3 conv, forward + backward, in the given mode."""
    memory_format, bf16 = mode_settings(mode)
    return conv_peak(
        args.hidden,
        args.size,
        args.peak_batch,
        args.peak_reps,
        backward=True,
        bf16=bf16,
        memory_format=memory_format,
        seed=args.seed,
        device=args.device,
    )


def run_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Times the training step of one mode, then the conv peak of the same mode."""
    from torch.utils.flop_counter import FlopCounterMode

    import seqflows
    from seqflows import SLVM, FlowModel

    retained = retain_freed_memory() if args.allocator == "retain" else False
    torch.set_num_threads(args.threads)
    memory_format, bf16 = mode_settings(mode)
    device = args.device
    set_tf32(mode == "tf32")
    torch.manual_seed(args.seed)
    if args.model in ("1af", "1af_glow"):  # 1af_glow: with the flow within the frame as base
        model = FlowModel(
            event_shape=(1, args.size, args.size),
            num_transforms=1,
            window=WINDOW,
            conditioner="conv",
            hidden=args.hidden,
            checkpoint_activations=args.checkpoint_activations,
            base="glow" if args.model == "1af_glow" else "standard",
            glow_hidden=args.hidden,
        )
    else:  # the paper's SLVM (Appendix B, Fig. 6), with the 1-AF in front for slvm_1af
        model = SLVM(
            event_shape=(1, args.size, args.size),
            num_transforms=1 if args.model == "slvm_1af" else 0,
            window=WINDOW,
            hidden=args.hidden,
            checkpoint_activations=args.checkpoint_activations,
            **args.slvm_sizes,
        )
    model = model.to(device=device, memory_format=memory_format).train()
    # SLVM posterior samples, drawn on the device
    generator = torch.Generator(device=device).manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch, args.frames, 1, args.size, args.size, device=device)
    scored = args.batch * (args.frames - model.burn_in)

    def step() -> tuple[float, float, float]:
        return training_step(model, optimizer, x, generator, bf16, device)

    counter = FlopCounterMode(display=False)
    with counter:  # FLOPs are counted on the first, untimed step
        step()
    by_op = {str(op): count for op, count in counter.get_flop_counts().get("Global", {}).items()}
    flops = {
        "forward": sum(n for op, n in by_op.items() if op.endswith("convolution")),
        "backward": sum(n for op, n in by_op.items() if op.endswith("convolution_backward")),
        "total": counter.get_total_flops(),
        "by_op": by_op,
    }
    for _ in range(args.warmup - 1):
        step()

    reset_peak_memory(device)  # the peak of the timed steps, after the warm-up
    with Usage() as usage:
        phases = [step() for _ in range(args.steps)]
    totals = [sum(phase) for phase in phases]
    seconds = statistics.median(totals)
    median_step = phases[totals.index(sorted(totals)[(len(totals) - 1) // 2])]
    rss_steps = maxrss_mib()
    memory_steps = peak_memory_mib(device)

    peak = measure_conv_peak(args, mode)
    achieved = flops["total"] / seconds / 1e9
    return {
        "model": args.model,
        "mode": mode,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else cpu_model(),
        "checkpoint_activations": args.checkpoint_activations,
        "batch": args.batch,
        "seqflows": os.path.dirname(seqflows.__file__),
        "memory_format": "channels_last" if memory_format == torch.channels_last else "NCHW",
        "autocast": "bfloat16" if bf16 else None,
        "allocator": args.allocator,
        "allocator_retains": retained,
        "seconds_per_step": seconds,
        "step_times": totals,
        "phases_of_median_step": dict(
            zip(("forward", "backward", "optimizer"), median_step, strict=True)
        ),
        "frames_per_step": scored,
        "frames_per_s": scored / seconds,
        "conv_flops": flops,
        "gflops_per_s": achieved,
        "peak": peak,
        "ratio": achieved / peak["gflops_per_s"],
        "system_cpu_share": usage.system / max(usage.user + usage.system, 1e-9),
        "cpu_cores_used": (usage.user + usage.system) / usage.wall,
        "minor_faults_per_step": usage.minor_faults / args.steps,
        "other_cpu_cores": usage.other_cores,
        "maxrss_mib_after_steps": rss_steps,
        "maxrss_mib_final": maxrss_mib(),
        "peak_memory_mib": memory_steps,
        "peak_memory_kind": "cuda max allocated" if device == "cuda" else "max RSS",
    }


def add_best_peak_ratios(results: list[dict[str, Any]]) -> None:
    """Ratio of each mode's GFLOP/s to the best conv peak measured for its dtype."""
    for result in results:
        same_dtype = [r for r in results if r["autocast"] == result["autocast"]]
        best = max(same_dtype, key=lambda r: r["peak"]["gflops_per_s"])
        result["best_peak_same_dtype"] = {
            "mode": best["mode"],
            "gflops_per_s": best["peak"]["gflops_per_s"],
        }
        result["ratio_to_best_peak"] = result["gflops_per_s"] / best["peak"]["gflops_per_s"]


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'mode':<8} {'s/step':>6} {'fwd/bwd/opt s':>15} {'frames/s':>8} {'GFLOP/s':>7} "
        f"{'peak':>6} {'ratio':>6} {'vs best':>7} {'memory':>8} {'sys CPU':>7} {'others':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        p = r["phases_of_median_step"]
        phases = f"{p['forward']:.2f}/{p['backward']:.2f}/{p['optimizer']:.2f}"
        others = max(r["other_cpu_cores"], r["peak"]["other_cpu_cores"])
        print(
            f"{r['mode']:<8} {r['seconds_per_step']:>6.2f} {phases:>15} "
            f"{r['frames_per_s']:>8.1f} {r['gflops_per_s']:>7.1f} "
            f"{r['peak']['gflops_per_s']:>6.1f} {r['ratio']:>6.1%} "
            f"{r['ratio_to_best_peak']:>7.1%} {r['peak_memory_mib'] / 1024:>6.2f} G "
            f"{r['system_cpu_share']:>7.1%} {others:>6.2f}"
        )
    print(
        "s/step: median of the timed steps; GFLOP/s: counted FLOPs (convolutions; SLVMs add "
        "~1% matmuls);\npeak: one hidden->hidden 3x3 conv fwd+bwd in the same mode; vs best: "
        "ratio to the best peak of\nthe same dtype in this run; memory: peak resident memory "
        "of the mode's process during the\ntimed steps (CUDA: the GPU's peak allocated "
        "memory); sys CPU: "
        "share of its CPU time in the kernel (page faults);\n"
        "others: cores kept busy by other processes meanwhile (should be ~0)."
    )
    noisy = [
        r["mode"] for r in results if max(r["other_cpu_cores"], r["peak"]["other_cpu_cores"]) > 0.1
    ]
    if noisy:
        print(f"warning: other processes used the CPU during {', '.join(noisy)}: rerun them")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training-step throughput of the 1-AF (conv conditioner) on CPU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (median)")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps, the first of which counts FLOPs (default 1, 2 with --allocator "
        "retain)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    parser.add_argument(
        "--model",
        choices=("1af", "1af_glow", "slvm", "slvm_1af"),
        default="1af",
        help="the paper's 1-AF (default), the 1-AF with the flow within the frame as its base "
        "(base='glow', glow_hidden=--hidden; FLOPs counted only), SLVM or SLVM w/ 1-AF",
    )
    parser.add_argument("--batch", type=int, default=16, help="sequences per step")
    parser.add_argument("--frames", type=int, default=13, help="frames per sequence")
    parser.add_argument("--hidden", type=int, default=64, help="conditioner channels")
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--device", choices=DEVICES, default="cpu", help="where the step runs (cuda: one GPU)"
    )
    parser.add_argument(
        "--checkpoint-activations",
        action="store_true",
        help="recompute the networks' activations in the backward pass (less memory)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one step (checks that the script runs; not a measurement)",
    )
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="system",
        help="'retain': make glibc keep freed memory (no page faults on reuse)",
    )
    parser.add_argument(
        "--peak-batch",
        type=int,
        default=None,
        help="images of the single-conv peak (default: the windows per step, B*(T-3))",
    )
    parser.add_argument("--peak-reps", type=int, default=5, help="timed reps of the conv peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--no-isolate",
        dest="isolate",
        action="store_false",
        help="run the modes in this process (peak memory is then cumulative)",
    )
    args = parser.parse_args(argv)
    args.slvm_sizes = {}
    if args.quick:
        args.size, args.hidden, args.batch, args.frames = 8, 4, 2, 5
        args.steps, args.warmup, args.peak_reps, args.threads = 1, 1, 1, 1
        args.slvm_sizes = {
            "latent_dim": 4,
            "lstm_hidden": 8,
            "encoder_features": 8,
            "conv_width": 4,
        }
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch")
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    for mode in args.modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if args.frames <= WINDOW:
        parser.error(f"--frames must exceed the window ({WINDOW})")
    if args.warmup is None:
        args.warmup = 2 if args.allocator == "retain" else 1
    if args.steps < 1 or args.warmup < 1:
        parser.error("need --steps >= 1 and --warmup >= 1 (the first warm-up step counts FLOPs)")
    if args.peak_batch is None:
        args.peak_batch = args.batch * (args.frames - WINDOW)
    if args.allocator == "retain" and not args.isolate:
        parser.error("--allocator retain needs the modes isolated (drop --no-isolate)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The closed form covers the flow's convolutions; SLVM FLOPs are counted only.
    expected = closed_form_conv_flops(args) if args.model == "1af" else None
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "config": {k: v for k, v in vars(args).items() if k not in ("json", "isolate")},
        "closed_form_conv_flops": expected,
    }
    print(
        f"torch {info['torch']}, {args.threads} threads, CPU {info['cpu_model']} "
        f"({', '.join(info['cpu_flags'])}), {args.allocator} allocator, device {args.device}"
        + (", activation checkpointing" if args.checkpoint_activations else "")
        + "\n"
        f"{args.model}: batch {args.batch} x {args.frames} frames of 1x{args.size}x{args.size}, "
        f"hidden {args.hidden}: {args.batch * (args.frames - WINDOW)} scored frames"
        + (f" and {expected['total'] / 1e12:.3f} conv TFLOP per step" if expected else "")
        + f"; peak conv on {args.peak_batch} images",
        flush=True,
    )
    results = []
    for mode in args.modes:
        started = time.perf_counter()
        if args.isolate:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                result = pool.submit(run_mode, args, mode).result()
        else:
            result = run_mode(args, mode)
        if expected and result["conv_flops"]["total"] != expected["total"]:
            print(
                f"note: counted {result['conv_flops']['total']} conv FLOPs per step, closed form "
                f"{expected['total']}",
                file=sys.stderr,
            )
        result["wall_s"] = time.perf_counter() - started
        results.append(result)
        print(
            f"  {mode}: steps {', '.join(f'{t:.2f}' for t in result['step_times'])} s, "
            f"{result['gflops_per_s']:.1f} GFLOP/s; conv peak "
            f"{result['peak']['gflops_per_s']:.1f} GFLOP/s; {result['wall_s']:.0f} s",
            flush=True,
        )
    add_best_peak_ratios(results)
    print()
    print_table(results)
    info["results"] = results
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
