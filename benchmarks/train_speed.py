r"""``seqflows train`` beside the bare training step of the same model, for small models.

A small model (the default ``my_time_series`` 1-AF has 5,190 parameters) takes a few
milliseconds per step, so whatever the command does around the step (Lightning's hooks and
logging, the data loader, callbacks) shows. In each round, one after the other on the same
machine:

* **bare**: ``model.loss`` + ``backward`` + gradient clipping + Adam and learning-rate schedule
  steps, in a plain loop over the batches of the command's own data path (the configuration's
  training stream through a ``DataLoader`` with its ``StreamSampler``), in this process;
* **command**: ``python -m seqflows train`` on the same configuration, in a fresh process, with
  a log line every 50 steps and a validation and a checkpoint every 300 steps (the cadence of
  a 3000-step run); its steady-state time per step is the difference of the wall times of two
  logged ``train/loss`` values (TensorBoard stores when each was written) over their steps, so
  start-up is left out and the validations and checkpoints in between are counted.

The command takes ``train.steps_per_call`` optimizer steps per call of its Lightning task
(``auto``: up to 50 for a small vector model; the override ``train.steps_per_call=1`` measures
one step per call), which each round reports with the steps per second of both.

Both time steps ``--from`` to ``--to``, in wall time and in CPU time (the command's from a
run of ``--to + 1`` steps less one of ``--from + 1``: the start-up cancels, up to its own
variation, which is the noise of this figure). The ratio bare / command step time is the
share of full speed the command reaches (1 = no cost around the step); each round gives one,
and the median is reported, with the cores other processes kept busy during each measurement
(the machine is shared: a round with ``others`` well above 0 is noisy, the interleaving makes
the ratio fair).

    python benchmarks/train_speed.py my_time_series --series 200 100 3 data.length=20 \
        --rounds 3 --json benchmarks/results/train_speed_series.json
    python benchmarks/train_speed.py bouncing_balls_1af data.size=8 data.length=6 \
        model.hidden=8 --to 149 --rounds 1 --json benchmarks/results/train_speed_balls_tiny.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common import Usage, machine
from seqflows.app.checkpoints import build_model
from seqflows.app.config import Config, load_config
from seqflows.app.datasets import training_set
from seqflows.app.resolution import resolve_data, settings_in_effect
from seqflows.app.runtime import small_model_threads
from seqflows.data.samplers import StreamSampler

LOG_EVERY = 50
VAL_EVERY = 300  # and checkpoints: the cadence of a 3000-step run


def synthetic_series(folder: Path, sequences: int, steps: int, dims: int) -> Path:
    """A seeded random-walk-plus-sine series (N, T, D) in ``folder/series.npy``."""
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(size=(sequences, steps, dims)), axis=1) * 0.1
    series = (walk + np.sin(np.arange(steps) / 5.0)[None, :, None]).astype(np.float32)
    path = folder / "series.npy"
    np.save(path, series)
    return path


def bare_seconds_per_step(
    config: Config, event_shape: tuple[int, ...], first: int, last: int
) -> tuple[float, Usage]:
    """Seconds per step of steps ``first`` to ``last`` of a plain training loop (``config``: the
    settings in effect, those the data decided included)."""
    torch.manual_seed(config.train.seed)
    stream = training_set(config)
    batch_size = config.train.batch_size
    sampler = StreamSampler(batch_size, num_steps=last + 1, start_step=0, rank=0, world_size=1)
    loader = DataLoader(stream, batch_size=batch_size, sampler=sampler)
    model = build_model(config, event_shape).train()
    with small_model_threads(config, model, event_shape):  # as the command
        return _bare_loop(config, model, loader, first, last)


def _bare_loop(
    config: Config, model: torch.nn.Module, loader: DataLoader, first: int, last: int
) -> tuple[float, Usage]:
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train.max_steps)
    generator = torch.Generator().manual_seed(0)  # SLVM posterior samples
    limit = config.train.gradient_clip or float("inf")
    usage = Usage()
    for step, x in enumerate(loader):
        if step == first:
            usage.__enter__()
        loss = model.loss(x, generator).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=limit)
        optimizer.step()
        schedule.step()
        if step == last:
            usage.__exit__()
    return usage.wall / (last - first), usage


def cpu_seconds(usage: Usage) -> float:
    return usage.user + usage.system


def logged_wall_times(log_dir: Path) -> dict[int, float]:
    """When each ``train/loss`` of the run's TensorBoard log was written, by step; and, under
    the negative step -step, the run's own ``time/frames_per_second`` of the window ending at
    that step (StepTimer: the training steps and the time between them, validations left
    out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    times = {event.step: event.wall_time for event in events.Scalars("train/loss")}
    rates = {-event.step: event.value for event in events.Scalars("time/frames_per_second")}
    return {**times, **rates}


def steps_per_call(stderr: str) -> int:
    """The steps per call of the task that the command's start line names (1 if none)."""
    found = re.search(r"up to (\d+) steps per call", stderr)
    return int(found.group(1)) if found else 1


def run_command(
    config: str, overrides: list[str], max_steps: int, source: str | None = None
) -> tuple[dict[int, float], float, Usage, int]:
    """``seqflows train`` for ``max_steps`` steps: when each ``train/loss`` was logged, the CPU
    seconds of the process, the machine's load meanwhile, and the steps per call it took."""
    settings = [
        f"train.max_steps={max_steps}",
        f"train.log_every={LOG_EVERY}",
        f"train.val_every={VAL_EVERY}",
        f"train.checkpoint_every={VAL_EVERY}",
    ]
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "seqflows", "train", config, *overrides, *settings]
        command += ["--out", folder]
        environment = os.environ.copy()
        if source:  # another checkout's command (a before/after comparison)
            environment["PYTHONPATH"] = str(Path(source).resolve())
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with Usage() as usage:
            done = subprocess.run(command, capture_output=True, text=True, env=environment)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        times = logged_wall_times(Path(folder) / "logs" / "version_0")
    cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return times, cpu, usage, steps_per_call(done.stderr)


def command_seconds_per_step(
    config: str,
    overrides: list[str],
    first: int,
    last: int,
    frames_per_step: int,
    source: str | None = None,
) -> tuple[float, float, float, Usage, int]:
    """Wall and CPU seconds per step of ``seqflows train`` from step ``first`` to ``last``.

    Wall: between the logged steps ``first`` and ``last`` of one run. CPU: the difference of a
    run of ``last + 1`` steps and one of ``first + 1`` (start-up cancels; the CPU time does not
    count the time other processes held the cores, so it is the steadier of the two on a
    busy machine). Also the seconds per step that the run's own ``time/frames_per_second``
    gives over the same windows: the training loop without the validations and the
    checkpoints written after them. Last, the steps per call of the task (``train.steps_per_
    call``) the command took."""
    times, long_cpu, usage, per_call = run_command(config, overrides, last + 1, source)
    _, short_cpu, _, _ = run_command(config, overrides, first + 1, source)
    steps = last - first
    windows = [step for step in times if step < 0 and first < -step <= last]
    loop = statistics.mean(frames_per_step / times[step] for step in windows)
    wall = (times[last] - times[first]) / steps
    return wall, (long_cpu - short_cpu) / steps, loop, usage, per_call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument(
        "--series",
        nargs=3,
        type=int,
        metavar=("N", "T", "D"),
        help="train on a seeded synthetic series of N sequences of T steps of D values",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--from", dest="first", type=int, default=LOG_EVERY - 1)
    parser.add_argument("--to", dest="last", type=int, default=13 * LOG_EVERY - 1)
    parser.add_argument(
        "--command-source",
        metavar="SRC",
        help="run the command from this source folder (e.g. main's src, for before/after)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_intermixed_args(argv)
    if (args.first + 1) % LOG_EVERY or (args.last + 1) % LOG_EVERY or args.last <= args.first:
        parser.error(f"--from and --to must be logged steps (k * {LOG_EVERY} - 1), in order")
    with tempfile.TemporaryDirectory() as folder:
        overrides = list(args.overrides)
        if args.series:
            overrides.append(f"data.path={synthetic_series(Path(folder), *args.series)}")
        given = load_config(args.config, overrides)
        data = resolve_data(given)
        config = settings_in_effect(given, data).replace(
            train={"max_steps": args.last + LOG_EVERY}
        )
        model = build_model(config, data.event_shape)
        parameters = sum(parameter.numel() for parameter in model.parameters())
        frames = config.train.batch_size * (config.data.length - model.burn_in)  # scored
        rounds = []
        for index in range(args.rounds):
            bare, bare_usage = bare_seconds_per_step(
                config, data.event_shape, args.first, args.last
            )
            bare_cpu = cpu_seconds(bare_usage) / (args.last - args.first)
            command, command_cpu, loop, command_usage, per_call = command_seconds_per_step(
                args.config, overrides, args.first, args.last, frames, args.command_source
            )
            rounds.append(
                {
                    "steps_per_call": per_call,
                    "bare_seconds_per_step": bare,
                    "command_seconds_per_step": command,
                    "bare_steps_per_second": 1 / bare,
                    "command_steps_per_second": 1 / command,
                    "bare_over_command": bare / command,
                    "bare_cpu_seconds_per_step": bare_cpu,
                    "command_cpu_seconds_per_step": command_cpu,
                    "bare_over_command_cpu": bare_cpu / command_cpu,
                    "command_loop_seconds_per_step": loop,
                    "bare_over_command_loop": bare / loop,
                    "others_during_bare": bare_usage.other_cores,
                    "others_during_command": command_usage.other_cores,
                }
            )
            print(
                f"round {index + 1}: bare {bare * 1e3:.2f} ms/step ({1 / bare:.0f} steps/s), "
                f"seqflows train {command * 1e3:.2f} ms/step ({1 / command:.0f} steps/s, "
                f"{per_call} steps per call): "
                f"{bare / command:.2f} of the bare step (CPU time: {bare_cpu * 1e3:.2f} and "
                f"{command_cpu * 1e3:.2f} ms/step, {bare_cpu / command_cpu:.2f}; its loop "
                f"without validations {loop * 1e3:.2f} ms/step, {bare / loop:.2f}); other "
                f"processes kept {bare_usage.other_cores:.1f} and "
                f"{command_usage.other_cores:.1f} cores busy",
                flush=True,
            )
    ratio = statistics.median(row["bare_over_command"] for row in rounds)
    bare = statistics.median(row["bare_seconds_per_step"] for row in rounds)
    command = statistics.median(row["command_seconds_per_step"] for row in rounds)
    cpu_ratio = statistics.median(row["bare_over_command_cpu"] for row in rounds)
    loop_ratio = statistics.median(row["bare_over_command_loop"] for row in rounds)
    print(
        f"median: bare {1 / bare:.0f} steps/s, seqflows train {1 / command:.0f} steps/s, "
        f"ratio {ratio:.2f} (CPU time: {cpu_ratio:.2f}; loop without validations: "
        f"{loop_ratio:.2f})"
    )
    if args.json:
        result = {
            "config": args.config,
            "overrides": args.overrides,
            "series": args.series,
            "command_source": args.command_source,
            "environment": {
                key: os.environ[key] for key in ("OMP_NUM_THREADS",) if key in os.environ
            },
            "parameters": parameters,
            "batch_size": config.train.batch_size,
            "length": config.data.length,
            "steps": [args.first, args.last],
            "log_every": LOG_EVERY,
            "val_and_checkpoint_every": VAL_EVERY,
            "steps_per_call": sorted({row["steps_per_call"] for row in rounds}),
            "median_bare_steps_per_second": 1 / bare,
            "median_command_steps_per_second": 1 / command,
            "median_bare_over_command": ratio,
            "median_bare_over_command_cpu": cpu_ratio,
            "median_bare_over_command_loop": loop_ratio,
            "rounds": rounds,
            "load_average": os.getloadavg(),
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": machine(torch.get_num_threads()),
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
