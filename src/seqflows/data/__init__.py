r"""Data: sequence generators and datasets. One module per dataset."""

from .motion import MotionSequences, motion_log_prob, simulate_motion

__all__ = [
    "MotionSequences",
    "motion_log_prob",
    "simulate_motion",
]
