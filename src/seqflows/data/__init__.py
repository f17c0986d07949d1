r"""Data: sources of uint8 sequences, reproducible datasets of crops, and one module per dataset.

What every dataset shares: :mod:`.sources` (the :class:`Source` protocol: stored sequences,
:class:`ArraySource`, or a :class:`Simulator` that renders them), :mod:`.scaling` (uint8 frames
to [0, 1], with noise), :mod:`.datasets` (the reproducible training stream and fixed evaluation
sets), :mod:`.samplers` (each process's share) and :mod:`.simulators` (helpers of the synthetic
datasets). The datasets: :mod:`.mnist`, :mod:`.moving_mnist`, :mod:`.bouncing_balls` (and
:mod:`.controlled`, balls driven by known per-step actions, for conditioned models) and
:mod:`.motion` (Sec. 3.1), :mod:`.bair` (with :mod:`.tfrecord`), :mod:`.kth` and :mod:`.folder`
(with :mod:`.video`); :mod:`.store` holds converted data; and :mod:`.linear_gaussian` is a
state-space model with an exact log-likelihood (Kalman filter) for testing latent variable
models.
"""

from . import (
    bair,
    controlled,
    datasets,
    folder,
    kth,
    samplers,
    scaling,
    simulators,
    sources,
    tfrecord,
    video,
)
from .bair import convert_bair
from .bouncing_balls import BouncingBalls
from .controlled import ControlledBalls
from .datasets import FixedSequences, TrainingSequences, item_rng
from .folder import convert_folder, convert_series
from .kth import convert_kth
from .linear_gaussian import (
    LinearGaussianSSM,
    kalman_log_prob,
    kalman_log_prob_per_frame,
    simulate_linear_gaussian,
)
from .mnist import (
    MNIST_FILES,
    MNIST_MIRRORS,
    DownloadError,
    download_mnist,
    load_digits,
    md5sum,
    read_idx,
)
from .motion import MotionSequences, motion_log_prob, simulate_motion
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
    "LinearGaussianSSM",
    "MotionSequences",
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
    "kalman_log_prob",
    "kalman_log_prob_per_frame",
    "kth",
    "load_array",
    "load_conditioned_array",
    "load_digits",
    "load_moving_mnist_file",
    "md5sum",
    "motion_log_prob",
    "moving_mnist_split",
    "open_dataset",
    "read_idx",
    "read_manifest",
    "render_sequences",
    "samplers",
    "scaling",
    "series_statistics",
    "simulate_linear_gaussian",
    "simulate_motion",
    "simulators",
    "sources",
    "split_indices",
    "tfrecord",
    "video",
]
