"""The opt-in allocator setting for library users: seqflows.retain_freed_memory() and the
environment recipe (seqflows.allocator.ENVIRONMENT), checked on glibc through mallinfo2."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import seqflows
from seqflows import allocator

PACKAGE = Path(seqflows.__file__).parent

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the setting is glibc's",
)

# Allocates and frees a 64 MiB block, then prints how many blocks glibc serves with mmap
# (mallinfo2().hblks) for it: 1 with glibc's defaults, 0 when freed memory is retained.
PROBE = """
import ctypes, ctypes.util, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if len(sys.argv) > 1:
    import seqflows
    assert seqflows.allocator.retain_freed_memory() is True
before = libc.mallinfo2().hblks
block = libc.malloc(64 * 2**20)
print("mmapped blocks", libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _mmapped_blocks(env: dict[str, str], *args: str) -> int:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@glibc
def test_the_environment_recipe_makes_glibc_keep_large_blocks_in_the_heap():
    assert _mmapped_blocks({}) == 1  # glibc's default: a large block is an mmap
    assert _mmapped_blocks(allocator.ENVIRONMENT) == 0


@glibc
def test_the_public_call_makes_glibc_keep_large_blocks_in_the_heap():
    assert seqflows.allocator.retain_freed_memory is allocator.retain_freed_memory
    assert _mmapped_blocks({}, "call") == 0


def test_the_library_never_calls_it_itself():
    """Only the command (app/cli.py) calls it; the core defines it, app.runtime re-exports it."""
    callers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", "")) == "retain_freed_memory"
    }
    assert callers == {"app/cli.py"}
    from seqflows.app import runtime

    assert runtime.retain_freed_memory is allocator.retain_freed_memory


@glibc
def test_importing_seqflows_leaves_the_allocator_alone():
    probe = PROBE.replace("before = ", "import seqflows.app.cli\nbefore = ")
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC")}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "1"


@glibc
@pytest.mark.parametrize(
    ("command", "mmapped"),
    [
        (["evaluate", "missing.ckpt"], 0),
        (["sample", "missing.ckpt", "--out", "x"], 0),
        (["configs"], 1),
    ],
)
def test_the_commands_that_run_models_keep_freed_memory(command, mmapped, tmp_path):
    """evaluate, sample, predict and visualize retain freed memory (as seqflows train and
    python -m reproduction do); the others leave glibc's default. Run in a fresh interpreter: the
    command (here one that fails on a missing checkpoint, after the setting) then the probe."""
    probe = PROBE.replace(
        "before = ",
        "import contextlib, io, seqflows.app.cli\n"
        "quiet = io.StringIO()\n"
        "with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):\n"
        f"    seqflows.app.cli.main({command!r})\n"
        "before = ",
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=environment,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == str(mmapped)
