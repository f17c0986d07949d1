r"""seqflows: sequence modelling with autoregressive flows across time.

An implementation of "Improving Sequential Latent Variable Models with Autoregressive Flows"
(Marino, Chen, He, Mandt), https://arxiv.org/abs/1910.12840. The layers, bottom up: the core
(:mod:`~seqflows.transforms`, :mod:`~seqflows.flows`, :mod:`~seqflows.slvm`,
:mod:`~seqflows.metrics`, :mod:`~seqflows.saving`, :mod:`~seqflows.inference`, plain PyTorch),
the data (:mod:`seqflows.data`), and the application (:mod:`seqflows.app`: configurations,
Lightning training, evaluation, figures and the command line), which the first two never import.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # for type checkers; at run time these are imported on first use
    from .allocator import retain_freed_memory
    from .flows import FlowConfig, FlowModel, FlowOutput
    from .inference import fold_batch_norm
    from .saving import load
    from .slvm import SLVM, LatentSequenceModel, SLVMConfig
    from .transforms import (
        AffineAutoregressiveTransform,
        SplineAutoregressiveTransform,
        TransformConfig,
        TransformOutput,
    )

# The submodules and names of the public API are imported on first use (PEP 562):
# ``import seqflows`` imports no torch, so that the command line starts at once and handles
# Ctrl-C from its first moment (seqflows.app.cli).
_SUBMODULES = frozenset(
    {
        "allocator",
        "checks",
        "conditioners",
        "conditioning",
        "config",
        "data",
        "distributions",
        "errors",
        "flows",
        "inference",
        "metrics",
        "networks",
        "normalization",
        "objective",
        "preprocessing",
        "saving",
        "slvm",
        "splines",
        "transforms",
        "version",
    }
)
_NAMES = {
    "retain_freed_memory": "allocator",
    "FlowConfig": "flows",
    "FlowModel": "flows",
    "FlowOutput": "flows",
    "fold_batch_norm": "inference",
    "load": "saving",
    "SLVM": "slvm",
    "LatentSequenceModel": "slvm",
    "SLVMConfig": "slvm",
    "AffineAutoregressiveTransform": "transforms",
    "SplineAutoregressiveTransform": "transforms",
    "TransformConfig": "transforms",
    "TransformOutput": "transforms",
}


def __getattr__(name: str) -> Any:
    """A submodule or a name of the public API, imported on first use."""
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "SLVM",
    "AffineAutoregressiveTransform",
    "FlowConfig",
    "FlowModel",
    "FlowOutput",
    "LatentSequenceModel",
    "SLVMConfig",
    "SplineAutoregressiveTransform",
    "TransformConfig",
    "TransformOutput",
    "__version__",
    "allocator",
    "checks",
    "conditioners",
    "conditioning",
    "config",
    "data",
    "distributions",
    "errors",
    "flows",
    "fold_batch_norm",
    "inference",
    "load",
    "metrics",
    "networks",
    "normalization",
    "objective",
    "preprocessing",
    "retain_freed_memory",
    "saving",
    "slvm",
    "splines",
    "transforms",
    "version",
]
