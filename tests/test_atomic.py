"""seqflows.atomic: no process state changed on import; new files get the umask of the moment."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from seqflows import atomic


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process's umask after a test that sets it."""
    mask = os.umask(0o022)
    os.umask(mask)
    yield
    os.umask(mask)


def no_umask_calls(mask: int) -> int:
    raise AssertionError(f"os.umask({mask:#o}) called")


def test_import_does_not_touch_the_umask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "umask", no_umask_calls)
    # a fresh copy of the module, run under another name: seqflows.atomic itself is untouched
    spec = importlib.util.spec_from_file_location("seqflows.atomic_copy", atomic.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.write_atomically)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_new_files_get_the_umask_of_the_moment(tmp_path: Path, umask: None, mask: int) -> None:
    os.umask(mask)  # set after import: the mask at write time counts
    path = atomic.write_text_atomically(tmp_path / "a" / "file.txt", "content")
    assert path.read_text() == "content"
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.skipif(
    not Path("/proc/self/status").is_file()
    or "Umask:" not in Path("/proc/self/status").read_text(errors="replace"),
    reason="no umask in /proc/self/status (Linux >= 4.7)",
)
def test_linux_reads_the_umask_without_setting_it(
    tmp_path: Path, umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.umask(0o027)
    monkeypatch.setattr(os, "umask", no_umask_calls)
    path = atomic.write_text_atomically(tmp_path / "file.txt", "content")
    assert path.stat().st_mode & 0o777 == 0o640


def test_without_proc_the_umask_is_read_and_restored(
    tmp_path: Path, umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.umask(0o027)
    monkeypatch.setattr(atomic, "_PROC_STATUS", str(tmp_path / "no-proc" / "status"))
    path = atomic.write_text_atomically(tmp_path / "file.txt", "content")
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.umask(0o027) == 0o027  # restored as it was
