r"""Data: sequence generators and datasets. One module per dataset.

:mod:`.sequences` holds what every dataset shares (sources, reproducible training and
evaluation datasets, samplers); :mod:`.mnist`, :mod:`.moving_mnist`, :mod:`.bouncing_balls` and
:mod:`.motion` (Sec. 3.1), :mod:`.bair` (with :mod:`.tfrecord`), :mod:`.kth` and :mod:`.folder`
(with :mod:`.video`) are the datasets; :mod:`.store` holds converted data; and
:mod:`.linear_gaussian` is a state-space model with an exact log-likelihood (Kalman filter) for
testing latent variable models.
"""

from . import bair, folder, kth, tfrecord, video
from .bair import convert_bair
from .bouncing_balls import BouncingBalls
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
    render_sequences,
)
from .sequences import (
    NOISES,
    ArraySource,
    EvaluationSampler,
    FixedSequences,
    Simulator,
    StreamSampler,
    TrainingSequences,
    bounce,
    check_frames,
    frames_to_unit_interval,
    item_rng,
    load_array,
    split_indices,
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
    "DownloadError",
    "EvaluationSampler",
    "FixedSequences",
    "LinearGaussianSSM",
    "MotionSequences",
    "MovingMNIST",
    "ShardData",
    "Simulator",
    "StoreError",
    "StoreSource",
    "StoreWriter",
    "StreamSampler",
    "TrainingSequences",
    "bounce",
    "bair",
    "check_frames",
    "convert_bair",
    "convert_folder",
    "convert_kth",
    "convert_series",
    "convert_shards",
    "download_mnist",
    "folder",
    "frames_to_unit_interval",
    "item_rng",
    "kalman_log_prob",
    "kalman_log_prob_per_frame",
    "kth",
    "load_array",
    "load_digits",
    "downscale_digits",
    "load_moving_mnist_file",
    "md5sum",
    "motion_log_prob",
    "moving_mnist_split",
    "render_sequences",
    "open_dataset",
    "read_idx",
    "read_manifest",
    "simulate_linear_gaussian",
    "simulate_motion",
    "split_indices",
    "tfrecord",
    "video",
]
