r"""``python -m reproduction reproduce``: trains, evaluates and draws every experiment, resumably.

Each training runs as its own ``seqflows train ... --resume`` process, so an interrupted
reproduction continues where it stopped and a finished training is not started again; the
evaluations and figures are redone at every invocation. ``summary.json`` keeps the results of
earlier invocations unless they are redone, and the time of every invocation.

Progress goes to stderr: which run of how many starts, its training's steps and time left (read
from the lines it writes into its ``train.log``) every minute, and the time the whole
reproduction has left, extrapolated from the time elapsed per training step so far.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from seqflows.app.config import Config, load_config
from seqflows.app.interrupt import Interrupted, run_forwarding_signals, signal_name
from seqflows.app.progress import format_duration, seconds_left
from seqflows.app.runs import resume_changes
from seqflows.atomic import write_text_atomically
from seqflows.data import mnist
from seqflows.errors import ConfigError, TrainingError
from seqflows.saving import read_checkpoint

from .experiments import (
    BOUNCING_BALLS_SCALE,
    CONFIGS,
    EVALUATED_TRAIN_SEQUENCES,
    LABELS,
    MOVING_MNIST_SCALE,
    PAPER,
    SAME_FRAMES,
    STOPPED_IMPROVING,
    STUDIES,
    Experiment,
    experiments,
    parameter_counts,
    render_moving_mnist,
    study_experiments,
)
from .report import comparison_figures, format_tables

__all__ = [
    "DATASETS",
    "DEFAULT_MODELS",
    "reproduce",
    "validation_progress",
]

DEFAULT_MODELS = ("1af", "2af", "slvm", "slvm_1af")  # SLVM w/ 2-AF: --models to add it
DATASETS = ("moving_mnist", "bouncing_balls", "controlled_balls")


def reproduce(
    out: str | Path = "results",
    runs: str | Path = "runs/reproduce",
    digits: str | Path | None = None,
    root: str | Path = "data",
    models: Sequence[str] = DEFAULT_MODELS,
    datasets: Sequence[str] = DATASETS,
    studies: Sequence[str] = tuple(STUDIES),
    overrides: Sequence[str] = (),
    sequences: int | None = None,
    motion: bool = True,
) -> dict[str, Any]:
    r"""Trains, evaluates and draws the reduced-scale reproduction (see :mod:`.experiments`).

    Arguments:
        out: Folder of the results (JSON, tables.md, figures), e.g. the repository's results/.
        runs: Folder of the runs (checkpoints, logs) and of the rendered Moving MNIST set.
        digits: The MNIST test images t10k-images-idx3-ubyte.gz (None: downloaded into
            ``root``/mnist and MD5-checked).
        root: Data root for the download.
        models: Models of the main reproduction (``1af``, ``2af``, ``slvm``, ``slvm_1af``,
            ``slvm_2af``).
        datasets: ``moving_mnist``, ``bouncing_balls`` (their main runs and studies) and
            ``controlled_balls`` (studies only).
        studies: Studies to run (:data:`~.experiments.STUDIES`), each on its dataset (when
            ``datasets`` holds it).
        overrides: ``section.key=value`` for every run (a quick try; the published results use
            none).
        sequences: Evaluate only the first N sequences of each split (None: all 256).
        motion: Run the motivating example of Sec. 3.1 too.

    Returns:
        The summary (also written to ``out``/summary.json, and its tables to tables.md).
    """
    models, datasets, studies = list(models), list(datasets), list(studies)
    for name, chosen, known in (
        ("models", models, LABELS),
        ("datasets", datasets, DATASETS),
        ("studies", studies, STUDIES),
    ):
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise ConfigError(f"{name}: unknown {unknown}; choose from {list(known)}")
    out, runs_root, extra = Path(out), Path(runs), list(overrides)
    started = time.perf_counter()
    say = _reporter()
    array = runs_root / "data" / "moving_mnist_32.npy"
    if "moving_mnist" in datasets:
        digits = digits or _download_digits(Path(root))
        say(f"rendering Moving MNIST 32x32 from {digits} into {array}")
        render_moving_mnist(digits, array)
    previous = out / "summary.json"  # runs of an earlier invocation stay unless redone
    earlier = json.loads(previous.read_text()) if previous.is_file() else {}
    summary: dict[str, Any] = {
        "runs": _current(earlier.get("runs", {})),
        "studies": {
            name: {variant: _current(runs) for variant, runs in variants.items()}
            for name, variants in earlier.get("studies", {}).items()
        },
        "machine": _machine(),
    }
    if "motion" in earlier:  # kept unless redone below
        summary["motion"] = earlier["motion"]
    summary["overrides"] = {
        "moving_mnist": list(MOVING_MNIST_SCALE),
        "bouncing_balls": list(BOUNCING_BALLS_SCALE),
        "same_frames": list(SAME_FRAMES),
        "extra": extra,
    }
    summary["paper"] = PAPER
    summary["sequences"] = sequences
    summary["parameters"] = parameter_counts()

    def write_summary() -> None:
        """Write what is done so far (after every run: an interrupted invocation keeps the
        results of the runs it finished, and the next one takes them instead of redoing them)."""
        summary["seconds"] = round(time.perf_counter() - started, 1)  # this invocation
        # every invocation's wall-clock time, oldest first (a resumed reproduction has several)
        summary["invocations"] = _invocations(earlier) + [
            {
                "seconds": summary["seconds"],
                "models": models,
                "datasets": datasets,
                "studies": studies,
                "extra": extra,
            }
        ]
        write_text_atomically(
            out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n"
        )
        write_text_atomically(out / "tables.md", format_tables(summary))

    # The plan first: every run this invocation trains (or finds trained) and evaluates, with
    # the steps it has left, for the progress (runs done, time left).
    mains = [run for run in experiments(array, models) if run.dataset in datasets]
    evaluated = {run.name for run in mains}  # by this invocation
    # a study's run identical to a main run that an earlier invocation evaluated with the same
    # overrides takes that evaluation instead of doing it again
    same_protocol = earlier.get("sequences") == sequences  # absent: all sequences
    # and a study's run identical to one that an earlier invocation evaluated in any study (the
    # same overrides, e.g. the affine runs of `transform_seeds` are the 1-AF runs of `seeds`)
    # takes that result: neither its training nor its evaluation is repeated
    earlier_studies: dict[tuple[str, ...], dict[str, Any]] = {}
    if earlier.get("overrides", {}).get("extra", []) == extra and same_protocol:
        evaluated |= set(summary["runs"])
        earlier_studies = _study_results(summary["studies"])
    study_runs = [
        (name, run, _main_equivalent(run, array, extra))
        for name in studies
        if STUDIES[name].dataset in datasets
        for run in study_experiments(name, array)
    ]

    def earlier_result(name: str, run: Experiment) -> dict[str, Any] | None:
        result = earlier_studies.get(
            _run_key(run.config.relative_to(CONFIGS.parent), run.overrides)
        )
        if result is None or not all(key in result for key in STUDIES[name].evaluations):
            return None
        return result

    planned = [(run, runs_root / run.name) for run in mains] + [
        (run, runs_root / (run if main is None else main).name)
        for name, run, main in study_runs
        if (main is None or main.name not in evaluated) and earlier_result(name, run) is None
    ]
    overall = _Overall([_steps_left(run, run_dir, extra) for run, run_dir in planned])
    for experiment in mains:
        run_dir = runs_root / experiment.name
        timing = _train(experiment, run_dir, extra, overall.start(experiment, say))
        say(f"{overall.label}: evaluating and drawing")
        evaluations = ["test", "test_same_frames"]
        if experiment.dataset == "moving_mnist":
            evaluations.append("train")
        result = _evaluate(
            experiment, run_dir, out / experiment.name, sequences, timing, evaluations
        )
        _draw(run_dir, out / experiment.name)
        summary["runs"][experiment.name] = result
        overall.finish()
        write_summary()
    for name, experiment, main in study_runs:
        study = summary["studies"].setdefault(name, {})
        variant = experiment.study.split("/", 1)[1]
        if main is not None and main.name in evaluated:
            say(f"{experiment.name}: the main run {main.name}")
            study.setdefault(variant, {})[experiment.model] = summary["runs"][main.name]
            continue
        reused = earlier_result(name, experiment)
        if reused is not None:
            say(f"{experiment.name}: the same run as an earlier study's")
            study.setdefault(variant, {})[experiment.model] = reused
            continue
        run_dir = runs_root / (experiment if main is None else main).name
        timing = _train(experiment, run_dir, extra, overall.start(experiment, say, run_dir))
        say(f"{overall.label}: evaluating")
        result = _evaluate(
            experiment,
            run_dir,
            out / experiment.name,
            sequences,
            timing,
            STUDIES[name].evaluations,
        )
        study.setdefault(variant, {})[experiment.model] = result
        overall.finish()
        write_summary()
    if motion:
        from .motion import run_and_write

        say("motivating example (Sec. 3.1)")
        summary["motion"] = run_and_write(out / "motion")
    for dataset in sorted({run.dataset for run in mains}, key=datasets.index):
        comparison_figures(summary["runs"], dataset, runs_root, out / dataset)
    write_summary()
    say(f"done in {summary['seconds'] / 60:.1f} min: {out / 'tables.md'}")
    return summary


def _main_equivalent(experiment: Experiment, array: Path, extra: list[str]) -> Experiment | None:
    r"""The main reproduction's run that a study's run is identical to (the same resolved
    configuration but for its name), so that it is trained once; None if there is none."""
    mains = [
        run for run in experiments(array, [experiment.model]) if run.dataset == experiment.dataset
    ]
    if not mains:  # a dataset of studies only
        return None
    (main,) = mains

    def resolved(run: Experiment) -> dict[str, Any]:
        values = load_config(run.config, [*run.overrides, *extra]).to_dict()
        values.pop("name")
        return values

    return main if resolved(main) == resolved(experiment) else None


def _run_key(config: str | Path, overrides: Sequence[str]) -> tuple[str, ...]:
    """What makes two runs the same run: the configuration they start from and its overrides."""
    return (Path(config).as_posix(), *overrides)


def _study_results(studies: Mapping[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The study results of an earlier invocation by their runs' configuration and overrides."""
    return {
        _run_key(result["config"], result["overrides"]): result
        for variants in studies.values()
        for runs in variants.values()
        for result in runs.values()
    }


def _current(runs: Mapping[str, Any]) -> dict[str, Any]:
    """The results of an earlier invocation that this version reports (older ones are left
    out: they lack the paper-scale values)."""
    return {name: run for name, run in runs.items() if "nats_per_dim_8bit" in run.get("test", {})}


def _invocations(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The invocations recorded in an earlier summary (one per ``seconds`` when unlisted)."""
    if "invocations" in summary:
        return list(summary["invocations"])
    return [{"seconds": summary["seconds"]}] if "seconds" in summary else []


# A progress line of ``seqflows train`` in a log (:class:`~seqflows.app.callbacks.ProgressLines`).
TRAIN_PROGRESS = re.compile(r"train: (\d+)/(\d+) steps \(\d+%\), (.*)")


class _Overall:
    r"""The progress of a reproduction: the runs done of those planned, and the time left,
    extrapolated from the time elapsed per training step so far (evaluations included).

    Arguments:
        steps_left: The training steps each planned run has left (0: trained already).
        interval: Seconds between two reports of a training's progress.
    """

    def __init__(self, steps_left: Sequence[int], interval: float = 60.0) -> None:
        self.steps_left = list(steps_left)
        self.interval = interval
        self.started = time.perf_counter()
        self.runs_done = 0
        self.steps_done = 0  # of the runs done
        self.current_steps = 0  # of the run in progress
        self.label = ""

    def start(
        self, experiment: Experiment, say: Callable[[str], None], run_dir: Path | None = None
    ) -> Callable[[str], None]:
        r"""Says which run starts and returns what to call with each line of its training,
        which reports the training's progress every ``interval`` seconds and at its end."""
        index, count = self.runs_done + 1, len(self.steps_left)
        self.label = f"{index}/{count} {experiment.name}"
        steps = self.steps_left[self.runs_done]
        where = f" in {run_dir}" if run_dir is not None else ""
        to_go = f"{steps} steps to go" if steps else "trained already"
        say(f"{self.label}: training ({experiment.label}){where}, {to_go}; {self.describe()}")
        reported = [time.perf_counter()]
        start_step: list[int] = []

        def on_line(line: str) -> None:
            match = TRAIN_PROGRESS.match(line.strip())
            if match is None:
                return
            step, total = int(match[1]), int(match[2])
            if not start_step:
                start_step.append(total - steps)
            self.current_steps = step - start_step[0]
            now = time.perf_counter()
            if now - reported[0] >= self.interval or step == total:
                reported[0] = now
                say(f"{self.label}: step {step}/{total}, {match[3]}; {self.describe()}")

        return on_line

    def finish(self) -> None:
        """The run in progress is trained and evaluated."""
        self.steps_done += self.steps_left[self.runs_done]
        self.current_steps = 0
        self.runs_done += 1

    def seconds_left(self) -> float | None:
        """The seconds the whole reproduction has left (None until some work is done)."""
        elapsed = time.perf_counter() - self.started
        total = sum(self.steps_left)
        if total:
            return seconds_left(self.steps_done + self.current_steps, total, elapsed)
        return seconds_left(self.runs_done, len(self.steps_left), elapsed)

    def describe(self) -> str:
        """``overall: 3/12 runs done, 1:02:05 left`` (no time left until some work is done, nor
        once every step is trained and only evaluations are left)."""
        left = self.seconds_left()
        text = f"overall: {self.runs_done}/{len(self.steps_left)} runs done"
        return text + (f", {format_duration(left)} left" if left else "")


def _steps_left(experiment: Experiment, run_dir: Path, extra: list[str]) -> int:
    """The training steps the run of ``experiment`` in ``run_dir`` has left."""
    config = load_config(experiment.config, [*experiment.overrides, *extra])
    return max(config.train.max_steps - _trained_steps(run_dir, config), 0)


def _reporter() -> Callable[[str], None]:
    start = time.perf_counter()

    def say(message: str) -> None:
        minutes = (time.perf_counter() - start) / 60
        print(f"[reproduce {minutes:5.1f} min] {message}", file=sys.stderr, flush=True)

    return say


def _download_digits(root: Path) -> Path:
    name = "t10k-images-idx3-ubyte.gz"
    return mnist.download_mnist(root / "mnist", files=(name,))[name]


def _train(
    experiment: Experiment,
    run_dir: Path,
    extra: list[str],
    on_line: Callable[[str], None] | None = None,
) -> dict[str, float]:
    r"""Runs (or continues) ``seqflows train`` in its own process, unless the run has reached
    ``train.max_steps`` already; returns its accumulated time.

    The process writes into ``RUN/train.log`` (its progress a line every 15 s), and each line
    goes to ``on_line`` too.

    The seconds spent training are summed over interrupted invocations in
    ``RUN/reproduce_timing.json``, so the reported time is that of the whole run.
    """
    timing_file = run_dir / "reproduce_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {"seconds": 0.0}
    config = load_config(experiment.config, [*experiment.overrides, *extra])
    if _trained_steps(run_dir, config) >= config.train.max_steps:
        return timing  # finished: no process, no time added
    command = [
        sys.executable,
        "-m",
        "seqflows",
        "train",
        str(experiment.config),
        *experiment.overrides,
        *extra,
        "--out",
        str(run_dir),
        "--resume",
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir / "train.log", "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        status = run_forwarding_signals(command, stdout=log, on_line=on_line)
    interrupted = 128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT
    if status in interrupted:
        raise Interrupted(
            abs(status) % 128,
            f"training {experiment.name} was stopped by {signal_name(abs(status) % 128)} "
            f"(see {run_dir / 'train.log'}): run the same command again to continue",
        )
    if status != 0:
        last_line = _last_line(run_dir / "train.log")
        raise TrainingError(
            f"training {experiment.name} failed (exit {status}"
            + (f": {last_line}" if last_line else "")
            + f"); see {run_dir / 'train.log'}"
        )
    timing["seconds"] = round(timing["seconds"] + time.perf_counter() - start, 1)
    write_text_atomically(timing_file, json.dumps(timing, allow_nan=False) + "\n")
    return timing


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (the one-line error of a failed command), shortened."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[-1].startswith("$ "):
        return ""
    return lines[-1] if len(lines[-1]) <= 300 else lines[-1][:297] + "..."


def _trained_steps(run_dir: Path, config: Config) -> int:
    r"""Optimizer steps of the run's last checkpoint (0 when there is none).

    Raises:
        ConfigError: The run was trained with settings that ``config`` changes and that a
            resume could not change (another model, data, seed, ...): it is not this
            experiment's run (:func:`~seqflows.app.runs.resume_changes`).
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return 0
    checkpoint = read_checkpoint(last)
    info = checkpoint["seqflows"]
    shape = list(info["event_shape"])
    resume_changes(info["config"], config, shape, shape, f"{last} (reproduce: {run_dir})")
    return int(checkpoint["global_step"])


EVALUATION_KEYS = (
    "nats_per_dim",
    "nats_per_dim_8bit",
    "elbo_nats_per_dim",
    "elbo_nats_per_dim_8bit",
    "iwae_nats_per_dim",
    "iwae_nats_per_dim_8bit",
    "iwae_samples",
    "corr_x",
    "corr_noise",
    "sequences",
    "frames_scored",
)


def _evaluate(
    experiment: Experiment,
    run_dir: Path,
    out: Path,
    sequences: int | None,
    timing: dict[str, float],
    evaluations: Sequence[str],
) -> dict[str, Any]:
    r"""Evaluates the selected checkpoint of a run.

    ``evaluations``: ``test`` (the paper's protocol of the model's configuration),
    ``test_same_frames`` (:data:`SAME_FRAMES`, one protocol for every model) and ``train``
    (fixed crops of training sequences, Table 3). Writes one JSON per evaluation into ``out``
    and the run's training curves (``metrics.csv``, every session of a resumed run).
    """
    import torch

    from seqflows.app.checkpoints import model_from_checkpoint
    from seqflows.app.datasets import evaluation_set
    from seqflows.app.evaluation import evaluate_model
    from seqflows.app.metrics_csv import read_run_metrics, write_metrics_csv

    checkpoint = _selected_checkpoint(run_dir)
    model, config, stored = model_from_checkpoint(checkpoint)
    result: dict[str, Any] = {
        "model": experiment.label,
        "dataset": experiment.dataset,
        "config": str(experiment.config.relative_to(CONFIGS.parent)),
        "overrides": list(experiment.overrides),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "steps": config.train.max_steps,
        "evaluated_checkpoint": checkpoint.name,
        "evaluated_step": int(stored.get("global_step", -1)),
        "batch_size": config.train.batch_size,
        "train_seconds": timing["seconds"],
        "threads": torch.get_num_threads(),
    }
    out.mkdir(parents=True, exist_ok=True)
    for evaluation_name in evaluations:
        split = "train" if evaluation_name == "train" else "test"
        protocol = SAME_FRAMES if evaluation_name == "test_same_frames" else ()
        settings = Config.from_dict(config.to_dict(), protocol)
        count = sequences or (EVALUATED_TRAIN_SEQUENCES if split == "train" else None)
        evaluation = evaluate_model(
            model,
            evaluation_set(
                settings, split, count=count, conditions=bool(settings.data.conditions)
            ),
            settings,
            split,
            batch_size=settings.evaluate.batch_size,
            iwae_samples=settings.evaluate.iwae_samples,
            iwae_chunk=settings.evaluate.iwae_chunk,
            scored_frames=settings.evaluate.scored_frames,
            progress=f"{experiment.name}: evaluate {evaluation_name}",
        )
        evaluation["checkpoint"] = str(checkpoint)
        text = json.dumps(evaluation, indent=2, allow_nan=False) + "\n"
        write_text_atomically(out / f"{evaluation_name}.json", text)
        result[evaluation_name] = {key: evaluation.get(key) for key in EVALUATION_KEYS}
    curves = read_run_metrics(run_dir)  # every session of the run: resumes included
    if curves:
        write_metrics_csv(curves, out / "metrics.csv")
        result["validation"] = validation_progress(out / "metrics.csv", config.train.max_steps)
    return result


def validation_progress(metrics: Path, max_steps: int) -> dict[str, Any]:
    r"""Whether a run's validation score had stopped improving.

    Returns the best and last validation nats/dim and the gain of the last quarter of the run
    (best after 3/4 of the steps minus best before; None without validations on both sides),
    and ``stopped_improving``: that gain is below :data:`STOPPED_IMPROVING`.
    """
    from seqflows.app.metrics_csv import read_metrics_csv

    points = [
        (step, value) for step, value in read_metrics_csv(metrics).get("val/nats_per_dim", [])
    ]
    points = [(step, value) for step, value in points if math.isfinite(value)]
    if not points:
        return {"best": None, "last": None, "gain_last_quarter": None, "stopped_improving": None}
    early = [value for step, value in points if step <= 0.75 * max_steps]
    late = [value for step, value in points if step > 0.75 * max_steps]
    gain = max(late) - max(early) if early and late else None
    return {
        "best": max(value for _, value in points),
        "last": points[-1][1],
        "gain_last_quarter": gain,
        "stopped_improving": None if gain is None else gain < STOPPED_IMPROVING,
    }


def _draw(run_dir: Path, out: Path) -> None:
    r"""Fig. 4 / Fig. 9 rows, samples and training curves of the selected checkpoint."""
    from seqflows.app.checkpoints import model_from_checkpoint
    from seqflows.app.commands import sample, visualize

    checkpoint = _selected_checkpoint(run_dir)
    model, _, _ = model_from_checkpoint(checkpoint)
    figures = run_dir / "figures"
    visualize(checkpoint, figures)
    sample(checkpoint, figures, num=4, length=10, context=model.burn_in, device="cpu")
    for name in ("flow_rows.png", "samples.png", "curves.png"):
        if (figures / name).is_file():
            shutil.copyfile(figures / name, out / name)


def _selected_checkpoint(run_dir: Path) -> Path:
    r"""The checkpoint with the best validation score (validation sequences, never the test
    ones), else the last one: short runs at a large learning rate end wherever the last step
    left them, several hundredths of a nat from their best."""
    folder = run_dir / "checkpoints"
    best = sorted(folder.glob("best*.ckpt"), key=lambda path: path.stat().st_mtime)
    return best[-1] if best else folder / "last.ckpt"


def _machine() -> dict[str, Any]:
    import platform

    import torch

    return {
        "processor": _cpu_name() or platform.processor(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
