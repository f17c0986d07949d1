"""Packaging promises: the core imports only torch and numpy; the command line answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

import seqflows


def test_core_imports_nothing_beyond_torch_and_numpy() -> None:
    code = (
        "import sys, seqflows, seqflows.flows, seqflows.metrics, seqflows.data;"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'lightning', 'pytorch_lightning', 'torchvision', 'torchmetrics', 'yaml', "
        "'av')];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_api() -> None:
    assert {"FlowModel", "SLVM", "load", "metrics"} <= set(seqflows.__all__)
    with pytest.deprecated_call(match="seqflows.inference.fold_batch_norm"):
        assert seqflows.fold_batch_norm is seqflows.inference.fold_batch_norm
    assert seqflows.__version__


def test_console_script_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "seqflows", "motion", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--steps" in result.stdout and "Sec. 3.1" in result.stdout
    # seqflows motion moved to python -m reproduction motion: deprecated, forwarded in a checkout
    assert "seqflows motion is deprecated" in result.stderr
