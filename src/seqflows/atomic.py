r"""Atomic file writes: a reader, or a kill at any moment, sees the old file or the new one.

The content goes to a temporary file in the target's folder, is flushed and fsynced, gets the
permissions any new file of the user would get (0o666 less the umask of the moment: ``mkstemp``
makes files private), and is renamed over the target. Checkpoints, converted data, manifests,
configurations and results use it.

A full disk or an exhausted quota (``ENOSPC``, ``EDQUOT``) at any step removes the temporary file,
leaves the target as it was, and raises :class:`DiskFullError`, whose message names the device
and the file: "no space left on /dev/sdb1 (mounted on /data) while writing /data/run/last.ckpt".
So does a short write without an errno (numpy's ``OSError: 92160 requested and 20352 written``
when the disk fills during ``np.save``). A folder that cannot be written (a read-only file
system, no permission) raises :class:`NotWritableError`, naming the target.

A process killed (SIGKILL) between creating its temporary file and the rename leaves that file
behind: :func:`remove_stale_temporaries` removes those of a folder, matched by the exact names
this module gives them, before a command writes there again.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import SeqflowsError

__all__ = [
    "DiskFullError",
    "NotWritableError",
    "remove_stale_temporaries",
    "write_atomically",
    "write_text_atomically",
]

_FULL = {errno.ENOSPC: "no space left"} | (
    {errno.EDQUOT: "disk quota exceeded"} if hasattr(errno, "EDQUOT") else {}
)
_NOT_WRITABLE = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's tofile, no errno
# mkstemp's names in write_atomically: "." + the target's name + "." + 8 random characters + ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
_PROC_STATUS = "/proc/self/status"  # where Linux shows the umask (see _umask)


class DiskFullError(SeqflowsError, OSError):
    r"""No space (or quota) left on the device of a file being written; the target is unchanged.

    ``errno`` is the original ``ENOSPC`` or ``EDQUOT``, ``filename`` the file; ``str()`` is one
    line naming both the device and the file.
    """

    def __init__(self, path: str | os.PathLike, code: int = errno.ENOSPC) -> None:
        what = _FULL.get(code, os.strerror(code))
        super().__init__(f"{what} on {_device_of(Path(path).parent)} while writing {path}")
        self.errno = code
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class NotWritableError(SeqflowsError, PermissionError):
    r"""A file that cannot be written where it should go: a read-only file system, or no
    permission. ``str()`` is one line naming the file and the reason."""

    def __init__(self, path: str | os.PathLike, code: int = errno.EACCES) -> None:
        reason = _NOT_WRITABLE.get(code, os.strerror(code))
        super().__init__(f"cannot write {path}: not writable ({reason})")
        self.errno = code
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


def _device_of(folder: Path) -> str:
    """The device and mount point of ``folder``, e.g. ``/dev/sdb1 (mounted on /data)``."""
    try:
        mount = folder.resolve()
        while not mount.exists() and mount != mount.parent:
            mount = mount.parent
        while not os.path.ismount(mount) and mount != mount.parent:
            mount = mount.parent
    except OSError:
        return f"the device of {folder}"
    device = None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as table:
            for line in table:  # the last mount on a point is the visible one
                fields = line.split()
                if len(fields) > 1 and _unescape(fields[1]) == str(mount):
                    device = _unescape(fields[0])
    except OSError:  # not Linux
        pass
    return f"{device} (mounted on {mount})" if device and device != str(mount) else str(mount)


def _unescape(field: str) -> str:
    """A field of /proc/self/mounts, whose spaces, tabs and backslashes are octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _umask() -> int:
    r"""The process's file mode creation mask, read when a file is written, not at import.

    On Linux (4.7 and later) it is the ``Umask:`` line of /proc/self/status, read without
    changing anything. Elsewhere ``os.umask`` is the only way to read it: set and restored at
    once (a file another thread creates in between would get the mask 0o022).
    """
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):  # no /proc, or a line we cannot read
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], mode: str = "wb"
) -> Path:
    r"""Calls ``write(stream)`` on a temporary file, then renames it to ``path`` (created folders).

    Raises:
        DiskFullError: No space or quota left (the target is unchanged, no temporary file left).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a" / "b.txt"
        >>> _ = write_atomically(target, lambda stream: stream.write("done"), mode="w")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes the file private
        with os.fdopen(handle, mode) as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _FULL:
            raise DiskFullError(path, error.errno) from error
        if isinstance(error, OSError) and error.errno is None and _SHORT_WRITE.search(str(error)):
            raise DiskFullError(path) from error  # a short write: the disk filled up
        if isinstance(error, OSError) and error.errno in _NOT_WRITABLE:
            raise NotWritableError(path, error.errno) from error
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    r"""Removes the temporary files that :func:`write_atomically` left in ``folder`` when its
    process was killed (SIGKILL) before the rename; other files are never touched.

    Call it only where no other process is writing into ``folder`` at the same time.

    Returns:
        The files removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (see :func:`write_atomically`)."""
    return write_atomically(path, lambda stream: stream.write(text), mode="w")
