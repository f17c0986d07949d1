r"""seqflows: sequence modelling with affine autoregressive flows across time.

An implementation of "Improving Sequential Latent Variable Models with Autoregressive Flows"
(Marino, Chen, He, Mandt), https://arxiv.org/abs/1910.12840.
"""

from . import conditioners, data, distributions, flows, metrics, networks, slvm, transforms
from .flows import FlowModel, FlowOutput
from .slvm import SLVM, LatentSequenceModel
from .transforms import AffineAutoregressiveTransform, TransformOutput

__version__ = "0.1.0"

__all__ = [
    "AffineAutoregressiveTransform",
    "FlowModel",
    "FlowOutput",
    "LatentSequenceModel",
    "SLVM",
    "TransformOutput",
    "__version__",
    "conditioners",
    "data",
    "distributions",
    "flows",
    "metrics",
    "networks",
    "slvm",
    "transforms",
]
