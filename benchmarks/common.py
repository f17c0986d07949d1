r"""What the benchmarks share: the paper's models, the conv peak, FLOP counts, the machine.

* :func:`paper_model`: the 1-AF, 2-AF, SLVM or SLVM w/ 1-AF of Appendix B on frames (1, S, S),
  with the conditioner's width (64 in the paper) as a parameter for reduced-scale runs;
* :func:`conv_peak`: GFLOP/s of one ``channels -> channels`` 3x3 convolution on ``batch``
  images of S x S, forward only or forward + backward (grad-input and grad-weight), in a given
  dtype and memory format: the yardstick every benchmark's achieved GFLOP/s is divided by;
* :func:`count_flops`: the FLOPs of one call, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls), by kind;
* :class:`Usage`: wall time, this process's CPU time and page faults of a block, and the cores
  that other processes kept busy meanwhile (``others``: the numbers are clean when it is ~0);
* :func:`training_step`: one training step (loss, backward, Adam), timed by phase;
* :func:`inference_variant`: a model as evaluation and sampling run it (eval mode, BatchNorm
  folded or not, channels-last or not);
* :func:`machine`: the torch version, threads and CPU of the run, for the JSON files.
* :func:`add_device_options`, :func:`check_device`: ``--device cpu|cuda`` and ``--precision
  32|tf32|bf16`` of the inference benchmarks; :func:`synchronize`, :func:`set_tf32` and
  :func:`autocast` (bf16 on a device), shared with ``train_step.py``.

The scripts run from the repository root as ``python benchmarks/NAME.py``, which puts this
folder on ``sys.path``: they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from seqflows import SLVM, FlowModel
from seqflows.allocator import retain_freed_memory
from seqflows.inference import fold_batch_norm

WINDOW = 3  # k, the paper's window
MODELS = ("1af", "2af", "slvm", "slvm_1af")
LABELS = {"1af": "1-AF", "2af": "2-AF", "slvm": "SLVM", "slvm_1af": "SLVM w/ 1-AF"}
VARIANTS = ("eval", "folded", "folded_cl")  # how the inference benchmarks run a model
BUSY = 0.1  # cores used by other processes above which a measurement is not clean
DEVICES = ("cpu", "cuda")
PRECISIONS = ("32", "tf32", "bf16")  # --precision of the inference benchmarks


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


def machine(threads: int) -> dict[str, Any]:
    """What the numbers of a run depend on: torch, Python, threads, CPU and the command."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
    }


def maxrss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_busy_seconds() -> float | None:
    """CPU seconds used by the whole machine (all processes) since boot, or None."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(field) for field in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Usage:
    """What a block cost: wall time, this process's user/system CPU and page faults, and the
    average number of cores that other processes kept busy meanwhile."""

    def __enter__(self) -> Usage:
        self._start = (
            time.perf_counter(),
            cpu_busy_seconds(),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        wall, busy, usage = (
            time.perf_counter(),
            cpu_busy_seconds(),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        wall0, busy0, usage0 = self._start
        self.wall = wall - wall0
        self.user = usage.ru_utime - usage0.ru_utime
        self.system = usage.ru_stime - usage0.ru_stime
        self.minor_faults = usage.ru_minflt - usage0.ru_minflt
        if busy is None or busy0 is None:
            self.other_cores = float("nan")
        else:
            # /proc/stat counts in clock ticks: discount a few ticks of rounding.
            others = (busy - busy0) - (self.user + self.system) - 4 / os.sysconf("SC_CLK_TCK")
            self.other_cores = max(others, 0.0) / max(self.wall, 1e-9)


def autocast(enabled: bool, device: str = "cpu") -> torch.autocast:
    """bf16 autocast on ``device`` when ``enabled``, else nothing."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)


def synchronize(device: str) -> None:
    """Waits for the device's queued work (CUDA kernels run asynchronously)."""
    if device == "cuda":
        torch.cuda.synchronize()


def set_tf32(enabled: bool) -> None:
    """TensorFloat-32 for CUDA convolutions and matrix products (no effect on CPU)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision`` (see :func:`check_device`)."""
    parser.add_argument(
        "--device", choices=DEVICES, default="cpu", help="where the models run (cuda: one GPU)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="32",
        help="32: float32; tf32: TensorFloat-32 on CUDA (as 32 on CPU); bf16: bf16 autocast",
    )


def add_model_options(parser: argparse.ArgumentParser, models: tuple[str, ...] = MODELS) -> None:
    """``--models`` (of ``models``), ``--variants`` and the sizes of the paper's models
    (:func:`paper_model`)."""
    parser.add_argument("--models", default=",".join(models), help=f"comma-separated, {models}")
    parser.add_argument(
        "--variants", default="eval,folded", help=f"comma-separated, of {VARIANTS}"
    )
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument(
        "--width", type=int, default=64, help="conditioner channels and DC-GAN filters"
    )
    parser.add_argument("--latent", type=int, default=256, help="SLVM latent and LSTM size")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The conv peak's reps, ``--device``/``--precision``, threads, seed, JSON and ``--quick``."""
    parser.add_argument("--peak-reps", type=int, default=5, help="timed reps of the conv peak")
    add_device_options(parser)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    add_allocator_option(parser)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, every model, in seconds (tests)"
    )


def parse_model_run(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    quick: dict[str, Any],
    models: tuple[str, ...] = MODELS,
) -> argparse.Namespace:
    """Parses the options of :func:`add_model_options` and :func:`add_run_options` (and the
    script's own): ``--quick`` applied, the device checked, the model (of ``models``) and
    variant lists split."""
    args = parser.parse_args(argv)
    apply_quick(args, quick)
    check_device(parser, args)
    args.models = choices(parser, args.models, models)
    args.variants = choices(parser, args.variants, VARIANTS)
    return args


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    """``--allocator retain|system`` (default ``retain``, as the seqflows commands run)."""
    parser.add_argument(
        "--allocator",
        choices=("retain", "system"),
        default="retain",
        help="'retain': glibc keeps freed memory, as the seqflows commands run; 'system': its "
        "default (a page fault for every large block, every call)",
    )


def start_run(args: argparse.Namespace, settings: str) -> dict[str, Any]:
    """Sets the threads and the process's allocator as ``--allocator`` asks (as ``seqflows
    train``, ``evaluate`` and ``sample`` set theirs; ``args.allocator_retains``: whether it
    took), prints the machine and the run's ``settings``, and returns :func:`run_info`."""
    torch.set_num_threads(args.threads)
    args.allocator_retains = args.allocator == "retain" and retain_freed_memory()
    info = run_info(args)
    print(
        f"torch {info['torch']}, {args.threads} threads, CPU {info['cpu_model']}\n"
        f"{settings}, allocator {args.allocator}",
        flush=True,
    )
    return info


def check_device(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A parser error (exit 2) for ``--device cuda`` without CUDA; sets TF32 as asked."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch")
    set_tf32(args.precision == "tf32")


def paper_model(
    name: str,
    size: int = 64,
    width: int = 64,
    *,
    latent_dim: int = 256,
    lstm_hidden: int = 256,
    encoder_features: int = 128,
) -> FlowModel | SLVM:
    r"""The paper's model ``name`` (:data:`MODELS`) on frames (1, size, size), in train mode.

    ``width``: the flow conditioner's hidden channels and the DC-GAN networks' first filters
    (64 in the paper, Appendix B); the SLVM's latent, LSTM and feature sizes are the paper's
    unless given (reduced-scale runs).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    shape = (1, size, size)
    if name in ("1af", "2af"):
        transforms = 1 if name == "1af" else 2
        return FlowModel(shape, num_transforms=transforms, window=WINDOW, hidden=width)
    return SLVM(
        shape,
        num_transforms=1 if name == "slvm_1af" else 0,
        window=WINDOW,
        hidden=width,
        conv_width=width,
        latent_dim=latent_dim,
        lstm_hidden=lstm_hidden,
        encoder_features=encoder_features,
    )


def conv_peak(
    channels: int,
    size: int,
    batch: int,
    reps: int,
    *,
    backward: bool,
    bf16: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    r"""GFLOP/s of one ``channels -> channels`` 3x3 convolution on ``batch`` images of S x S.

    Forward only, or forward + backward (grad-input and grad-weight: 3 convolutions' FLOPs).
    The median of ``reps`` timed calls after one warm-up call. Under bf16 autocast the input
    is bf16, as the models' convolutions get it.
    """
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(device=device, memory_format=memory_format).requires_grad_(backward)
    dtype = torch.bfloat16 if bf16 else torch.float32
    shape = (batch, channels, size, size)
    x = torch.randn(shape, dtype=dtype, device=device).contiguous(memory_format=memory_format)
    x.requires_grad_(backward)
    grad = torch.randn(shape, dtype=dtype, device=device)
    grad = grad.contiguous(memory_format=memory_format)
    flops = (3 if backward else 1) * 2 * 9 * channels * channels * size * size * batch
    times = []
    with Usage() as usage:
        for rep in range(reps + 1):
            x.grad = None
            conv.zero_grad(set_to_none=True)
            synchronize(device)
            start = time.perf_counter()
            if backward:
                with autocast(bf16, device):
                    out = conv(x)
                out.backward(grad)
            else:
                with torch.inference_mode(), autocast(bf16, device):
                    out = conv(x)
            synchronize(device)
            if rep > 0:  # the first call is a warm-up
                times.append(time.perf_counter() - start)
            del out
    seconds = statistics.median(times)
    return {
        "batch": batch,
        "channels": channels,
        "size": size,
        "backward": backward,
        "memory_format": "channels_last" if memory_format == torch.channels_last else "NCHW",
        "seconds": seconds,
        "times": times,
        "gflop": flops / 1e9,
        "gflops_per_s": flops / seconds / 1e9,
        "other_cpu_cores": usage.other_cores,
    }


def count_flops(function: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    r"""Runs ``function`` once under :class:`~torch.utils.flop_counter.FlopCounterMode`.

    Returns:
        Its result and the FLOPs: ``forward`` (convolutions, transposed ones included),
        ``backward`` (their gradients), ``total`` (every counted op: convolutions, matmuls)
        and ``by_op``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        result = function()
    by_op = {str(op): count for op, count in counter.get_flop_counts().get("Global", {}).items()}
    return result, {
        "forward": sum(n for op, n in by_op.items() if op.endswith("convolution")),
        "backward": sum(n for op, n in by_op.items() if op.endswith("convolution_backward")),
        "total": counter.get_total_flops(),
        "by_op": by_op,
    }


def time_calls(
    function: Callable[[], Any], reps: int, device: str = "cpu"
) -> tuple[list[float], Usage]:
    """Seconds of each of ``reps`` calls of ``function`` (no warm-up), and what they cost;
    on CUDA between synchronizations."""
    times = []
    with Usage() as usage:
        for _ in range(reps):
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return times, usage


def training_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    generator: torch.Generator,
    bf16: bool = False,
    device: str = "cpu",
) -> tuple[float, float, float]:
    """One training step (the model's loss, backward, Adam): seconds of its three phases (on
    CUDA between synchronizations)."""
    synchronize(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with autocast(bf16, device):
        loss = model.loss(x, generator).loss
    synchronize(device)
    forward = time.perf_counter()
    loss.backward()
    synchronize(device)
    backward = time.perf_counter()
    optimizer.step()
    synchronize(device)
    end = time.perf_counter()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()}")
    return forward - start, backward - forward, end - backward


def inference_variant(model: torch.nn.Module, variant: str) -> torch.nn.Module:
    r"""The model as a benchmark's variant (:data:`VARIANTS`) runs it for inference: ``eval``
    (eval mode), ``folded`` (:func:`seqflows.inference.fold_batch_norm`) or ``folded_cl``
    (folded, channels-last weights). No parameter requires a gradient (FlopCounterMode trips
    over views of such parameters under inference mode)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    if variant == "eval":
        return model.eval().requires_grad_(False)
    folded = fold_batch_norm(model)
    if variant == "folded_cl":
        folded = folded.to(memory_format=torch.channels_last)
    return folded


def busy_warning(results: list[dict[str, Any]], key: str = "others") -> str | None:
    """A warning naming the rows measured while other processes used the CPU, or None."""
    noisy = [str(row["name"]) for row in results if row[key] > BUSY]
    if not noisy:
        return None
    named = ", ".join(noisy[:4]) + (f" and {len(noisy) - 4} more" if len(noisy) > 4 else "")
    return f"warning: other processes used the CPU during {named}: rerun them"


def choices(parser: argparse.ArgumentParser, value: str, allowed: tuple[str, ...]) -> list[str]:
    """The comma-separated items of an option, each one of ``allowed`` (else a parser error)."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    for item in items:
        if item not in allowed:
            parser.error(f"unknown {item!r}; choose from {', '.join(allowed)}")
    return items


def apply_quick(args: argparse.Namespace, quick: dict[str, Any]) -> None:
    """``--quick``: the tiny sizes of ``quick`` replace the options'."""
    if args.quick:
        for key, value in quick.items():
            setattr(args, key, value)


def check_at_least_one(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *keys: str
) -> None:
    """A parser error for the first of the options ``keys`` below 1."""
    for key in keys:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")


def run_info(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`machine` and the run's options (what the JSON file starts with)."""
    config = {key: value for key, value in vars(args).items() if key != "json"}
    return {**machine(args.threads), "config": config}


def report(info: dict[str, Any], rows: list[dict[str, Any]], path: str | None) -> None:
    """Writes the run's ``info`` with its ``rows`` as JSON to ``path`` (if given)."""
    info["results"] = rows
    if path:
        with open(path, "w") as handle:
            json.dump(info, handle, indent=2)
        print(f"\nwrote {path}")
