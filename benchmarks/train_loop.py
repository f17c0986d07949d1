r"""Throughput of ``seqflows train`` (the Lightning loop with its data pipeline) on a config.

Works for flows and SLVMs alike (the step is minus the mean per-frame log-likelihood or ELBO).

For each precision, two measurements in the same process:

* **bare step**: the model of the configuration on one fixed batch, ``loss.backward()`` and an
  Adam step, timed without Lightning and without data loading: the best the loop can do;
* **loop**: ``seqflows.app.train.train`` for ``--steps`` steps on the configuration's real data
  stream (crops, noise, DataLoader workers, validation off), as ``StepTimer`` logs it: scored
  frames per second and the share of time between steps (data wait plus Lightning's own work).

The ratio loop / bare step says what the training loop and the data pipeline cost.

``--devices 1 2`` adds, for each precision, ``seqflows train`` on the CPU as a command with one
process and with two data-parallel ones (``--strategy ddp``, gloo), the same global batch
(``train.batch_size`` is split between the processes): frames per second of all processes and
the seconds of one global step, from the run's ``time/frames_per_second`` (first window dropped).

    python benchmarks/train_loop.py configs/bouncing_balls_1af.yaml --steps 40
    python benchmarks/train_loop.py configs/bouncing_balls_1af.yaml --steps 30 --devices 1 2
    python benchmarks/train_loop.py configs/mmnist_1af.yaml --steps 6 \
        data.dataset=moving_mnist data.path=../shared/data/mnist/t10k-images-idx3-ubyte.gz
    python benchmarks/train_loop.py configs/mmnist_slvm_1af.yaml --steps 6 \
        data.dataset=moving_mnist data.path=../shared/data/mnist/t10k-images-idx3-ubyte.gz
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from seqflows.allocator import retain_freed_memory
from seqflows.app.checkpoints import build_model
from seqflows.app.config import load_config
from seqflows.app.datasets import training_set
from seqflows.app.resolution import ResolvedData, resolve_data
from seqflows.app.train import train


def bare_step_seconds(config: Any, data: ResolvedData, precision: str, steps: int) -> float:
    """Median seconds of one training step without Lightning or data loading."""
    dataset = training_set(config, data)
    batch = torch.stack([dataset[index] for index in range(config.train.batch_size)])
    model = build_model(config, tuple(batch.shape[2:]), data.condition_dim).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
    generator = torch.Generator().manual_seed(0)  # SLVM posterior samples
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = model.loss(batch, generator).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def loop_throughput(config: Any, steps: int) -> dict[str, float]:
    """Frames/s and data share of ``steps`` steps of ``seqflows train`` (first window dropped)."""
    window = max(steps // 3, 1)
    config = config.replace(
        train={
            "max_steps": steps,
            "log_every": window,
            "val_every": 10 * steps,  # no validation inside the timed steps
            "checkpoint_every": 10 * steps,
            "val_sequences": 1,
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        summary = train(config, Path(folder), progress=False)
    history = summary["throughput"][1:] or summary["throughput"]
    return {
        "frames_per_second": statistics.mean(h["time/frames_per_second"] for h in history),
        "data_share": statistics.mean(h["time/data_share"] for h in history),
        "windows": len(history),
    }


def command_throughput(
    config_path: str, overrides: list[str], precision: str, steps: int, devices: int
) -> dict[str, float]:
    """Frames/s of all processes and seconds per global step of ``seqflows train`` with
    ``devices`` CPU processes (data parallel when more than one), run as a command."""
    window = max(steps // 3, 1)
    settings = [
        f"train.precision={precision}",
        f"train.max_steps={steps}",
        f"train.log_every={window}",
        f"train.val_every={10 * steps}",
        f"train.checkpoint_every={10 * steps}",
    ]
    strategy = "ddp" if devices > 1 else "auto"
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "seqflows", "train", config_path, *overrides, *settings]
        command += ["--out", folder, "--accelerator", "cpu", "--devices", str(devices)]
        command += ["--strategy", strategy, "--no-progress"]
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        with open(Path(folder) / "logs" / "version_0" / "metrics.csv", newline="") as stream:
            rates = [
                float(row["time/frames_per_second"])
                for row in csv.DictReader(stream)
                if row.get("time/frames_per_second")
            ]
    rate = statistics.mean(rates[1:] or rates)
    return {"frames_per_second": rate, "windows": len(rates[1:] or rates)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=9, help="loop steps (3 log windows)")
    parser.add_argument("--bare-steps", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["32", "bf16-mixed"])
    parser.add_argument(
        "--devices",
        nargs="+",
        type=int,
        default=[],
        help="also time `seqflows train` as a command with these numbers of CPU processes",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_intermixed_args(argv)
    retained = retain_freed_memory()
    results = []
    for precision in args.precisions:
        config = load_config(args.config, [*args.overrides, f"train.precision={precision}"])
        data = resolve_data(config)  # the frame shape and crop length of the data
        model = build_model(config, data.event_shape, data.condition_dim)
        scored = data.length - model.burn_in
        bare = bare_step_seconds(config, data, precision, args.bare_steps)
        bare_rate = config.train.batch_size * scored / bare
        loop = loop_throughput(config, args.steps)
        results.append(
            {
                "config": args.config,
                "overrides": args.overrides,
                "precision": precision,
                "batch_size": config.train.batch_size,
                "scored_frames_per_step": config.train.batch_size * scored,
                "bare_step_seconds": bare,
                "bare_frames_per_second": bare_rate,
                "loop_frames_per_second": loop["frames_per_second"],
                "loop_over_bare": loop["frames_per_second"] / bare_rate,
                "data_share": loop["data_share"],
                "threads": torch.get_num_threads(),
                "allocator_retains": retained,
                "torch": torch.__version__,
            }
        )
        row = results[-1]
        print(
            f"{precision:>10}: bare step {bare:.3f} s ({bare_rate:.1f} frames/s); loop "
            f"{row['loop_frames_per_second']:.1f} frames/s = {row['loop_over_bare']:.0%} of "
            f"bare; time between steps {row['data_share']:.1%}",
            flush=True,
        )
        for devices in args.devices:
            measured = command_throughput(
                args.config, args.overrides, precision, args.steps, devices
            )
            step = config.train.batch_size * scored / measured["frames_per_second"]
            row[f"command_{devices}_processes_frames_per_second"] = measured["frames_per_second"]
            row[f"command_{devices}_processes_step_seconds"] = step
            print(
                f"{precision:>10}: seqflows train, {devices} process(es): "
                f"{measured['frames_per_second']:.1f} frames/s, {step:.3f} s per global step",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
