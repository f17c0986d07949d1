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
from .datasets import FixedSequences, TrainingSequences, item_rng
from .folder import convert_folder
from .kth import convert_kth
from .mnist import (
    MNIST_FILES,
    MNIST_MIRRORS,
    DownloadError,
    download_mnist,
    load_digits,
    md5sum,
    read_idx,
)
from .moving_mnist import (
    MOVING_MNIST_SHAPE,
    MOVING_MNIST_SPLITS,
    MOVING_MNIST_URL,
    MovingMNIST,
    downscale_digits,
    load_moving_mnist_file,
    moving_mnist_split,
)
from .samplers import EvaluationSampler, StreamSampler, split_indices
from .scaling import (
    NOISES,
    Preprocessing,
    check_frames,
    frames_to_unit_interval,
    series_statistics,
)
from .series import convert_series
from .simulators import bounce, render_sequences
from .sources import (
    ArraySource,
    Simulator,
    Source,
    StoredSource,
    load_array,
    load_conditioned_array,
)
from .store import (
    ShardData,
    StoreError,
    StoreSource,
    StoreWriter,
    convert_shards,
    open_dataset,
    read_manifest,
)

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MOVING_MNIST_SHAPE",
    "MOVING_MNIST_SPLITS",
    "MOVING_MNIST_URL",
    "NOISES",
    "ArraySource",
    "BouncingBalls",
    "ControlledBalls",
    "DownloadError",
    "EvaluationSampler",
    "FixedSequences",
    "MovingMNIST",
    "Preprocessing",
    "ShardData",
    "Simulator",
    "Source",
    "StoreError",
    "StoreSource",
    "StoreWriter",
    "StoredSource",
    "StreamSampler",
    "TrainingSequences",
    "bair",
    "bounce",
    "check_frames",
    "controlled",
    "convert_bair",
    "convert_folder",
    "convert_kth",
    "convert_series",
    "convert_shards",
    "datasets",
    "download_mnist",
    "downscale_digits",
    "folder",
    "frames_to_unit_interval",
    "item_rng",
    "kth",
    "load_array",
    "load_conditioned_array",
    "load_digits",
    "load_moving_mnist_file",
    "md5sum",
    "moving_mnist_split",
    "open_dataset",
    "read_idx",
    "read_manifest",
    "render_sequences",
    "samplers",
    "scaling",
    "series",
    "series_statistics",
    "simulators",
    "sources",
    "split_indices",
    "tfrecord",
    "video",
]

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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
