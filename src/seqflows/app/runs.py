r"""The run folder of ``seqflows train``: its lock, what may replace it, and the rules of resuming.

* **Lock.** A run holds an exclusive ``fcntl.flock`` on ``RUN/.lock`` for its whole life (the
  launching process only, not the other processes of a data-parallel run). The kernel releases it
  when the process ends, however it ends, so a killed run never leaves a stale lock; a second
  run in the same folder fails at once, naming the folder and the process that holds it.
* **Existing runs.** A folder that holds a run (``config.yaml`` or a checkpoint) is continued with
  ``--resume`` or replaced with ``--overwrite``, which removes the old run's ``config.yaml``,
  ``resumes.yaml``, ``checkpoints/`` and ``logs/`` (other files in the folder stay); without
  either, training refuses to start.
* **Resuming.** Settings that only steer the rest of a run may change on resume and are applied
  (:data:`RESUMABLE`); settings that define the model, the data, the training stream, the
  optimizer or the schedule cannot, and a resume that changes them is refused with the list of
  them (:func:`resume_changes`). Every resume is recorded in ``RUN/resumes.yaml``.
* **Refusals.** A run folder that the command created and that holds nothing but its ``.lock``
  when the command fails (a refused setting, Ctrl-C during start-up) is removed again
  (:func:`locked_run_folder`); a path that is not valid UTF-8 is refused before anything is
  created (:func:`check_run_folder_path`).
* **Leftovers.** Temporary files of atomic writes that a kill interrupted
  (``.NAME.XXXXXXXX.tmp``, see :mod:`seqflows.atomic`) are removed when the next run starts.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomically
from ..errors import SeqflowsError
from .config import Config, ConfigError, stored_config

__all__ = [
    "RESUMABLE",
    "RunFolderError",
    "append_resume",
    "holds_run",
    "check_run_folder_path",
    "flatten_settings",
    "is_launching_process",
    "locked_run_folder",
    "remove_run",
    "remove_stale_temporaries",
    "resume_changes",
    "run_lock",
]

# Settings that may differ from the checkpoint's when a run is resumed; they are applied.
RESUMABLE = frozenset(
    {
        "name",
        # the rest of the optimization: the rate (the cosine schedule keeps its shape, scaled),
        # the clipping, how long (constant schedule only: see resume_changes)
        "train.learning_rate",
        "train.gradient_clip",
        "train.max_steps",
        # what is written and when
        "train.val_every",
        "train.checkpoint_every",
        "train.log_every",
        # where and how fast it runs: another machine, more GPUs, mixed precision (all keep
        # float32 weights and optimizer state; 64 does not, see resume_changes)
        "train.precision",
        "train.accelerator",
        "train.devices",
        "train.num_nodes",
        "train.strategy",
        "train.sync_batchnorm",
        "train.allocator",
        "train.steps_per_call",
        "data.num_workers",
        # where the same data lives (seqflows cannot check that it is the same)
        "data.path",
        "data.root",
        # the names of a series' dimensions: labels of figures (runs before they were read)
        "data.dimension_names",
    }
)
RESUMABLE_SECTIONS = ("evaluate",)  # not used by training: the later evaluation's protocol

# The files and folders a run writes, which --overwrite removes.
RUN_FILES = ("config.yaml", "resumes.yaml")
RUN_FOLDERS = ("checkpoints", "logs")

# Environment variables that give a process a rank other than 0 (Lightning's launcher, torchrun,
# SLURM, LSF): such a process is not the one that launched the run.
RANK_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "GROUP_RANK",
    "SLURM_PROCID",
    "JSM_NAMESPACE_RANK",
)

# seqflows.atomic's temporary files: mkstemp(prefix=f".{name}.", suffix=".tmp").
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


class RunFolderError(SeqflowsError, ValueError):
    """A run folder that cannot be used now: a file, another run's, or in use."""


def is_launching_process() -> bool:
    r"""Whether this process launched the run (rank 0 of its node and of the job), judged from the
    environment that Lightning, torchrun and SLURM give the other processes of a data-parallel run.
    Only it takes the lock, checks and prepares the folder and writes ``config.yaml``."""
    return all(os.environ.get(name, "0") in ("", "0") for name in RANK_VARIABLES)


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    r"""Holds an exclusive lock on ``folder/.lock`` (created) for the body of the ``with``.

    The lock file keeps the PID of its holder, for the message of a second run. It stays after the
    run: a lock is held only while a process has the file open (``flock``), so there is nothing to
    clean up after a kill. Without ``fcntl`` (Windows) the folder is not locked.

    Raises:
        RunFolderError: Another process holds the lock.
    """
    path = Path(folder) / ".lock"
    try:
        import fcntl
    except ModuleNotFoundError:  # pragma: no cover - Windows
        yield path
        return
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunFolderError(
                f"{folder} is in use by another seqflows train (PID {holder}); wait for it to "
                "end, stop it, or train into another --out folder"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(handle)  # releases the lock


@contextmanager
def locked_run_folder(folder: str | Path) -> Iterator[Path]:
    r"""Creates ``folder`` (and its missing parents) and holds its lock (:func:`run_lock`) for
    the body of the ``with``.

    When the body fails (any exception, Ctrl-C too) and the folder is one this call created and
    holds nothing but its ``.lock``, the lock file and the folders this call created are removed
    again: a refused training leaves no empty run folder behind. A folder that existed, or
    that holds anything else, stays.

    Raises:
        RunFolderError: The folder cannot be created, or another process holds its lock.
    """
    folder = Path(folder)
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(f"cannot create the run folder {folder}: {error.strerror}") from None
    try:
        with run_lock(folder) as lock:
            try:
                yield lock
            except BaseException:
                if created and _holds_only_lock(folder):
                    lock.unlink(missing_ok=True)  # while still locked
                raise
    except BaseException:
        for path in created:
            try:
                path.rmdir()  # only an empty folder: never anything of the user's
            except OSError:
                break
        raise


def _holds_only_lock(folder: Path) -> bool:
    try:
        return {path.name for path in folder.iterdir()} <= {".lock"}
    except OSError:
        return False


def check_run_folder_path(folder: str | Path) -> None:
    r"""Refuses a run folder path that is not valid UTF-8 (bytes that ``os.fsdecode`` kept as
    surrogates), before anything is created: TensorBoard's logs cannot be written under it.

    Raises:
        RunFolderError: Naming the path, its invalid bytes shown as ``\xNN``.
    """
    for path in (str(folder), os.path.abspath(folder)):
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise RunFolderError(
                f"--out {shown}: the path is not valid UTF-8, and the run's logs (TensorBoard) "
                "need one; train into a folder whose path is UTF-8"
            ) from None


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run: its ``config.yaml`` or a checkpoint in ``checkpoints/``."""
    folder = Path(folder)
    return (folder / "config.yaml").is_file() or any((folder / "checkpoints").glob("*.ckpt"))


def remove_run(folder: str | Path) -> list[str]:
    r"""Removes the run of ``folder`` (``--overwrite``): ``config.yaml``, ``resumes.yaml``,
    ``checkpoints/`` and ``logs/``; other files stay. Call it with the lock held. Every one
    of them is checked before any is removed (:func:`_run_entries`).

    Returns:
        The names removed.

    Raises:
        RunFolderError: One of them is a symbolic link or not of its kind; nothing was removed.
    """
    folder = Path(folder)
    entries = _run_entries(folder)  # all checked before anything is removed
    for path in entries:
        if path.is_dir():
            shutil.rmtree(path)  # removes links inside, never what they point to
        else:
            path.unlink()
    return [f"{path.name}/" if path.name in RUN_FOLDERS else path.name for path in entries]


def _run_entries(folder: Path) -> list[Path]:
    r"""The run's files and folders that ``folder`` holds, in :data:`RUN_FILES`,
    :data:`RUN_FOLDERS` order, each checked to be what a run writes there.

    Raises:
        RunFolderError: One of them is a symbolic link (removing it would reach out of the run
            folder, or leave what the link points to half deleted) or not of its kind (a folder
            ``config.yaml``, a file ``checkpoints``).
    """
    entries = []
    for name in (*RUN_FILES, *RUN_FOLDERS):
        path = folder / name
        if path.is_symlink():
            raise RunFolderError(
                f"--overwrite: {path} is a symbolic link (to {os.readlink(path)}); seqflows "
                "removes nothing through a link: remove or move the link yourself, or train "
                "into another --out"
            )
        if not path.exists():
            continue
        kind = "folder" if name in RUN_FOLDERS else "file"
        if path.is_dir() != (kind == "folder"):
            raise RunFolderError(
                f"--overwrite: {path} is not a {kind}, so it is not the run's; move it away "
                "first, or train into another --out"
            )
        entries.append(path)
    return entries


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    r"""Removes what killed atomic writes of a run left: ``.NAME.XXXXXXXX.tmp`` of checkpoints in
    ``folder/checkpoints`` and of ``config.yaml`` and ``resumes.yaml`` in ``folder``. Call it with
    the lock held, so that no write of this run is under way.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    removed = []
    for directory, keep in ((folder / "checkpoints", None), (folder, RUN_FILES)):
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            match = _TEMPORARY.match(path.name)
            if match is None or not path.is_file():
                continue
            if keep is None and not match["name"].endswith(".ckpt"):
                continue
            if keep is not None and match["name"] not in keep:
                continue
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def resume_changes(
    stored: Mapping[str, Any],
    requested: Config,
    stored_event_shape: list[int],
    event_shape: list[int],
    source: str,
) -> dict[str, tuple[Any, Any]]:
    r"""The settings that a resume changes, checked against the rules.

    Arguments:
        stored: The configuration in the checkpoint, as :meth:`Config.to_dict` gave it.
        requested: The configuration of this invocation.
        stored_event_shape: The checkpoint's frame shape.
        event_shape: The frame shape of the configured data.
        source: The checkpoint, for messages.

    Returns:
        ``{"section.key": (old, new)}`` of the changed settings, all resumable.

    Raises:
        ConfigError: A change that a resume cannot make (model, data, stream, seed, batch size,
            optimizer, schedule, validation set, ...); the message lists every such key with its
            old and new value.
    """
    old = flatten_settings(
        stored_config(stored, source=f"{source} (stored configuration)").to_dict()
    )
    new = flatten_settings(requested.to_dict())
    changes = {key: (old.get(key), value) for key, value in new.items() if old.get(key) != value}
    refused = {key: change for key, change in changes.items() if not _resumable(key, change, new)}
    messages = [f"{key}: {before!r} -> {after!r}" for key, (before, after) in refused.items()]
    if list(stored_event_shape) != list(event_shape):
        messages.append(f"frame shape: {list(stored_event_shape)} -> {list(event_shape)}")
    if messages:
        raise ConfigError(
            f"{source}: these settings cannot change when a run is resumed: "
            f"{', '.join(messages)} (they define the model, the data, the training stream or the "
            "optimization: train a new run into another --out, or start this one afresh with "
            "--overwrite instead of --resume)"
        )
    return changes


def _resumable(key: str, change: tuple[Any, Any], new: Mapping[str, Any]) -> bool:
    if key.partition(".")[0] in RESUMABLE_SECTIONS:
        return True
    if key == "train.max_steps":  # the cosine schedule was laid over the old max_steps
        return new["train.lr_schedule"] == "constant"
    if key == "train.precision":  # 64 holds the weights and the optimizer state in float64
        return "64" not in change
    return key in RESUMABLE


def append_resume(
    folder: str | Path, step: int, checkpoint: str | Path, changes: Mapping[str, tuple[Any, Any]]
) -> Path:
    r"""Adds a resume to ``folder/resumes.yaml``: the step, the time (UTC), the checkpoint and the
    changed settings (``{key: {before: old, after: new}}``)."""
    import yaml

    path = Path(folder) / "resumes.yaml"
    history = yaml.safe_load(path.read_text()) if path.is_file() else None
    entries = list((history or {}).get("resumes", []))
    entries.append(
        {
            "step": int(step),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": str(checkpoint),
            "changed": {
                key: {"before": before, "after": after} for key, (before, after) in changes.items()
            },
        }
    )
    return write_text_atomically(path, yaml.safe_dump({"resumes": entries}, sort_keys=False))


def flatten_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train": {"seed": 0}, "name": "x"}`` -> ``{"train.seed": 0, "name": "x"}``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):  # nested settings too: model.conditioner.hidden
            flat.update({f"{key}.{name}": item for name, item in flatten_settings(value).items()})
        else:
            flat[key] = value
    return flat
