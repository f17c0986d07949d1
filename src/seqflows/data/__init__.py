r"""Data: sources of uint8 sequences, reproducible datasets of crops, and one module per dataset.

What every dataset shares: :mod:`.sources` (the :class:`Source` protocol: stored sequences,
:class:`ArraySource`, or a :class:`Simulator` that renders them), :mod:`.scaling` (uint8 frames
to [0, 1], with noise), :mod:`.datasets` (the reproducible training stream and fixed evaluation
sets), :mod:`.samplers` (each process's share) and :mod:`.simulators` (helpers of the synthetic
datasets). The datasets: :mod:`.mnist`, :mod:`.moving_mnist`, :mod:`.bouncing_balls` (and
:mod:`.controlled`, balls driven by known per-step actions, for conditioned models),
:mod:`.bair` (with :mod:`.tfrecord`), :mod:`.kth`, :mod:`.folder` (with :mod:`.video`) and
:mod:`.series`;
:mod:`.store` holds converted data. The motivating example's particle (Sec. 3.1, formerly
``seqflows.data.motion``) moved to the repository's ``reproduction/motion_data.py`` and the
linear-Gaussian state-space model (formerly ``seqflows.data.linear_gaussian``) to
``tests/linear_gaussian.py``: importing their names from here is an ImportError that says so.
"""

import importlib
import warnings

from . import (
    bair,
    controlled,
    datasets,
    folder,
    kth,
    samplers,
    scaling,
    series,
    simulators,
    sources,
    tfrecord,
    video,
)
from .bair import convert_bair
from .bouncing_balls import BouncingBalls
from .controlled import ControlledBalls
from .datasets import FixedSequences, TrainingSequences
from .folder import convert_folder
from .kth import convert_kth
from .mnist import download_mnist, load_digits
from .moving_mnist import MovingMNIST, load_moving_mnist_file
from .scaling import Preprocessing
from .series import convert_series
from .sources import ArraySource, Simulator, Source, StoredSource, load_array
from .store import StoreSource, open_dataset

# What users need: the datasets, the sources, the preprocessing, the converters and the modules.
__all__ = [
    "ArraySource",
    "BouncingBalls",
    "ControlledBalls",
    "FixedSequences",
    "MovingMNIST",
    "Preprocessing",
    "Simulator",
    "Source",
    "StoreSource",
    "StoredSource",
    "TrainingSequences",
    "bair",
    "controlled",
    "convert_bair",
    "convert_folder",
    "convert_kth",
    "convert_series",
    "datasets",
    "download_mnist",
    "folder",
    "kth",
    "load_array",
    "load_digits",
    "load_moving_mnist_file",
    "open_dataset",
    "samplers",
    "scaling",
    "series",
    "simulators",
    "sources",
    "tfrecord",
    "video",
]

# Names of the package before issue 25 that live in their submodule only: they still work, with
# a DeprecationWarning that says where.
_DEPRECATED = {
    **dict.fromkeys(("item_rng",), "datasets"),
    **dict.fromkeys(
        ("MNIST_FILES", "MNIST_MIRRORS", "DownloadError", "md5sum", "read_idx"), "mnist"
    ),
    **dict.fromkeys(
        (
            "MOVING_MNIST_SHAPE",
            "MOVING_MNIST_SPLITS",
            "MOVING_MNIST_URL",
            "downscale_digits",
            "moving_mnist_split",
        ),
        "moving_mnist",
    ),
    **dict.fromkeys(("EvaluationSampler", "StreamSampler", "split_indices"), "samplers"),
    **dict.fromkeys(
        ("NOISES", "check_frames", "frames_to_unit_interval", "series_statistics"), "scaling"
    ),
    **dict.fromkeys(("bounce", "render_sequences"), "simulators"),
    **dict.fromkeys(("load_conditioned_array",), "sources"),
    **dict.fromkeys(
        ("ShardData", "StoreError", "StoreWriter", "convert_shards", "read_manifest"), "store"
    ),
}

# Names that moved out of the package (issue 25): where they went, for a one-line ImportError.
_MOVED = {
    **dict.fromkeys(
        ("MotionSequences", "motion_log_prob", "simulate_motion", "motion"),
        "the repository's reproduction/motion_data.py (the motivating example of Sec. 3.1)",
    ),
    **dict.fromkeys(
        (
            "LinearGaussianSSM",
            "kalman_log_prob",
            "kalman_log_prob_per_frame",
            "simulate_linear_gaussian",
            "linear_gaussian",
        ),
        "the repository's tests/linear_gaussian.py (the Kalman oracle of the SLVM tests)",
    ),
}


def __getattr__(name: str) -> object:
    if name in _MOVED:  # an ImportError: ``from seqflows.data import x`` keeps this message
        raise ImportError(f"seqflows.data.{name} moved out of the package to {_MOVED[name]}")
    if name in _DEPRECATED:
        module = f"{__name__}.{_DEPRECATED[name]}"
        warnings.warn(
            f"seqflows.data.{name} is deprecated: use {module}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
