r"""Errors about the user's input or setup, as opposed to bugs.

Every error that a user can fix by changing a file, a setting or the machine derives from
:class:`SeqflowsError` and says in one line what is wrong and where (the file, the key). The
command line prints such errors as ``seqflows: error: ...`` with exit status 2; anything else is a
bug and keeps its traceback. Each class also derives from the built-in exception a Python user
would catch (``ValueError`` for bad values, ``OSError`` for the machine, ...).
:func:`warn_deprecated` is the one warning of a public name that is going away.
"""

from __future__ import annotations

import warnings

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MissingDependency",
    "NonFiniteError",
    "SeqflowsError",
    "TrainingError",
    "warn_deprecated",
]


class SeqflowsError(Exception):
    """Base of the errors about the user's input or setup (one line, names the file or key)."""


class ConfigError(SeqflowsError, ValueError):
    """A setting that cannot be used: unknown key, wrong type, unknown choice, out of range."""


class CheckpointError(SeqflowsError, ValueError):
    """A file that is not a usable seqflows checkpoint or saved model."""


class DataError(SeqflowsError, ValueError):
    """Data that cannot be used: a missing, corrupt or malformed file, frames of another shape."""


class TrainingError(SeqflowsError, RuntimeError):
    """A training that could not go on or did not finish (divergence, a failed process)."""


class NonFiniteError(SeqflowsError, FloatingPointError):
    """A NaN or infinite loss, weight or score: the model diverged."""


class MissingDependency(SeqflowsError, ImportError):
    """An optional dependency that this command needs is not installed (names the extra)."""


def warn_deprecated(name: str, replacement: str) -> None:
    """Warns (DeprecationWarning, at the caller's caller) that the public ``name`` is going away
    and what to use instead."""
    warnings.warn(f"{name} is deprecated: use {replacement}", DeprecationWarning, stacklevel=3)
