r"""Atomic file writes: a reader, or a kill at any moment, sees the old file or the new one.

The content goes to a temporary file in the target's folder, is flushed and fsynced, gets the
permissions any new file of the user would get (``mkstemp`` makes files private), and is renamed
over the target. Checkpoints, converted data, manifests, configurations and results use it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "write_atomically",
    "write_text_atomically",
]


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import, before any other thread creates files
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], mode: str = "wb"
) -> Path:
    r"""Calls ``write(stream)`` on a temporary file, then renames it to ``path`` (created folders).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a" / "b.txt"
        >>> _ = write_atomically(target, lambda stream: stream.write("done"), mode="w")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp makes the file private
        with os.fdopen(handle, mode) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (see :func:`write_atomically`)."""
    return write_atomically(path, lambda stream: stream.write(text), mode="w")
