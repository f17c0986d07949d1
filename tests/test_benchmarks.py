"""The benchmarks run at their --quick sizes (a check of the scripts, not a measurement): they
print their table and write consistent JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_quick(script: str, tmp_path: Path, *options: str) -> tuple[str, dict]:
    path = tmp_path / f"{script}.json"
    command = [sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--json", str(path)]
    done = subprocess.run(
        [*command, *options], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(path.read_text())


def table(stdout: str, first: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the printed table (rows start with a model's label)."""
    lines = stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(first))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip() or ":" in line:  # the notes under the table
            break
        rows.append(line)
    return lines[start].split(), rows


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_evaluate_quick_reports_every_model_beside_the_peak_and_training(tmp_path):
    stdout, result = run_quick("evaluate", tmp_path)
    header, rows = table(stdout, "model")
    assert header[-4:] == ["train", "t.ratio", "eval/train", "others"] and "ratio" in header
    labels = ("1-AF", "2-AF", "SLVM ", "SLVM w/ 1-AF")
    for label in labels:
        assert any(row.startswith(label) for row in rows), label
    assert len(rows) == 8  # 4 models x (eval, folded)
    for row in rows:
        assert row.split()[-5].endswith("%")  # the ratio to the peak
        assert math.isfinite(float(row.split()[-2]))  # eval/train
    assert len(result["results"]) == 8
    for row in result["results"]:
        for key in ("seconds_per_batch", "frames_per_s", "gflops_per_s", "ratio"):
            assert positive(row[key]), (row["name"], key)
        assert positive(row["training"]["ratio"]) and positive(row["eval_over_train"])
        assert row["peak"]["backward"] is False and row["training"]["peak"]["backward"]
        assert row["flops"]["forward"] > 0  # convolutions counted
        samples = row["importance_samples"] or 1
        assert (
            row["scored_per_batch"]
            == row["batch"]
            * (row["frames"] - {"1af": 3, "2af": 6, "slvm": 3, "slvm_1af": 3}[row["model"]])
            * samples
        )
    assert {row["importance_samples"] for row in result["results"]} == {None, 4}
    assert result["config"]["quick"] is True and result["torch"]


def test_sample_quick_reports_seconds_per_step_and_the_growth_in_t(tmp_path):
    stdout, result = run_quick("sample", tmp_path, "--variants", "folded")
    header, rows = table(stdout, "model")
    assert header[:4] == ["model", "variant", "B", "T"] and "T-ratio" in header
    rows_found = result["results"]
    assert len(rows) == len(rows_found) == 3 * 2 * 2  # models x batches x lengths
    assert {(row["batch"], row["length"]) for row in rows_found} == {
        (1, 2),
        (1, 6),
        (2, 2),
        (2, 6),
    }
    for row in rows_found:
        for key in ("seconds_per_step", "frames_per_s", "gflops_per_s", "ratio"):
            assert positive(row[key]), (row["name"], key)
        assert row["flops_per_step"] > 0 and row["flops"] == pytest.approx(
            row["flops_once"] + row["length"] * row["flops_per_step"]
        )
        assert row["frames_per_s"] == pytest.approx(row["batch"] * row["length"] / row["seconds"])
        assert positive(row["step_ratio_to_shortest"])
    for line, row in zip(rows, rows_found, strict=True):  # the T-ratio on the longest T only
        printed = line.split()[-2]
        if row["length"] == 6:
            assert float(printed) == pytest.approx(row["step_ratio_to_shortest"], abs=0.006)
        else:
            assert printed.endswith("%")  # no T-ratio: the column before is the ratio


@pytest.mark.parametrize("script", ["evaluate", "sample"])
def test_benchmarks_refuse_unknown_models(script, tmp_path):
    command = [sys.executable, str(BENCHMARKS / f"{script}.py"), "--models", "3af"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and "unknown '3af'" in done.stderr


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


@pytest.mark.parametrize("script", ["evaluate", "sample"])
def test_inference_benchmarks_run_in_bf16_and_record_device_and_precision(script, tmp_path):
    options = ("--models", "1af,slvm_1af", "--variants", "folded", "--precision", "bf16")
    _, result = run_quick(script, tmp_path, *options)
    assert result["results"] and result["config"]["precision"] == "bf16"
    for row in result["results"]:
        assert row["precision"] == "bf16" and row["device"] == "cpu"
        for key in ("frames_per_s", "gflops_per_s", "ratio"):
            assert positive(row[key]), (row["name"], key)


@pytest.mark.parametrize("script", ["evaluate", "sample"])
def test_inference_benchmarks_refuse_cuda_where_there_is_none(script):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _run(sys.executable, str(BENCHMARKS / f"{script}.py"), "--quick", "--device=cuda")
    assert done.returncode == 2 and "no CUDA device" in done.stderr


def test_decoder_layers_quick_times_both_forms_of_both_layers(tmp_path):
    stdout, result = run_quick("decoder_layers", tmp_path)
    header, rows = table(stdout, "layer")
    assert header[0] == "layer" and header[-1] == "diff"
    assert [row.split()[0] for row in rows] == ["first", "heads", "first", "heads"]
    assert len(result["results"]) == 4
    for row in result["results"]:
        assert row["max_abs_difference"] < 1e-4, row  # the same function
        for key in ("forward_onednn", "forward_matmul", "train_onednn", "train_matmul"):
            assert positive(row[key]), (row["layer"], key)


def test_train_step_quick_times_the_1af_with_the_flow_within_the_frame(tmp_path):
    result = tmp_path / "step.json"
    script = str(BENCHMARKS / "train_step.py")
    done = _run(
        sys.executable,
        script,
        "--quick",
        "--model=1af_glow",
        "--modes=fp32",
        "--no-isolate",
        f"--json={result}",
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(result.read_text())["results"]
    assert row["model"] == "1af_glow" and row["seconds_per_step"] > 0
    assert row["peak"]["gflops_per_s"] > 0 and row["conv_flops"]["total"] > 0
