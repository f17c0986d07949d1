"""A user's own data: what is read from it, real-valued series, and scores to take away.

Issue 13, parts 1 and 3: training on a video array or a float (N, T, D) series with nothing but
the data path and a step count; settings checked against the data before Lightning starts; the
standardisation of real series stored with the model and undone in the reported likelihoods
(a known answer: the same series in units 10 times smaller scores T' D log 10 less); per-frame
scores written as CSV and .npy with the sequences' ids; the README's "Your own data" commands.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import seqflows
from seqflows.app.cli import main
from seqflows.app.config import Config, ConfigError, DataConfig, load_config
from seqflows.app.evaluation import SequenceScores
from seqflows.app.resolution import inferred_settings, resolve_data, settings_in_effect
from seqflows.app.sources import dataset_of, held_out_sequences
from seqflows.data import ArraySource, FixedSequences, Preprocessing, convert_series
from seqflows.data.scaling import series_statistics
from seqflows.data.series import series_range
from seqflows.data.store import StoreSource, read_manifest

from helpers import TINY_RUN, captured_figures

README = Path(__file__).resolve().parents[1] / "README.md"
lightning = pytest.importorskip("lightning")


def video_array(path: Path, count: int = 12, frames: int = 8, size: int = 8) -> Path:
    """uint8 (N, T, H, W): a bright square moving right, one pixel per frame."""
    video = np.zeros((count, frames, size, size), np.uint8)
    for n in range(count):
        for t in range(frames):
            column = (n + t) % (size - 2)
            video[n, t, 2:5, column : column + 2] = 200 + n
    np.save(path, video)
    return path


def float_series(count: int = 20, frames: int = 12, seed: int = 0) -> np.ndarray:
    """float64 (N, T, 3): random walks around 1000, 5 and -300, in very different units."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(count, frames, 3)) * [40.0, 0.2, 7.0]
    return np.cumsum(steps, axis=1) + [1000.0, 5.0, -300.0]


def train(capsys, *arguments: str) -> str:
    """``seqflows train`` of 2 steps: what it says (stderr; stdout holds its summary)."""
    status = main(["train", *arguments, "--max-steps", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.err


def run_json(capsys, *arguments: str) -> dict:
    status = main(list(arguments))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


# Training on a video array with its path and a step count only


def test_a_video_array_trains_evaluates_and_samples_given_only_its_path(tmp_path, capsys):
    path = video_array(tmp_path / "videos.npy")
    run = tmp_path / "run"
    out = train(capsys, "my_video_array", f"data.path={path}", "--out", str(run))
    said = out.splitlines()[0]
    assert said.startswith("seqflows: read from the data: ")
    for setting in (
        "data.channels=1",
        "data.size=8",
        "data.length=8",  # 13 by default; the sequences have 8 frames
        "data.validation_sequences=1",  # 10% of 12, rounded
        "data.test_sequences=1",
    ):
        assert setting in said, said
    assert out.splitlines()[1].startswith("seqflows: training 1-AF")  # then Lightning
    stored = yaml.safe_load((run / "config.yaml").read_text())["data"]  # what resume reads
    assert (stored["channels"], stored["size"], stored["length"]) == (1, 8, 8)
    assert (stored["validation_sequences"], stored["test_sequences"]) == (1, 1)
    assert stored["noise"] == "gaussian" and stored["mean"] is None
    checkpoint = str(run / "checkpoints" / "best.ckpt")

    result = run_json(capsys, "evaluate", checkpoint, "--json")
    assert result["sequences"] == 1 and result["frames_scored"] == 8 - 3
    assert result["protocol"]["units"].startswith("nats per pixel per channel")
    assert result["nats_per_dim_8bit"] == pytest.approx(result["nats_per_dim"] - math.log(256))

    sampled = run_json(capsys, "sample", checkpoint, "--out", str(tmp_path / "s"))
    tensors = torch.load(tmp_path / "s" / "samples.pt")
    # 4 samples from the 1 test sequence's 3 context frames; 5 real frames follow them there
    assert tensors["predicted"].shape == (4, 10, 1, 8, 8)
    assert tensors["context"].shape == (4, 3, 1, 8, 8) and tensors["future"].shape[1] == 5
    assert sampled["units"] == "frames scaled to [0, 1]"
    assert (tmp_path / "s" / "samples.png").stat().st_size > 1000
    predicted = run_json(
        capsys,
        "predict",
        checkpoint,
        "--out",
        str(tmp_path / "p"),
        "--length",
        "5",
        "--samples",
        "3",
        "--json",
    )
    assert predicted["time_steps"] == [3, 4, 5, 6, 7] and predicted["protocol"]["sequences"] == 1
    assert 0 <= predicted["mean_prediction"]["mean"]["mse"] <= 1  # frames in [0, 1]
    assert predicted["mean_prediction"]["mean"]["psnr"] > 0

    # Per-frame scores of every sequence of the array, with their index in the file.
    scores = tmp_path / "scores"
    result = run_json(
        capsys, "evaluate", checkpoint, "--split", "all", "--scores", str(scores), "--json"
    )
    sequences = read_csv(scores / "sequences.csv")
    assert [row["array_index"] for row in sequences] == [str(n) for n in range(12)]
    frames = read_csv(scores / "frames.csv")
    assert len(frames) == 12 * 5 and {row["frame"] for row in frames} == {"3", "4", "5", "6", "7"}
    per_frame, per_sequence = np.load(scores / "frames.npy"), np.load(scores / "sequences.npy")
    assert per_frame.shape == (12, 5)
    np.testing.assert_allclose(per_frame.sum(axis=1), per_sequence)
    assert per_sequence.sum() == pytest.approx(result["log_likelihood_sum"])
    assert float(sequences[4]["log_likelihood"]) == pytest.approx(per_sequence[4])
    assert float(frames[7]["log_likelihood"]) == pytest.approx(per_frame[1, 2])  # row-major
    assert result["scores"]["files"]["frames_csv"] == str(scores / "frames.csv")


def test_settings_are_checked_against_the_data_before_lightning_starts(tmp_path, capsys):
    path = video_array(tmp_path / "videos.npy")
    run = tmp_path / "run"

    def refused(*overrides: str) -> str:
        status = main(["train", "data.dataset=array", f"data.path={path}", *overrides])
        captured = capsys.readouterr()
        assert status == 2 and captured.err.count("\n") == 1, captured.err
        assert "GPU available" not in captured.err + captured.out  # Lightning never started
        assert not (run / "logs").exists() and not (run / "config.yaml").exists()
        return captured.err

    out = ("--out", str(run))
    error = refused("data.size=8", "data.length=20", "model.hidden=4", *out)
    assert f"{path} [train]: data.length=20 is longer than the shortest training" in error
    assert "set data.length <= 8 or leave it unset" in error
    error = refused("data.size=16", *out)
    assert "frames have shape (C, H, W) = (1, 8, 8) but data.size=16" in error
    error = refused("data.length=3", *out)  # the 1-AF's 3 context frames: nothing to score
    assert "data.length=3 leaves no frame to score" in error
    error = refused("data.test_sequences=6", "data.validation_sequences=6", *out)
    assert "12 sequences cannot hold 6 test and 6 validation" in error
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((5, 3, 8, 8), np.uint8))
    error = refused(f"data.path={short}", *out)
    assert "sequences of 3 frames are too short for this model" in error
    error = refused("data.eval_length=9", *out)
    assert "[validation]: data.eval_length=9 is longer than the shortest sequence" in error


def test_what_is_read_from_the_data_and_what_the_user_says(tmp_path):
    path = video_array(tmp_path / "videos.npy", count=30, frames=16, size=8)
    given = Config.from_dict({}, [f"data.path={path}", "data.test_sequences=5"])
    resolved = resolve_data(given)
    assert (resolved.dataset, resolved.event_shape, resolved.length) == ("array", (1, 8, 8), 13)
    assert (resolved.validation_sequences, resolved.test_sequences) == (3, 5)  # 10% of 30; given
    assert (resolved.evaluation_length, resolved.source) == (13, f"{path} [train]")
    assert given.data.length is None and given.data.dataset is None  # the config stays as given
    assert inferred_settings(given, resolved) == {
        "data.dataset": "array",
        "data.channels": 1,
        "data.size": 8,
        "data.length": 13,
        "data.noise": "gaussian",
        "data.validation_sequences": 3,
    }
    recorded = settings_in_effect(given, resolved)  # what config.yaml and checkpoints hold
    assert recorded.data == dataclasses.replace(
        given.data,
        dataset="array",
        channels=1,
        size=8,
        length=13,
        noise="gaussian",
        validation_sequences=3,
    )
    assert resolve_data(recorded) == resolved  # recorded values stay
    assert inferred_settings(recorded, resolved) == {}  # nothing left to read
    explicit = resolve_data(given.replace(data={"length": 16, "noise": "uniform"}))
    assert (explicit.length, explicit.noise) == (16, "uniform")
    # The rendered datasets keep the numbers they always had.
    balls = resolve_data(Config.from_dict({}))
    assert (balls.dataset, balls.event_shape, balls.length) == ("bouncing_balls", (1, 32, 32), 13)
    assert (balls.validation_sequences, balls.test_sequences) == (256, 512)
    assert inferred_settings(Config.from_dict({}), balls) == {}  # defaults, not read
    standard = tmp_path / "mnist_test_seq.npy"  # its shape, sparse on disk
    np.lib.format.open_memmap(standard, "w+", np.uint8, (20, 10000, 64, 64)).flush()
    mnist = resolve_data(
        Config.from_dict({}, ["data.dataset=moving_mnist_file", f"data.path={standard}"])
    )
    assert (mnist.validation_sequences, mnist.event_shape) == (256, (1, 64, 64))
    # Held-out shares: 10% each, at least 1, at most the fixed numbers of larger data.
    for count, expected in ((12, (1, 1)), (100, (10, 10)), (3000, (256, 300)), (9000, (256, 512))):
        assert held_out_sequences(count, DataConfig()) == expected
    assert dataset_of(DataConfig(path=str(path))) == "array"
    assert dataset_of(DataConfig(path=str(tmp_path))) == "store"
    assert dataset_of(DataConfig()) == "bouncing_balls"
    with pytest.raises(ConfigError, match="cannot tell which dataset"):
        dataset_of(DataConfig(path="clips.mp4"))
    with pytest.raises(ConfigError, match="is a folder, not an array file.*data.dataset=store"):
        resolve_data(Config.from_dict({}, ["data.dataset=array", f"data.path={tmp_path}"]))


def test_training_reads_the_data_once_and_passes_it_down_beside_the_given_config(
    tmp_path, monkeypatch
):
    """One-way data flow: train resolves the data once; the task gets the configuration as
    given and what was read beside it, and builds its model with the data's A; what the run
    records is the settings in effect, the same in config.yaml and the checkpoint."""
    import seqflows.app.train as training
    from seqflows.app.checkpoints import model_from_checkpoint
    from seqflows.app.task import SequenceTask

    frames = np.random.default_rng(0).integers(0, 256, (12, 8, 1, 8, 8), dtype=np.uint8)
    steps = np.random.default_rng(1).normal(size=(12, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "videos.npz", frames=frames, action=steps)
    given = Config.from_dict(
        {},
        [f"data.path={tmp_path / 'videos.npz'}", "data.conditions=[action]", "model.window=1"]
        + [*TINY_RUN, "train.max_steps=2", "data.validation_sequences=2"],
    )
    reads, built = [], []
    resolve = training.resolve_data
    monkeypatch.setattr(
        training,
        "resolve_data",
        lambda config, split=None: reads.append(config) or resolve(config),
    )
    build = SequenceTask.__init__

    def spy(task, config, event_shape, data=None):
        built.append((config, data))
        build(task, config, event_shape, data)

    monkeypatch.setattr(SequenceTask, "__init__", spy)
    training.train(given, tmp_path / "run", progress=False)
    assert len(reads) == 1 and reads[0] is given  # read once, from the configuration as given
    [(config, data)] = built
    assert config is given and config.model.condition_dim == 0 and config.data.length is None
    assert data == resolve_data(given) and (data.condition_dim, data.length) == (3, 8)
    recorded = settings_in_effect(given, data).to_dict()
    assert recorded["model"]["condition_dim"] == 3 and recorded["data"]["length"] == 8
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == recorded
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["seqflows"]["config"] == recorded
    model, stored, _ = model_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert model.condition_dim == 3 and stored.to_dict() == recorded


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["model.window=2", "model.num_transforms=2"],
        ["model.context=padded"],
        ["model.type=slvm"],
        ["model.type=slvm", "model.burn_in=0"],
        ["model.type=slvm", "model.num_transforms=1", "model.window=2"],
    ],
)
def test_the_context_read_from_the_configuration_is_the_models(overrides):
    from seqflows.app.checkpoints import build_model

    config = Config.from_dict({}, ["model.hidden=4", *overrides])
    model = build_model(config, (3,))
    assert config.model.burn_in_frames == model.burn_in


# Real-valued series


def test_a_float_series_trains_in_its_own_units_given_only_its_path(tmp_path, capsys):
    series = float_series()
    np.save(tmp_path / "series.npy", series)
    np.save(tmp_path / "series_x10.npy", 10 * series)  # the same series, units 10x smaller
    runs = {}
    for name in ("series", "series_x10"):
        runs[name] = run = tmp_path / name
        data = f"data.path={tmp_path / f'{name}.npy'}"
        said = train(capsys, "my_time_series", data, "--out", str(run)).splitlines()[0]
        assert "data.length=12" in said and "data.noise=none" in said
        assert "data.mean=3 values fitted on the training split" in said
    train_part = series[: 20 - 2 - 2]  # the last 2 are test, the 2 before validation
    stored = yaml.safe_load((runs["series"] / "config.yaml").read_text())["data"]
    np.testing.assert_allclose(stored["mean"], train_part.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(stored["std"], train_part.std(axis=(0, 1)), rtol=1e-12)

    # The standardisation goes with the model: in the checkpoint and in a saved folder.
    checkpoint = runs["series"] / "checkpoints" / "last.ckpt"
    model = seqflows.load(checkpoint)
    assert model.preprocessing.mean == pytest.approx(stored["mean"], rel=1e-12)
    info = torch.load(checkpoint, weights_only=True)["seqflows"]
    assert info["preprocessing"]["std"] == pytest.approx(stored["std"], rel=1e-12)
    saved = seqflows.load(model.save_pretrained(tmp_path / "saved"))
    assert saved.preprocessing == model.preprocessing
    x = torch.from_numpy(series[18:])  # the test sequences, in their own units
    with torch.no_grad():
        log_p = model.log_prob(model.preprocessing(x)) + model.preprocessing.log_abs_det

    results = {
        name: run_json(capsys, "evaluate", str(run / "checkpoints" / "last.ckpt"), "--json")
        for name, run in runs.items()
    }
    result = results["series"]
    assert result["log_likelihood_sum"] == pytest.approx(float(log_p.sum()), rel=1e-5)
    assert result["nats_per_dim_8bit"] is None and result["bits_per_dim"] is None
    protocol = result["protocol"]
    assert protocol["noise"] == "none" and "own units" in protocol["units"]
    assert protocol["scaling"].startswith("(x - mean) / std")
    # The known answer: x10 has the same standardised values, so the same model trains on
    # them, and its density of each frame is 10^-D times x's: T' D log 10 nats less per sequence.
    dims = result["frames_scored"] * 3
    difference = result["log_likelihood_sum"] - results["series_x10"]["log_likelihood_sum"]
    assert difference == pytest.approx(dims * math.log(10), rel=1e-6)
    assert result["nats_per_dim"] - results["series_x10"]["nats_per_dim"] == pytest.approx(
        math.log(10), rel=1e-6
    )

    # Predictions in the series' own units: the context and future are the test sequences.
    folder = tmp_path / "prediction"
    arguments = ["sample", str(checkpoint), "--out", str(folder), "--context", "4"]
    sampled = run_json(capsys, *arguments, "--length", "5", "--temperature", "0")
    assert sampled["units"].startswith("the series' own units")
    tensors = torch.load(folder / "samples.pt")
    np.testing.assert_allclose(tensors["context"][:2], series[18:, :4], rtol=1e-6)
    np.testing.assert_allclose(tensors["future"][:2], series[18:, 4:9], rtol=1e-6)
    assert tensors["predicted"].shape == (4, 5, 3) and tensors["predicted"].dtype == torch.float64
    assert (tensors["predicted"][..., 0] - 1000).abs().max() < 2000  # not standardised values

    # Anomaly scoring of a new array: a spike makes its sequence the least likely.
    spiked = series.copy()
    spiked[5, 7, 1] += 50 * train_part[..., 1].std()
    np.save(tmp_path / "new.npy", spiked)
    scores = tmp_path / "scores"
    new = [f"data.path={tmp_path / 'new.npy'}", "--split", "all", "--scores", str(scores)]
    run_json(capsys, "evaluate", str(checkpoint), *new, "evaluate.crop=first", "--json")
    rows = read_csv(scores / "sequences.csv")
    assert min(rows, key=lambda row: float(row["log_likelihood"]))["array_index"] == "5"
    frames = [row for row in read_csv(scores / "frames.csv") if row["sequence"] == "5"]
    before = [float(row["log_likelihood"]) for row in frames if int(row["frame"]) < 7]
    spike = next(float(row["log_likelihood"]) for row in frames if row["frame"] == "7")
    assert spike < min(before)


def test_the_standardisation_enters_as_its_log_jacobian():
    model = seqflows.FlowModel((3,), window=2, hidden=8).eval()
    x = torch.from_numpy(float_series(count=4, frames=6))
    mean, std = (tuple(value) for value in series_statistics(x.numpy()))
    scored = 6 - model.burn_in
    totals = []
    for factor in (1.0, 10.0):
        scale = Preprocessing(
            "none", tuple(factor * m for m in mean), tuple(factor * s for s in std)
        )
        scores = SequenceScores(model.event_shape, preprocessing=scale, keep=True)
        scores.update(model, scale(factor * x))
        totals.append(scores.likelihood.total)
        per_frame = scores.per_frame
    assert totals[0] - totals[1] == pytest.approx(4 * scored * 3 * math.log(10), rel=1e-9)
    with torch.no_grad():
        z = Preprocessing("none", mean, std)(x)
        expected = model.log_prob(z).double() - sum(math.log(10 * s) for s in std)
    np.testing.assert_allclose(per_frame, expected.numpy(), rtol=1e-6)
    assert scores.summary()["nats_per_dim_8bit"] is None


def test_preprocessing_of_real_series():
    series = Preprocessing("none", mean=(10.0, -1.0), std=(2.0, 0.5))
    x = np.array([[[14.0, -1.5], [10.0, 0.0]]])  # (B, T, D)
    z = series(x)
    assert z.dtype == torch.float32 and z.tolist() == [[[2.0, -1.0], [0.0, 2.0]]]
    torch.testing.assert_close(series.inverse(z), torch.from_numpy(x))
    assert series.log_abs_det == pytest.approx(-math.log(2.0) - math.log(0.5))
    assert Preprocessing("gaussian").log_abs_det == 0.0
    frames = torch.ones(1, 2, 1, 2, 2)
    assert Preprocessing("gaussian").inverse(frames) is frames  # frames stay in [0, 1]
    with pytest.raises(ValueError, match="standardises real-valued series; got uint8"):
        series(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="real-valued frames take no pixel noise"):
        Preprocessing("gaussian")(x)
    with pytest.raises(ValueError, match="shape \\(3,\\): the standardisation has 2 dimensions"):
        series(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="give both or neither"):
        Preprocessing("none", mean=(1.0,))
    with pytest.raises(ValueError, match="std positive"):
        Preprocessing("none", mean=(1.0,), std=(0.0,))
    with pytest.raises(ValueError, match="take noise 'none'"):
        Preprocessing("gaussian", mean=(1.0,), std=(1.0,))
    mean, std = series_statistics([np.array([[1.0, 7.0], [3.0, 7.0]]), np.array([[2.0, 7.0]])])
    assert mean.tolist() == [2.0, 7.0] and std.tolist() == [math.sqrt(2 / 3), 1.0]
    bad = np.zeros((3, 2))
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="runs: sequence 1, frame 2, dimension 1 is inf"):
        series_statistics([np.zeros((2, 2)), bad], "runs")
    # NaN marks a missing value: the statistics are those of the observed values
    gapped = np.array([[1.0, np.nan], [3.0, 7.0], [np.nan, 9.0]])
    mean, std = series_statistics([gapped])
    assert mean.tolist() == [2.0, 8.0] and std.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="runs: dimension 1 has no observed value"):
        series_statistics([np.array([[1.0, np.nan], [2.0, np.nan]])], "runs")


def test_float_arrays_are_taken_as_they_are_and_checked(tmp_path, capsys):
    source = ArraySource(np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 4, 3), "runs")
    assert source.dtype == np.float32 and source.read(1, 1, 3).dtype == np.float32
    assert source.read(1, 1, 3)[0, 0] == np.float32(np.linspace(0, 1, 24)[15])
    with pytest.raises(ValueError, match=r"frames in \[0, 1\] must be converted"):
        ArraySource(np.zeros((2, 3, 4, 4), np.float32))
    for index, named in ((8, "[validation]: sequence 0"), (2, "[train]: sequence 2")):
        series = float_series(count=10, frames=8)  # train 0..7, validation 8, test 9
        series[index, 6, 2] = np.inf
        np.save(tmp_path / "bad.npy", series)
        status = main(
            [
                "train",
                "my_time_series",
                f"data.path={tmp_path / 'bad.npy'}",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        error = capsys.readouterr().err
        assert status == 2 and error.count("\n") == 1, error
        assert f"bad.npy {named}, frame 6, dimension 2 is inf: values must be finite" in error
    # ... and a crop that holds one is named where it is read.
    dataset = FixedSequences(ArraySource(series, "file"), 8, noise="none")
    with pytest.raises(ValueError, match="file: sequence 2, frame 6, dimension 2 is inf"):
        dataset[2]
    np.save(tmp_path / "series.npy", float_series())
    status = main(
        ["train", "my_time_series", f"data.path={tmp_path / 'series.npy'}", "data.noise=gaussian"]
        + ["--out", str(tmp_path / "r")]
    )
    error = capsys.readouterr().err
    assert status == 2 and "data.noise=gaussian is pixel noise for uint8 frames" in error
    assert not (tmp_path / "r").exists()


def test_series_converted_without_quantisation_keep_their_values(tmp_path):
    rows = ["machine,time,temperature,pressure"]
    truth = {}
    rng = np.random.default_rng(3)
    for machine in range(10):
        values = rng.normal(size=(7, 2)) * [0.01, 300] + [21.5, 101_325]
        truth[f"m{machine}"] = values
        rows += [f"m{machine},{t},{a!r},{b!r}" for t, (a, b) in enumerate(values.tolist())]
    (tmp_path / "sensors.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path / "store"
    summary = convert_series(
        tmp_path / "sensors.csv", store, id_column="machine", time_column="time", test=0.2
    )
    assert summary["test"] == {"sequences": 2, "frames": 14}  # no clipping: nothing is cut
    manifest = read_manifest(store)
    assert manifest["dtype"] == "float64" and "scale" not in manifest["options"]
    for split in ("train", "validation", "test"):
        source = StoreSource(store, split)
        for n, item in enumerate(source.metadata):
            np.testing.assert_array_equal(source[n], truth[item["id"]])  # exactly
    with pytest.raises(ValueError, match="not a quantised series store"):
        series_range(store)


def test_a_store_of_series_is_scored_with_its_ids(tmp_path, capsys):
    rng = np.random.default_rng(4)
    rows = ["machine,time,a,b,c"]
    for machine in range(20):
        walk = np.cumsum(rng.normal(size=(10, 3)), axis=0) + [100, 0, -5]
        rows += [f"m{machine},{t},{a},{b},{c}" for t, (a, b, c) in enumerate(walk.tolist())]
    (tmp_path / "sensors.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path / "store"
    arguments = ["convert", "series", str(tmp_path / "sensors.csv"), str(store)]
    arguments += ["--id-column", "machine", "--time-column", "time", "--validation", "0.1"]
    report = run_json(capsys, *arguments)
    assert report["frame_shape"] == [3]
    run = tmp_path / "run"
    said = train(
        capsys, "my_time_series", "data.dataset=store", f"data.path={store}", "--out", str(run)
    )
    assert "data.length=10" in said
    scores = tmp_path / "scores"
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    result = run_json(capsys, "evaluate", checkpoint, "--scores", str(scores), "--json")
    rows = read_csv(scores / "sequences.csv")
    test = StoreSource(store, "test")
    assert [row["id"] for row in rows] == [item["id"] for item in test.metadata]
    assert {row["source"] for row in rows} == {"sensors.csv"}
    assert len(rows) == result["sequences"] == 1  # 5% of 20 sequences


def test_the_my_configurations_need_the_data_path():
    for name in ("my_video_array", "my_time_series", "my_time_series_slvm_prior"):
        with pytest.raises(ConfigError, match="data.path is required for dataset array"):
            load_config(name)


# The README's "Your own data" commands, as written (only the step count is made small)


def readme_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Your own data") :]
    section = section[: section.index("\n## ", 1)]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_the_readme_commands_for_your_own_data_run_as_written(tmp_path, capsys, monkeypatch):
    commands = readme_commands()
    assert any("my_video_array" in line for line in commands)
    assert any("my_time_series" in line for line in commands)
    assert any("--scores" in line for line in commands)
    assert any("--temperature 0" in line for line in commands)
    monkeypatch.chdir(tmp_path)
    # The files the README works on.
    video_array(Path("videos.npy"))
    np.save("series.npy", float_series())
    spiked = float_series(seed=1)
    spiked[3, 8, 0] += 5000
    np.save("new_series.npy", spiked)
    rows = ["machine,time,temperature,pressure"]
    for machine in range(20):
        walk = float_series(count=1, frames=15, seed=machine)[0, :, :2]
        rows += [f"m{machine},{t},{a},{b}" for t, (a, b) in enumerate(walk.tolist())]
    Path("sensors.csv").write_text("\n".join(rows) + "\n")
    outputs = []
    for command in commands:
        command = re.sub(r"--max-steps \d+", "--max-steps 2", command)
        # rolling origins that fit the 15 steps of each machine's series, fewer samples
        command = re.sub(r"--origins \d+ --length \d+", "--origins 3 --length 3", command)
        command = re.sub(r"--samples \d+", "--samples 4", command)
        if command.startswith("seqflows "):
            status = main(shlex.split(command)[1:])
            captured = capsys.readouterr()
            assert status == 0, f"{command}: {captured.err}"
            outputs.append(captured.out)
        else:  # shell tools on the scores
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
            assert done.returncode == 0, f"{command}: {done.stderr}"
            outputs.append(done.stdout)
    sorted_frames = next(
        output for command, output in zip(commands, outputs, strict=True) if "sort" in command
    )
    assert sorted_frames.splitlines()[0].startswith("3,8,")  # the spike comes first
    predicted = torch.load("runs/series/prediction/temperature_0.pt")
    assert predicted["predicted"].shape == (4, 5, 3)  # in the series' own units
    assert (predicted["predicted"][..., 0] - 1000).abs().max() < 2000
    metrics = json.loads(Path("runs/series/metrics/prediction.json").read_text())
    assert "standardised series" in metrics["protocol"]["metrics"]["mse"]
    assert metrics["time_steps"] == [3, 4, 5, 6, 7]
    assert math.isfinite(metrics["mean_prediction"]["mean"]["mse"])


# A series converted from a CSV: drawn and reported by its column names, in words that say what
# the numbers are


@pytest.fixture(scope="module")
def csv_series_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny 1-AF trained 2 steps on a store converted from a CSV with the columns
    temperature, pressure and flow: the run folder and what the training said on stderr."""
    folder = tmp_path_factory.mktemp("csv_series")
    rows = ["machine,time,temperature,pressure,flow"]
    for machine in range(20):
        walk = float_series(count=1, frames=12, seed=machine)[0]
        rows += [f"m{machine},{t},{a},{b},{c}" for t, (a, b, c) in enumerate(walk.tolist())]
    (folder / "sensors.csv").write_text("\n".join(rows) + "\n")
    store = folder / "store"
    convert = ["convert", "series", str(folder / "sensors.csv"), str(store)]
    assert (
        main([*convert, "--id-column", "machine", "--time-column", "time", "--test", "0.2"]) == 0
    )
    run = folder / "run"
    command = ["train", "my_time_series", "data.dataset=store", f"data.path={store}"]
    command += ["--out", str(run), "--max-steps", "2", "--no-progress", *TINY_RUN]
    said = io.StringIO()
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        assert main(command) == 0
    return run, said.getvalue()


def test_series_figures_are_labelled_by_the_csv_columns(csv_series_run, capsys, monkeypatch):
    run, trained = csv_series_run
    names = ["temperature", "pressure", "flow"]
    assert f"data.dimension_names={names}" in trained  # read from the data, said, and stored
    checkpoint = run / "checkpoints" / "last.ckpt"
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["seqflows"]["config"]
    assert stored["data"]["dimension_names"] == names
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["dimension_names"] == names
    figures = captured_figures(monkeypatch)
    out = str(run.parent / "figures")
    assert main(["sample", str(checkpoint), "--out", out, "--num", "2", "--length", "3"]) == 0
    assert main(["visualize", str(checkpoint), "--out", out, "--frames", "4"]) == 0
    capsys.readouterr()
    samples, rows = figures[0], figures[1]
    assert [axis.get_title() for axis in samples.axes[:3]] == names  # the first row
    assert [axis.get_title() for axis in rows.axes[:3]] == names
    assert not any("dimension" in axis.get_title() for axis in samples.axes + rows.axes)
    # A name per dimension, when given.
    line = "data.dimension_names=[a,b]"
    assert main(["evaluate", str(checkpoint), line]) == 2
    assert "data.dimension_names has 2 names for series of 3 dimensions" in capsys.readouterr().err


def test_the_tables_of_a_series_say_what_is_standardised(csv_series_run, capsys):
    run, _ = csv_series_run
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    assert main(["evaluate", checkpoint, "--no-progress"]) == 0
    rows = dict(
        re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines()
    )
    assert "noise" not in rows
    assert rows["standardisation"].startswith("(x - mean) / std per dimension")
    command = ["predict", checkpoint, "--out", str(run.parent / "p"), "--samples", "2"]
    assert main([*command, "--length", "2", "--no-progress"]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("prediction"))
    assert header.split(maxsplit=1)[1] == "MSE (standardised)"
    assert (
        "MSE (standardised): mean squared error over the D values of a frame, of the "
        "standardised series (x - mean) / std (1: the variance of the training split)" in table
    )


def test_a_run_from_before_dimension_names_resumes_with_them():
    from seqflows.app.runs import resume_changes

    before = Config.from_dict({}, ["data.path=s.npy"])
    now = before.replace(data={"dimension_names": ["temperature", "pressure"]})
    changes = resume_changes(before.to_dict(), now, [2], [2], "last.ckpt")
    assert changes == {"data.dimension_names": (None, ["temperature", "pressure"])}
