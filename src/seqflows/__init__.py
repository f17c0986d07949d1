r"""seqflows: sequence modelling with autoregressive flows across time.

An implementation of "Improving Sequential Latent Variable Models with Autoregressive Flows"
(Marino, Chen, He, Mandt), https://arxiv.org/abs/1910.12840. The layers, bottom up: the core
(:mod:`~seqflows.transforms`, :mod:`~seqflows.flows`, :mod:`~seqflows.slvm`,
:mod:`~seqflows.metrics`, :mod:`~seqflows.saving`, :mod:`~seqflows.inference`, plain PyTorch),
the data (:mod:`seqflows.data`), and the application (:mod:`seqflows.app`: configurations,
Lightning training, evaluation, figures and the command line), which the first two never import.
"""

from . import (  # noqa: E402
    allocator,
    checks,
    conditioners,
    conditioning,
    config,
    data,
    distributions,
    errors,
    flows,
    inference,
    metrics,
    networks,
    normalization,
    objective,
    saving,
    slvm,
    splines,
    transforms,
    version,
)
from .allocator import retain_freed_memory  # noqa: E402
from .flows import FlowConfig, FlowModel, FlowOutput  # noqa: E402
from .inference import fold_batch_norm  # noqa: E402
from .saving import load  # noqa: E402
from .slvm import SLVM, LatentSequenceModel, SLVMConfig  # noqa: E402
from .transforms import (  # noqa: E402
    AffineAutoregressiveTransform,
    SplineAutoregressiveTransform,
    TransformConfig,
    TransformOutput,
)
from .version import __version__

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
    "retain_freed_memory",
    "saving",
    "slvm",
    "splines",
    "transforms",
    "version",
]
