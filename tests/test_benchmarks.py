"""The benchmarks run: each at its --quick sizes (a check of the script, not a measurement)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _run(*command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )


def test_train_step_quick_with_checkpointing_reports_time_and_memory(tmp_path):
    result = tmp_path / "step.json"
    done = _run(
        sys.executable,
        str(BENCHMARKS / "train_step.py"),
        "--quick",
        "--model=slvm_1af",
        "--modes=fp32,tf32,bf16",
        "--checkpoint-activations",
        "--device=cpu",
        "--no-isolate",
        f"--json={result}",
    )
    assert done.returncode == 0, done.stderr
    assert "activation checkpointing" in done.stdout
    table = done.stdout[done.stdout.index("mode ") :].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["fp32", "tf32", "bf16"]
    rows = json.loads(result.read_text())["results"]
    assert [row["mode"] for row in rows] == ["fp32", "tf32", "bf16"]
    for row in rows:
        assert row["checkpoint_activations"] is True and row["device"] == "cpu"
        assert row["seconds_per_step"] > 0 and row["peak_memory_mib"] > 0


def test_train_step_refuses_cuda_where_there_is_none():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _run(sys.executable, str(BENCHMARKS / "train_step.py"), "--quick", "--device=cuda")
    assert done.returncode == 2
    assert "--device cuda: no CUDA device" in done.stderr


def test_memory_benchmark_quick_compares_with_and_without_checkpointing(tmp_path):
    result = tmp_path / "memory.json"
    done = _run(
        sys.executable,
        str(BENCHMARKS / "memory.py"),
        "--quick",
        "--models=1af",
        "--modes=fp32",
        f"--json={result}",
    )
    assert done.returncode == 0, done.stderr
    assert "ckpt s/step" in done.stdout and "memory x" in done.stdout
    assert any(line.split()[:3] == ["1af", "2", "fp32"] for line in done.stdout.splitlines())
    (row,) = json.loads(result.read_text())["results"]
    assert row["plain"]["checkpoint_activations"] is False
    assert row["checkpointed"]["checkpoint_activations"] is True
    assert row["time_ratio"] > 0 and row["memory_ratio"] > 0


def test_gpu_script_dry_run_prints_one_table(tmp_path):
    done = _run("bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.startswith("benchmark"))
    rows = [line.split() for line in lines[header + 2 :] if line.startswith("train_step")]
    assert {(row[1], row[2]) for row in rows} == {
        (model, precision)
        for model in ("1af", "slvm_1af")
        for precision in ("fp32", "tf32", "bf16", "bf16_cl")
    }
    assert all(float(row[3]) > 0 for row in rows)  # seconds per step
    assert (tmp_path / "train_step_1af.json").is_file()
    for bench in ("evaluate", "sample"):  # written by another part of the work: run if present
        if (BENCHMARKS / f"{bench}.py").is_file():
            assert any(line.startswith(bench) for line in lines[header:]), done.stderr
        else:
            assert f"benchmarks/{bench}.py is not in this checkout: skipped" in done.stderr


def test_gpu_script_refuses_a_machine_without_cuda_and_unknown_options():
    import torch

    done = _run("bash", str(BENCHMARKS / "gpu.sh"), "--fast")
    assert done.returncode == 2 and "unknown option '--fast'" in done.stderr
    if not torch.cuda.is_available():
        done = _run("bash", str(BENCHMARKS / "gpu.sh"))
        assert done.returncode == 2
        assert "torch sees no CUDA device here; run with --dry-run" in done.stderr
