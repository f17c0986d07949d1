r"""seqflows: sequence modelling with autoregressive flows across time.

An implementation of "Improving Sequential Latent Variable Models with Autoregressive Flows"
(Marino, Chen, He, Mandt), https://arxiv.org/abs/1910.12840. The layers, bottom up: the core
(:mod:`~seqflows.transforms`, :mod:`~seqflows.flows`, :mod:`~seqflows.slvm`,
:mod:`~seqflows.metrics`, :mod:`~seqflows.saving`, :mod:`~seqflows.inference`, plain PyTorch),
the data (:mod:`seqflows.data`), and the application (:mod:`seqflows.app`: configurations,
Lightning training, evaluation, figures and the command line), which the first two never import.
"""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # for type checkers; at run time these are imported on first use
    from .flows import FlowConfig, FlowModel
    from .saving import load
    from .slvm import SLVM, SLVMConfig
    from .transforms import TransformConfig

# The submodules and names of the public API are imported on first use (PEP 562):
# ``import seqflows`` imports no torch, so that the command line starts at once and handles
# Ctrl-C from its first moment (seqflows.app.cli). allocator, checks and version are modules
# too, though no part of the public API (process settings, argument checks, __version__).
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
    "FlowConfig": "flows",
    "FlowModel": "flows",
    "load": "saving",
    "SLVM": "slvm",
    "SLVMConfig": "slvm",
    "TransformConfig": "transforms",
}
# Names that were top-level before issue 25 and live in their module only: they still work,
# with a DeprecationWarning that says where they are now.
_DEPRECATED = {
    "retain_freed_memory": "allocator",
    "FlowOutput": "flows",
    "fold_batch_norm": "inference",
    "LatentSequenceModel": "latent",
    "AffineAutoregressiveTransform": "transforms",
    "SplineAutoregressiveTransform": "transforms",
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
    if name in _DEPRECATED:  # not cached: every use warns
        module = f"{__name__}.{_DEPRECATED[name]}"
        warnings.warn(
            f"seqflows.{name} is deprecated: use {module}.{name}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "SLVM",
    "FlowConfig",
    "FlowModel",
    "SLVMConfig",
    "TransformConfig",
    "__version__",
    "conditioners",
    "conditioning",
    "config",
    "data",
    "distributions",
    "errors",
    "flows",
    "inference",
    "load",
    "metrics",
    "networks",
    "normalization",
    "objective",
    "preprocessing",
    "saving",
    "slvm",
    "splines",
    "transforms",
]
