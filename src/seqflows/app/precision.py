r"""``train.precision: auto``: bf16 mixed precision where the hardware computes in bf16, float32
elsewhere.

bf16-mixed trains the convolutions and matrix products in bfloat16 under ``torch.autocast``; the
weights, the optimizer state, the log-determinants, the base densities and the KL terms stay
float32. On this project's CPUs (AVX-512 with the ``avx512_bf16`` instructions) it halves the
time of a training step; the precision study of the reproduction measured what it does to
the likelihood (docs/results.md). Where bf16 is emulated (a CPU without ``avx512_bf16`` or
``amx_bf16``, a GPU older than Ampere) it is slower than float32, so ``auto`` keeps float32 there,
and a run that asks for bf16 explicitly gets a one-line warning (:func:`emulated_bf16_warning`).
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["bf16_native", "emulated_bf16_warning", "resolve_precision"]

MIXED = "bf16-mixed"
FULL = "32"


def bf16_native(device_type: str, cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    r"""Whether ``device_type`` (``cpu`` or ``cuda``) computes in bf16 natively.

    CPU: the ``avx512_bf16`` or ``amx_bf16`` flag in ``cpuinfo`` (Linux; False where it cannot be
    read). CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)``.
    """
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(
            including_emulation=False
        )
    if device_type == "cpu":
        try:
            text = Path(cpuinfo).read_text(errors="replace")
        except OSError:
            return False
        flags = {
            flag
            for line in text.splitlines()
            if line.startswith("flags")
            for flag in line.partition(":")[2].split()
        }
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def resolve_precision(precision: str, accelerator: str) -> str:
    r"""The Lightning precision a run uses: ``precision`` unless it is ``auto``.

    ``auto`` is ``bf16-mixed`` where the device the run trains on computes in bf16 natively
    (:func:`bf16_native`), else ``32``. The device is the accelerator's: ``cpu``; ``gpu`` or
    ``cuda``; ``auto`` is CUDA when a GPU is visible, else the CPU. Any other accelerator
    (``mps``, ``tpu``, ...) gets ``32``.

    Example:
        >>> resolve_precision("32", "auto")
        '32'
    """
    if precision != "auto":
        return precision
    device_type = _device_type(accelerator)
    return MIXED if device_type is not None and bf16_native(device_type) else FULL


def emulated_bf16_warning(precision: str, accelerator: str) -> str | None:
    r"""A one-line warning when ``precision`` asks for bf16 explicitly (``bf16-mixed``, not
    ``auto``) on a device that only emulates it (:func:`bf16_native`), where it is slower than
    float32; None otherwise (and for devices other than the CPU and CUDA).

    Example:
        >>> emulated_bf16_warning("32", "cpu") is None
        True
    """
    if precision != MIXED:
        return None
    device_type = _device_type(accelerator)
    if device_type is None or bf16_native(device_type):
        return None
    missing = (
        "this CPU has no avx512_bf16 or amx_bf16 instructions"
        if device_type == "cpu"
        else "this GPU has no native bf16 (compute capability below 8.0)"
    )
    return (
        f"precision {MIXED}: {missing}, so bf16 is emulated and slower than float32; "
        "precision auto (or 32) trains in float32 here"
    )


def _device_type(accelerator: str) -> str | None:
    """``cpu`` or ``cuda``: the device an accelerator setting trains on; None for others."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    if accelerator in ("cpu", "auto"):
        return "cpu"
    return None
