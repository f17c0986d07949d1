r"""Training-step throughput of the paper's 1-AF on Moving-MNIST-sized input (CPU).

Model: ``FlowModel(event_shape=(1, S, S), num_transforms=1, window=3, conditioner="conv",
hidden=H)``; default S=64, H=64, batch 16 x 13 frames (10 scored frames per sequence). One step is
``loss = -model.log_prob(x).mean()``, ``loss.backward()``, ``Adam.step()``.

Modes:

* ``fp32``: float32, default NCHW layout;
* ``fp32_cl``: float32, ``model.to(memory_format=torch.channels_last)`` (the input has one
  channel, so NCHW and NHWC are the same bytes: it is passed as is);
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)``, NCHW;
* ``bf16_cl``: autocast bf16 with channels_last.

For every mode the script reports seconds per step (median of the timed steps), scored frames
per second, the achieved GFLOP/s counting only the convolutions' FLOPs, the peak GFLOP/s of a
single ``hidden -> hidden`` 3x3 convolution (forward + grad-input + grad-weight at SxS, same
dtype, layout and thread count) measured in the same process, their ratio, and the process's
peak resident memory.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` during the first
warm-up step (2*K*K*Cin*Cout*H*W per image for every convolution, forward; backward counts
grad-weight always and grad-input only where the input needs a gradient, i.e. not for the first
encoder convolution, whose input is data) and checked against the closed form: the encoder sees
B*(T-1) frames (the newest frame conditions nothing), the decoder and the heads see B*(T-k)
windows.

Each mode runs in a fresh process (``--no-isolate`` to turn that off), so that the reported peak
memory (``ru_maxrss``) is the peak of that mode alone.

Example::

    python benchmarks/train_step.py                       # all modes, about 3 minutes on 2 cores
    python benchmarks/train_step.py --modes fp32_cl --steps 5 --json results.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any

import torch

MODES = ("fp32", "fp32_cl", "bf16", "bf16_cl")
DEFAULT_MODES = ("fp32", "fp32_cl", "bf16", "bf16_cl")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


def maxrss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_busy_seconds() -> float | None:
    """Seconds of CPU time used by the whole machine (all processes) since boot, or None."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(field) for field in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class OtherLoad:
    """Average number of cores that other processes kept busy while the block ran."""

    def __enter__(self) -> OtherLoad:
        self.start = (time.perf_counter(), cpu_busy_seconds(), own_cpu_seconds())
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, own = time.perf_counter(), cpu_busy_seconds(), own_cpu_seconds()
        if busy is None or self.start[1] is None:
            self.cores = float("nan")
        else:
            others = (busy - self.start[1]) - (own - self.start[2])
            self.cores = max(others, 0.0) / (wall - self.start[0])


def mode_settings(mode: str) -> tuple[torch.memory_format, bool]:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    memory_format = torch.channels_last if mode.endswith("_cl") else torch.contiguous_format
    return memory_format, mode.startswith("bf16")


def autocast(enabled: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def analytic_conv_flops(args: argparse.Namespace, window: int = 3) -> dict[str, int]:
    """Closed-form conv FLOPs of one training step of the default ConvConditioner (4 + 4 layers)."""
    hw = args.size * args.size
    channels = 1
    hidden = args.hidden

    def conv(cin: int, cout: int) -> int:
        return 2 * 9 * cin * cout * hw

    encoder = conv(channels, hidden) + 3 * conv(hidden, hidden)
    decoder = conv(window * hidden, hidden) + 3 * conv(hidden, hidden) + 2 * conv(hidden, channels)
    encoded = args.batch * (args.frames - 1)
    windows = args.batch * (args.frames - window)
    forward = encoded * encoder + windows * decoder
    grad_weight = forward
    grad_input = forward - encoded * conv(channels, hidden)  # data needs no gradient
    return {
        "forward": forward,
        "backward": grad_weight + grad_input,
        "total": forward + grad_weight + grad_input,
    }


def measure_conv_peak(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """GFLOP/s of one hidden -> hidden 3x3 conv, forward + backward, in the given mode."""
    memory_format, bf16 = mode_settings(mode)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(args.hidden, args.hidden, 3, padding=1).to(memory_format=memory_format)
    dtype = torch.bfloat16 if bf16 else torch.float32
    shape = (args.peak_batch, args.hidden, args.size, args.size)
    # In bf16 mode the conv input is bf16, as inside the model (BN/ReLU outputs under autocast).
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format).requires_grad_()
    grad = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
    flops = 3 * 2 * 9 * args.hidden * args.hidden * args.size * args.size * args.peak_batch
    times = []
    for rep in range(args.peak_reps + 1):
        x.grad = None
        conv.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with autocast(bf16):
            out = conv(x)
        out.backward(grad)
        elapsed = time.perf_counter() - start
        if rep > 0:  # the first call is a warm-up
            times.append(elapsed)
        del out
    seconds = statistics.median(times)
    return {
        "batch": args.peak_batch,
        "seconds": seconds,
        "times": times,
        "gflop": flops / 1e9,
        "gflops_per_s": flops / seconds / 1e9,
    }


def run_mode(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    """Times the training step of one mode, then the conv peak of the same mode."""
    from torch.utils.flop_counter import FlopCounterMode

    from seqflows import FlowModel

    torch.set_num_threads(args.threads)
    memory_format, bf16 = mode_settings(mode)
    torch.manual_seed(args.seed)
    model = FlowModel(
        event_shape=(1, args.size, args.size),
        num_transforms=1,
        window=3,
        conditioner="conv",
        hidden=args.hidden,
    )
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(args.batch, args.frames, 1, args.size, args.size)
    scored = args.batch * (args.frames - model.burn_in)
    rss_before = maxrss_mib()

    def step() -> tuple[float, float, float]:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(bf16):
            loss = -model.log_prob(x).mean()
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} in mode {mode}")
        return forward - start, backward - forward, end - backward

    counter = FlopCounterMode(display=False)
    with counter:  # the FLOP count is taken on the first (untimed) step
        step()
    counted = counter.get_flop_counts()
    conv_ops = {str(op) for ops in counted.values() for op in ops}
    flops = {
        "forward": sum(
            count
            for op, count in counted.get("Global", {}).items()
            if "convolution_backward" not in str(op) and "convolution" in str(op)
        ),
        "backward": sum(
            count
            for op, count in counted.get("Global", {}).items()
            if "convolution_backward" in str(op)
        ),
    }
    flops["total"] = counter.get_total_flops()
    flops["counted_ops"] = sorted(conv_ops)
    for _ in range(max(args.warmup - 1, 0)):
        step()

    with OtherLoad() as load:
        phases = [step() for _ in range(args.steps)]
    totals = [sum(phase) for phase in phases]
    median_index = totals.index(sorted(totals)[(len(totals) - 1) // 2])
    seconds = statistics.median(totals)
    rss_step = maxrss_mib()
    del optimizer, model, x

    with OtherLoad() as peak_load:
        peak = measure_conv_peak(args, mode)
    peak["other_cpu_cores"] = peak_load.cores
    achieved = flops["total"] / seconds / 1e9
    return {
        "mode": mode,
        "memory_format": "channels_last" if memory_format == torch.channels_last else "NCHW",
        "autocast": "bfloat16" if bf16 else None,
        "seconds_per_step": seconds,
        "step_times": totals,
        "phases_of_median_step": dict(
            zip(("forward", "backward", "optimizer"), phases[median_index], strict=True)
        ),
        "frames_per_step": scored,
        "frames_per_s": scored / seconds,
        "conv_flops": flops,
        "gflops_per_s": achieved,
        "peak": peak,
        "ratio": achieved / peak["gflops_per_s"],
        "other_cpu_cores": load.cores,
        "maxrss_mib_after_setup": rss_before,
        "maxrss_mib_after_steps": rss_step,
        "maxrss_mib_final": maxrss_mib(),
    }


def _worker(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    return run_mode(args, mode)


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'mode':<9} {'s/step':>7} {'fwd/bwd/opt s':>16} {'frames/s':>9} {'GFLOP/s':>8} "
        f"{'peak':>7} {'ratio':>6} {'peak RSS':>9} {'others':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        p = r["phases_of_median_step"]
        phases = f"{p['forward']:.2f}/{p['backward']:.2f}/{p['optimizer']:.2f}"
        print(
            f"{r['mode']:<9} {r['seconds_per_step']:>7.2f} {phases:>16} "
            f"{r['frames_per_s']:>9.1f} {r['gflops_per_s']:>8.1f} "
            f"{r['peak']['gflops_per_s']:>7.1f} {r['ratio']:>6.1%} "
            f"{r['maxrss_mib_after_steps'] / 1024:>7.2f} G "
            f"{max(r['other_cpu_cores'], r['peak']['other_cpu_cores']):>6.2f}"
        )
    print(
        "s/step: median of the timed steps; GFLOP/s: conv FLOPs only; peak: one "
        "hidden->hidden 3x3 conv fwd+bwd in the same mode;\npeak RSS: ru_maxrss of the mode's "
        "process after the steps; others: CPU cores busy with other processes meanwhile."
    )
    if any(
        max(r["other_cpu_cores"], r["peak"]["other_cpu_cores"]) > 0.1 for r in results
    ):
        print("warning: other processes used the CPU during the run; the timings are not clean")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (the first counts FLOPs)")
    parser.add_argument(
        "--modes", default=",".join(DEFAULT_MODES), help=f"comma-separated, from {MODES}"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--size", type=int, default=64, help="frame height = width")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--peak-batch", type=int, default=None,
        help="batch of the single-conv peak measurement (default: the windows per step)",
    )
    parser.add_argument("--peak-reps", type=int, default=3, help="timed reps of the conv peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--no-isolate", dest="isolate", action="store_false",
        help="run every mode in this process (peak memory is then cumulative)",
    )
    args = parser.parse_args(argv)
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    for mode in args.modes:
        mode_settings(mode)
    if args.frames <= 3:
        parser.error("--frames must exceed the window (3)")
    if args.steps < 1 or args.warmup < 0:
        parser.error("need --steps >= 1 and --warmup >= 0")
    if args.peak_batch is None:
        args.peak_batch = args.batch * (args.frames - 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "config": {
            key: value for key, value in vars(args).items() if key not in ("json", "isolate")
        },
    }
    expected = analytic_conv_flops(args)
    print(
        f"torch {info['torch']}, {args.threads} threads, CPU {info['cpu_model']} "
        f"({', '.join(info['cpu_flags'])}); batch {args.batch} x {args.frames} frames of "
        f"1x{args.size}x{args.size}, hidden {args.hidden}; conv FLOPs per step "
        f"{expected['total'] / 1e12:.3f} T (fwd {expected['forward'] / 1e9:.1f} G); "
        f"peak conv batch {args.peak_batch}",
        flush=True,
    )
    results = []
    for mode in args.modes:
        started = time.perf_counter()
        if args.isolate:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                result = pool.submit(_worker, args, mode).result()
        else:
            result = run_mode(args, mode)
        if result["conv_flops"]["total"] != expected["total"]:
            print(
                f"warning: counted {result['conv_flops']['total']} conv FLOPs, closed form "
                f"{expected['total']}",
                file=sys.stderr,
            )
        result["wall_s"] = time.perf_counter() - started
        results.append(result)
        print(
            f"  {mode}: {result['seconds_per_step']:.2f} s/step "
            f"({', '.join(f'{t:.2f}' for t in result['step_times'])}), "
            f"{result['gflops_per_s']:.1f} GFLOP/s, conv peak "
            f"{result['peak']['gflops_per_s']:.1f} GFLOP/s, {result['wall_s']:.0f} s",
            flush=True,
        )
    print()
    print_table(results)
    info["expected_conv_flops"] = expected
    info["results"] = results
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
