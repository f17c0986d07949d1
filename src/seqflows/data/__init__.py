r"""Data: sequence generators and datasets. One module per dataset.

:mod:`.sequences` holds what every dataset shares (sources, reproducible training and
evaluation datasets, samplers); :mod:`.mnist`, :mod:`.moving_mnist`, :mod:`.bouncing_balls` and
:mod:`.motion` (Sec. 3.1) are the datasets; :mod:`.linear_gaussian` is a state-space model with an
exact log-likelihood (Kalman filter) for testing latent variable models.
"""

from .bouncing_balls import BouncingBalls
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
    load_moving_mnist_file,
    moving_mnist_split,
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
    "Simulator",
    "StreamSampler",
    "TrainingSequences",
    "bounce",
    "check_frames",
    "download_mnist",
    "frames_to_unit_interval",
    "item_rng",
    "kalman_log_prob",
    "kalman_log_prob_per_frame",
    "load_array",
    "load_digits",
    "load_moving_mnist_file",
    "md5sum",
    "motion_log_prob",
    "moving_mnist_split",
    "read_idx",
    "simulate_linear_gaussian",
    "simulate_motion",
    "split_indices",
]
