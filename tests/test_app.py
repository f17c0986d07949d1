"""Configurations, checkpoints and the command line: results, files and errors on bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from seqflows.app.checkpoints import (
    CheckpointError,
    NonFiniteStateError,
    model_from_checkpoint,
    read_checkpoint,
    save_atomically,
    save_checkpoint,
    weights_checksum,
)
from seqflows.app.cli import main
from seqflows.app.config import Config, ConfigError, load_config

from helpers import flip_weight_bytes, mnist_test_digits

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_overrides_are_typed_and_validated():
    config = Config.from_dict(
        {"model": {"window": 2}},
        ["train.learning_rate=3e-4", "data.eval_length=null", "data.train_digits=[0, 10]"],
    )
    assert config.model.conditioner.window == 2
    assert config.train.learning_rate == 3e-4 and isinstance(config.train.learning_rate, float)
    assert config.data.eval_length is None and config.data.train_digits == [0, 10]
    with pytest.raises(ConfigError, match="train.batch_size must be int"):
        Config.from_dict({}, ["train.batch_size=many"])
    with pytest.raises(ConfigError, match="model.conditioner.kind must be one of"):
        Config.from_dict({}, ["model.conditioner=transformer"])
    with pytest.raises(ConfigError, match="not of the form"):
        Config.from_dict({}, ["train.batch_size"])


def test_unknown_keys_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  windw: 3\n")
    with pytest.raises(ConfigError, match=r"typo.yaml.*'model.windw'.*window"):
        load_config(path)
    path.write_text("optimiser:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="unknown configuration key 'optimiser'"):
        load_config(path)
    path.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_paper_configurations_carry_appendix_b():
    one, two = load_config(CONFIGS / "mmnist_1af.yaml"), load_config(CONFIGS / "mmnist_2af.yaml")
    for config in (one, two):
        conditioner = config.model.conditioner
        assert (conditioner.window, conditioner.hidden, conditioner.kind) == (3, 64, "conv")
        assert config.train.learning_rate == 1e-4 and config.train.gradient_clip == 1.0
        assert config.data.frame_shape == (1, 64, 64) and config.data.noise == "gaussian"
        assert config.model.transforms[0].max_scale == 10.0 and config.model.base == "standard"
        assert config.train.max_steps == 100_000
    assert (one.model.num_transforms, one.data.length, one.train.batch_size) == (1, 13, 16)
    assert (two.model.num_transforms, two.data.length, two.train.batch_size) == (2, 16, 8)
    # Both score the last 10 frames of their evaluation crops.
    assert one.data.evaluation_length - 3 == two.data.evaluation_length - 6 == 10
    balls = load_config(CONFIGS / "bouncing_balls_1af.yaml")
    assert balls.data.dataset == "bouncing_balls"


def test_every_shipped_configuration_loads():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        if path.name.startswith("my_"):  # your own data: the path is given on the command line
            with pytest.raises(ConfigError, match="data.path is required .* on the command line"):
                load_config(path)
            load_config(path, ["data.path=mine.npy"])
        else:
            load_config(path)


def test_atomic_save_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    save_atomically({"value": torch.ones(3)}, path)

    def dies_halfway(payload, stream):
        stream.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_atomically({"value": torch.zeros(3)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.ckpt"]  # no temporary left
    monkeypatch.undo()
    torch.testing.assert_close(torch.load(path, weights_only=True)["value"], torch.ones(3))


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_checkpoints_that_are_not_usable_are_refused(tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"seqflows": {}, "weights": torch.randn(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.ckpt: corrupt or truncated"):
        read_checkpoint(truncated)
    code = tmp_path / "code.ckpt"
    with open(code, "wb") as stream:
        torch.save({"payload": Payload()}, stream, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="code.ckpt: refused to load"):
        read_checkpoint(code)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"weight": torch.ones(2)}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt: not a seqflows checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="absent.ckpt"):
        read_checkpoint(tmp_path / "absent.ckpt")


def test_settings_that_cannot_work_are_refused_naming_the_key(tmp_path, capsys):
    for override, message in [
        ("train.devices=0", "train.devices must be at least 1 (-1 or auto: all), got 0"),
        ("train.devices=-2", "train.devices must be at least 1 (-1 or auto: all), got -2"),
        ("train.num_nodes=0", "train.num_nodes must be at least 1, got 0"),
        ("train.learning_rate=-1", "train.learning_rate must be > 0 and finite, got -1.0"),
        ("train.learning_rate=.inf", "train.learning_rate must be > 0 and finite, got inf"),
        ("evaluate.sequences=0", "evaluate.sequences must be at least 1, got 0"),
        ("evaluate.iwae_samples=-1", "evaluate.iwae_samples must be at least 0, got -1"),
    ]:
        with pytest.raises(ConfigError) as raised:
            Config.from_dict({}, [override])
        assert str(raised.value) == message
    assert Config.from_dict({}, ["train.devices=-1"]).train.devices == -1
    assert Config.from_dict({}, ["train.devices=auto"]).train.devices == "auto"
    capsys.readouterr()
    assert main(["train", "data.size=8", "--out", str(tmp_path / "a"), "--devices", "0"]) == 2
    assert capsys.readouterr().err == (
        "seqflows: error: train.devices must be at least 1 (-1 or auto: all), got 0\n"
    )
    assert not (tmp_path / "a").exists()


def test_a_configuration_that_is_not_utf8_is_named(tmp_path, capsys):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \('utf-8' codec"):
        load_config(latin)
    capsys.readouterr()
    assert main(["train", str(latin), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("seqflows: error: ") and "latin1.yaml" in error
    assert error.count("\n") == 1
    marked = tmp_path / "bom.yaml"  # UTF-8 with a byte-order mark, as some editors write
    marked.write_bytes("\ufeffname: café\n".encode())
    assert load_config(marked).name == "café"


def test_batches_whose_frames_cannot_fit_in_memory_are_refused(tmp_path, capsys):
    from seqflows.app.resolution import resolve_data
    from seqflows.app.runtime import check_batch_fits

    memory = 16 * 10**9

    def fits(config: Config, available: int | None = memory) -> None:
        data = resolve_data(config)  # the frame shape and crop length read
        check_batch_fits(config, data.event_shape, available=available, length=data.length)

    def resolved(*overrides: str) -> Config:
        return Config.from_dict({}, overrides)

    config = resolved("data.size=100000")
    with pytest.raises(ConfigError) as raised:
        fits(config)
    assert str(raised.value) == (
        "data.size=100000: one training sequence of 13 frames of 1x100000x100000 takes "
        "520 GB, more than the 16 GB of memory of this machine"
    )
    config = resolved("train.batch_size=100000000")
    with pytest.raises(ConfigError, match=r"^train.batch_size=100000000: one batch \(100000000 "):
        fits(config)
    # float64 needs twice the bytes; the batch is shared between the machines (nodes)
    config = resolved("train.batch_size=200000", "train.precision=64")
    with pytest.raises(ConfigError, match="takes 21.3 GB"):
        fits(config)
    fits(config.replace(train={"num_nodes": 2}))
    fits(resolved())
    fits(resolved(), available=None)  # this machine's memory
    # The command refuses them before anything is allocated.
    for override, key in [
        ("train.batch_size=1000000000000", "train.batch_size=1000000000000: one batch"),
        ("data.size=1000000", "data.size=1000000: one training sequence"),
    ]:
        status = main(["train", "data.num_workers=0", override, "--out", str(tmp_path / "r")])
        error = capsys.readouterr().err
        assert status == 2 and error.startswith(f"seqflows: error: {key}"), error
        assert "of memory of this machine" in error and error.count("\n") == 1
    status = main(["train", "model.type=slvm", "data.size=12", "--out", str(tmp_path / "r")])
    error = capsys.readouterr().err
    assert status == 2 and error.startswith("seqflows: error: data.size=12: the SLVM's"), error
    assert "4 * 2^n" in error


def test_non_finite_states_are_never_written(tmp_path):
    path = tmp_path / "last.ckpt"
    good = {"state_dict": {"w": torch.ones(3)}, "optimizer_states": [], "global_step": 4}
    save_checkpoint({**good, "seqflows": {"format": "seqflows-checkpoint/1"}}, path)
    before = path.read_bytes()
    weights = {"state_dict": {"w": torch.tensor([1.0, float("nan")])}, "global_step": 5}
    with pytest.raises(NonFiniteStateError, match=r"last.ckpt: weights.w holds NaN .* step 5"):
        save_checkpoint(weights, path)
    state = {"state": {0: {"exp_avg_sq": torch.tensor([float("inf")])}}}
    optimizer = {**good, "optimizer_states": [state], "global_step": 5}
    with pytest.raises(NonFiniteStateError, match=r"optimizer state\[0\].state.0.exp_avg_sq"):
        save_checkpoint(optimizer, path)
    assert path.read_bytes() == before  # the previous checkpoint stays
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-AF (window 1) trained for 4 steps on 8x8 bouncing balls, by the command line."""
    pytest.importorskip("lightning")
    folder = tmp_path_factory.mktemp("cli")
    overrides = [
        "data.size=8",
        "data.num_frames=12",
        "data.length=6",
        "data.validation_sequences=4",
        "data.test_sequences=6",
        "data.num_workers=0",
        "model.window=1",
        "model.num_transforms=2",
        "model.hidden=4",
        "train.batch_size=2",
        "train.val_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
        "evaluate.batch_size=4",
    ]
    status = main(
        [
            "train",
            str(CONFIGS / "bouncing_balls_1af.yaml"),
            "--out",
            str(folder),
            "--max-steps",
            "4",
            "--no-progress",
            *overrides,
        ]
    )
    assert status == 0
    return folder


def test_evaluate_prints_a_json_result_with_its_protocol(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run / "checkpoints" / "best.ckpt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sequences"] == 6 and result["frames_scored"] == 6 * (6 - 2)
    assert result["bits_per_dim"] is None  # Gaussian noise: bits/dim would mean nothing
    assert np.isfinite(result["nats_per_dim"]) and result["bound"] == "exact log-likelihood"
    assert result["model"] == "2-AF"
    protocol = result["protocol"]
    assert (protocol["crop_length"], protocol["burn_in"], protocol["seed"]) == (6, 2, 1234)
    assert protocol["scored_frames_per_sequence"] == 4 and "1/256" in protocol["noise"]
    # The paper's scale: the density of 0-255 pixel values, and the ceiling of the noise.
    assert result["nats_per_dim_8bit"] == pytest.approx(result["nats_per_dim"] - np.log(256))
    assert protocol["ceiling"]["nats_per_dim"] == pytest.approx(4.1263, abs=1e-4)
    assert protocol["ceiling"]["nats_per_dim_8bit"] == pytest.approx(-1.4189, abs=1e-4)
    # Deterministic: the same number again, and the table shows it on both scales.
    assert main(["evaluate", str(run / "checkpoints" / "best.ckpt")]) == 0
    table = capsys.readouterr().out
    assert f"{result['nats_per_dim']:.4f} on [0, 1]" in table
    assert f"{result['nats_per_dim_8bit']:.4f} on 0-255" in table


def test_evaluate_scores_with_batch_norm_folded_and_the_same_numbers(run, capsys, monkeypatch):
    import seqflows.app.commands as commands
    import seqflows.app.evaluation as evaluation
    from seqflows.inference import folded_layers

    evaluate_model = evaluation.evaluate_model

    checkpoint = str(run / "checkpoints" / "best.ckpt")
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--json"]) == 0
    folded = json.loads(capsys.readouterr().out)
    seen = []

    def unfolded_evaluation(model, *args, **kwargs):
        seen.append(folded_layers(model))
        return evaluate_model(model, *args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_model", unfolded_evaluation)
    assert main(["evaluate", checkpoint, "--json"]) == 0
    assert seen == [16]  # the 2-AF's 16 BatchNorms folded
    capsys.readouterr()
    monkeypatch.setattr(commands, "fold_batch_norm", lambda model: model)
    assert main(["evaluate", checkpoint, "--json"]) == 0
    assert seen == [16, 0]
    unfolded = json.loads(capsys.readouterr().out)
    assert folded["nats_per_dim"] == pytest.approx(unfolded["nats_per_dim"], abs=1e-5)
    assert folded["corr_noise"] == pytest.approx(unfolded["corr_noise"], abs=1e-4)


def test_evaluate_scores_the_last_frames_of_longer_crops(run, capsys):
    """Same frames for every model: crops of 6, the last 3 scored, the rest context."""
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--json"]) == 0
    everything = json.loads(capsys.readouterr().out)
    assert main(["evaluate", checkpoint, "--json", "evaluate.scored_frames=3"]) == 0
    last = json.loads(capsys.readouterr().out)
    assert last["frames_scored"] == 6 * 3 and last["protocol"]["context_frames"] == 3
    assert last["protocol"]["scored_frames_per_sequence"] == 3
    assert last["nats_per_dim"] != everything["nats_per_dim"]
    assert main(["evaluate", checkpoint, "evaluate.scored_frames=5"]) == 2
    assert "evaluate.scored_frames=5" in capsys.readouterr().err


def test_evaluate_reports_bits_per_dim_for_uniform_dequantization(run, capsys):
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--json", "data.noise=uniform"]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = (np.log(256) - result["nats_per_dim"]) / np.log(2)
    assert result["bits_per_dim"] == pytest.approx(expected)


def test_sample_and_visualize_write_figures(run, capsys):
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    out = run / "figures"
    assert (
        main(
            [
                "sample",
                checkpoint,
                "--out",
                str(out),
                "--num",
                "2",
                "--length",
                "3",
                "--context",
                "4",
            ]
        )
        == 0
    )
    assert main(["visualize", checkpoint, "--out", str(out), "--frames", "3"]) == 0
    for name in ("samples.gif", "samples.png", "flow_rows.png", "curves.png"):
        assert (out / name).stat().st_size > 1000, name
    samples = torch.load(out / "samples.pt", weights_only=True)
    assert samples["context"].shape == (2, 4, 1, 8, 8)
    assert samples["predicted"].shape == (2, 3, 1, 8, 8)
    capsys.readouterr()
    assert main(["sample", checkpoint, "--out", str(out), "--context", "1"]) == 2
    assert "needs 2 context frames" in capsys.readouterr().err


def test_sample_runs_the_model_with_batch_norm_folded(run, tmp_path, capsys, monkeypatch):
    """``seqflows sample`` generates with an inference copy (BatchNorm folded into the
    convolutions) and gives the frames of the model itself to float tolerance."""
    from seqflows import FlowModel
    from seqflows.inference import folded_layers

    checkpoint = str(run / "checkpoints" / "last.ckpt")
    seen = []
    original = FlowModel.sample

    def spy(self, *args, **kwargs):
        seen.append(folded_layers(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FlowModel, "sample", spy)
    command = ["sample", checkpoint, "--out", str(tmp_path), "--num", "2", "--length", "4"]
    assert main([*command, "--seed", "5"]) == 0
    assert "samples.pt" in capsys.readouterr().out
    assert seen == [16]  # 2 transforms, 8 BatchNorms each
    written = torch.load(tmp_path / "samples.pt", weights_only=True)
    model = model_from_checkpoint(checkpoint)[0].eval()
    expected = original(model, 2, 4, written["context"], torch.Generator().manual_seed(5))
    torch.testing.assert_close(written["predicted"], expected, rtol=1e-4, atol=1e-4)


def test_bad_input_ends_with_a_clear_error(run, tmp_path, capsys):
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    # A data file that is not there.
    status = main(
        [
            "train",
            str(CONFIGS / "mmnist_1af.yaml"),
            "--out",
            str(tmp_path / "a"),
            f"data.path={tmp_path / 'mnist_test_seq.npy'}",
        ]
    )
    assert status == 2 and "mnist_test_seq.npy" in capsys.readouterr().err
    # Frames with another channel count than the configuration.
    frames = tmp_path / "rgb.npy"
    np.save(frames, np.zeros((12, 6, 3, 8, 8), dtype=np.uint8))
    status = main(
        [
            "evaluate",
            checkpoint,
            "data.dataset=array",
            f"data.path={frames}",
            "data.test_sequences=2",
            "data.validation_sequences=2",
        ]
    )
    error = capsys.readouterr().err
    assert status == 2 and "rgb.npy" in error and "(3, 8, 8)" in error
    # Float data (NaN, out of range) is refused with its file named.
    floats = tmp_path / "floats.npy"
    np.save(floats, np.full((12, 6, 1, 8, 8), np.nan, dtype=np.float32))
    status = main(["evaluate", checkpoint, "data.dataset=array", f"data.path={floats}"])
    error = capsys.readouterr().err
    assert status == 2 and "floats.npy" in error and "uint8" in error
    # An unknown key, and an override that would change the trained model.
    assert main(["evaluate", checkpoint, "data.sise=8"]) == 2
    assert "'data.sise'" in capsys.readouterr().err
    assert main(["evaluate", checkpoint, "model.window=3"]) == 2
    assert "only data.* and evaluate.*" in capsys.readouterr().err
    # A checkpoint of a model type this command does not know.
    other = tmp_path / "other.ckpt"
    raw = read_checkpoint(checkpoint)
    raw["seqflows"]["model_type"] = "gan"
    save_checkpoint(raw, other)  # a seqflows that knows other models (checksums match)
    with pytest.raises(CheckpointError, match="holds a model of type 'gan'"):
        model_from_checkpoint(other)
    assert main(["evaluate", str(other)]) == 2


def test_options_out_of_range_end_with_a_one_line_error(run, tmp_path, capsys, monkeypatch):
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    out = str(tmp_path / "figures")
    for arguments, message in [
        (["evaluate", checkpoint, "--sequences", "0"], "--sequences: must be at least 1, got 0"),
        (["evaluate", checkpoint, "--sequences", "-2"], "--sequences: must be at least 1, got -2"),
        (["evaluate", checkpoint, "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        (["sample", checkpoint, "--out", out, "--length", "0"], "--length: must be at least 1"),
        (["sample", checkpoint, "--out", out, "--num", "0"], "--num: must be at least 1, got 0"),
        (["visualize", checkpoint, "--out", out, "--frames", "0"], "--frames: must be at least 1"),
    ]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main(arguments)
        assert exited.value.code == 2, arguments
        error = capsys.readouterr().err
        assert error.startswith(f"seqflows: error: argument {message}") and error.count("\n") == 1
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--device", "tpu9"]) == 2
    assert capsys.readouterr().err == (
        "seqflows: error: device tpu9: unknown device; use auto, cpu or cuda\n"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    for command in (["evaluate"], ["sample", "--out", out]):
        assert main([*command[:1], checkpoint, *command[1:], "--device", "cuda"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("seqflows: error: device cuda: CUDA is not available (this ")
        assert error.endswith("; use --device cpu\n") and error.count("\n") == 1
    assert not Path(out).exists()


def test_corrupted_weights_are_refused_by_their_checksum(run, tmp_path, capsys):
    raw = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert raw["seqflows"]["weights_sha256"] == weights_checksum(raw["state_dict"])
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    name = flip_weight_bytes(corrupt)
    # torch reads the file without a complaint: only the bytes of one weight changed
    changed = torch.load(corrupt, weights_only=True)["state_dict"][name]
    assert not torch.equal(changed, raw["state_dict"][name])
    with pytest.raises(CheckpointError, match="corrupt.ckpt: corrupt checkpoint: the weights do"):
        model_from_checkpoint(corrupt)
    capsys.readouterr()
    assert main(["evaluate", str(corrupt), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"seqflows: error: {corrupt}: corrupt checkpoint")
    # A checkpoint written before checksums existed loads as before.
    del raw["seqflows"]["weights_sha256"]
    older = tmp_path / "older.ckpt"
    torch.save(raw, older)
    model, _, _ = model_from_checkpoint(older)
    torch.testing.assert_close(model.state_dict()[name[len("model.") :]], raw["state_dict"][name])


def test_evaluating_diverged_weights_fails_and_writes_no_json(run, tmp_path, capsys):
    """Weights about 1e30, finite, as a run at a huge learning rate leaves them: the score
    overflows, and no -Infinity (which is not JSON) is printed or written."""
    raw = read_checkpoint(run / "checkpoints" / "last.ckpt")
    key = next(key for key in raw["state_dict"] if key.endswith("0.conditioner.shift_head.bias"))
    raw["state_dict"][key].fill_(1e30)
    diverged = tmp_path / "diverged.ckpt"
    save_checkpoint(raw, diverged)
    output = tmp_path / "result.json"
    capsys.readouterr()
    assert main(["evaluate", str(diverged), "--json", "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not output.exists()
    # the batches were scored (the progress says so), then one line says why there is no result
    progress, error = captured.err.splitlines()
    assert progress.startswith("evaluate test: 2/2 batches (100%)")
    assert error.startswith(f"seqflows: error: {diverged}: the 2-AF scores nats_per_dim = ")
    assert "weights are diverged" in error


DIGITS = mnist_test_digits()


@pytest.mark.skipif(not DIGITS.is_file(), reason="the MNIST test digits of ../shared are absent")
def test_moving_mnist_splits_use_disjoint_digits():
    from seqflows.app.datasets import evaluation_set, training_set
    from seqflows.app.sources import build_source
    from seqflows.data import load_digits

    config = Config.from_dict(
        {
            "data": {
                "dataset": "moving_mnist",
                "path": str(DIGITS),
                "size": 64,
                "train_digits": [0, 8000],
                "validation_digits": [7000, 8000],
                "test_digits": [8000, 10000],
                "test_sequences": 3,
            }
        }
    )
    digits = load_digits(DIGITS)
    train, test = build_source(config.data, "train"), build_source(config.data, "test")
    np.testing.assert_array_equal(train.digits, digits[:8000])
    np.testing.assert_array_equal(test.digits, digits[8000:])
    x = evaluation_set(config, "test")[0]
    assert x.shape == (13, 1, 64, 64) and x.dtype == torch.float32
    assert 0.01 < float(x.mean()) < 0.2  # two digits on black, not an empty frame
    assert training_set(config)[0].shape == (13, 1, 64, 64)


def test_offline_digit_download_names_the_files_and_the_folder(tmp_path, monkeypatch, capsys):
    from seqflows.data import mnist

    monkeypatch.setattr(mnist, "MNIST_MIRRORS", (f"file://{tmp_path / 'nowhere'}/",))
    status = main(
        [
            "train",
            str(CONFIGS / "mmnist_1af.yaml"),
            "--out",
            str(tmp_path / "run"),
            "data.dataset=moving_mnist",
            "data.path=null",
            f"data.root={tmp_path / 'data'}",
        ]
    )
    error = capsys.readouterr().err
    assert status == 2
    assert "train-images-idx3-ubyte.gz" in error and str(tmp_path / "data" / "mnist") in error


def test_a_truncated_moving_mnist_file_is_named(tmp_path, capsys):
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, np.zeros((20, 10, 64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:5000])
    status = main(
        [
            "train",
            str(CONFIGS / "mmnist_1af.yaml"),
            "--out",
            str(tmp_path / "run"),
            f"data.path={path}",
        ]
    )
    error = capsys.readouterr().err
    assert status == 2 and str(path) in error and "truncated" in error


def test_vector_time_series_train_evaluate_and_sample(tmp_path, capsys):
    pytest.importorskip("lightning")
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.integers(-3, 4, size=(24, 10, 3)), axis=1) + 128
    path = tmp_path / "series.npy"
    np.save(path, np.clip(walk, 0, 255).astype(np.uint8))
    run = tmp_path / "run"
    overrides = [
        "data.dataset=array",
        f"data.path={path}",
        "data.length=6",
        "data.num_workers=0",
        "data.validation_sequences=4",
        "data.test_sequences=4",
        "model.conditioner=mlp",
        "model.window=2",
        "model.hidden=8",
        "train.batch_size=4",
        "train.val_every=2",
        "train.log_every=1",
        "train.checkpoint_every=2",
    ]
    assert main(["train", "--out", str(run), "--max-steps", "2", "--no-progress", *overrides]) == 0
    capsys.readouterr()
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    assert main(["evaluate", checkpoint, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"]["frame_shape"] == [3] and result["frames_scored"] == 4 * 4
    assert main(["sample", checkpoint, "--out", str(tmp_path / "s"), "--length", "3"]) == 0
    assert torch.load(tmp_path / "s" / "samples.pt")["predicted"].shape == (4, 3, 3)
    # Vector series get line plots (context, real and sampled futures), and the JSON lists
    # every file written.
    written = json.loads(capsys.readouterr().out)["written"]
    assert written == {"pt": str(tmp_path / "s" / "samples.pt"), "png": written["png"]}
    assert sorted(path.name for path in (tmp_path / "s").iterdir()) == [
        "samples.png",
        "samples.pt",
    ]
    assert (tmp_path / "s" / "samples.png").stat().st_size > 10_000
    assert main(["visualize", checkpoint, "--out", str(tmp_path / "v"), "--frames", "3"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert set(written) == {"flow_rows", "curves", "curves_data"}
    for path in written.values():
        assert Path(path).stat().st_size > 100, path


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_slvm_train_evaluate_sample_and_visualize(tmp_path, capsys, num_transforms):
    pytest.importorskip("lightning")
    run = tmp_path / "run"
    overrides = [
        "data.size=8",
        "data.num_frames=10",
        "data.length=5",
        "data.validation_sequences=3",
        "data.test_sequences=3",
        "data.num_workers=0",
        f"model.num_transforms={num_transforms}",
        "model.window=2",
        "model.hidden=4",
        "model.latent_dim=4",
        "model.lstm_hidden=8",
        "model.encoder_features=8",
        "model.conv_width=4",
        "train.batch_size=2",
        "train.val_every=2",
        "train.log_every=1",
        "train.checkpoint_every=2",
        "evaluate.batch_size=3",
    ]
    status = main(
        [
            "train",
            str(CONFIGS / "bouncing_balls_slvm.yaml"),
            "--out",
            str(run),
            "--max-steps",
            "2",
            "--no-progress",
            *overrides,
        ]
    )
    assert status == 0
    # The baseline trains on the ELBO of all 5 crop frames (the authors' objective), the
    # SLVM w/ 1-AF on the 3 after the flow's context: one logged KL per trained frame.
    header = (run / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    trained = {name for name in header.split(",") if name.startswith("train/kl_t")}
    assert trained == {f"train/kl_t{t}" for t in range(5 if num_transforms == 0 else 3)}
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    assert main(["evaluate", checkpoint, "--json", "--iwae-samples", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == ("SLVM" if num_transforms == 0 else "SLVM w/ 1-AF")
    assert result["bound"] == "IWAE lower bound, K=6" and result["iwae_samples"] == 6
    assert result["nats_per_dim"] == result["iwae_nats_per_dim"]
    assert np.isfinite(result["elbo_nats_per_dim"]) and result["frames_scored"] == 3 * 3
    assert (result["corr_noise"] is None) == (num_transforms == 0)  # y exists only with a flow
    assert main(["evaluate", checkpoint, "--json", "--iwae-samples", "0"]) == 0
    elbo_only = json.loads(capsys.readouterr().out)
    assert elbo_only["bound"] == "ELBO (lower bound)"
    assert elbo_only["nats_per_dim"] == pytest.approx(result["elbo_nats_per_dim"])  # seeded
    for key in ("nats_per_dim", "elbo_nats_per_dim", "iwae_nats_per_dim"):
        assert result[f"{key}_8bit"] == pytest.approx(result[key] - np.log(256))
    figures = tmp_path / "figures"
    assert main(["sample", checkpoint, "--out", str(figures), "--num", "2", "--length", "3"]) == 0
    assert main(["visualize", checkpoint, "--out", str(figures), "--frames", "3"]) == 0
    for name in ("samples.gif", "samples.png", "flow_rows.png"):
        assert (figures / name).stat().st_size > 1000, name
    assert torch.load(figures / "samples.pt")["predicted"].shape == (2, 3, 1, 8, 8)


def test_bair_and_kth_configurations_follow_appendix_b():
    for dataset, channels, steps in (("bair", 3, 200_000), ("kth", 1, 90_000)):
        for model in ("1af", "2af", "slvm", "slvm_1af"):
            config = load_config(CONFIGS / f"{dataset}_{model}.yaml")
            assert config.data.dataset == "store" and config.data.channels == channels
            assert (config.train.batch_size, config.train.max_steps) == (8, steps)
            paper_protocol = dataset == "bair" and model == "slvm"  # crops of 10, all scored
            assert config.data.length == (16 if model == "2af" else 10 if paper_protocol else 13)
            assert config.model.type == ("slvm" if "slvm" in model else "flow")
            if paper_protocol:
                assert config.model.burn_in == 0 and config.data.evaluation_length == 10
    # The BAIR SLVM on the flows' frames: 3 context frames, the last 10 of 13 scored.
    context = load_config(CONFIGS / "bair_slvm_context.yaml")
    assert (context.data.length, context.data.evaluation_length) == (13, 13)
    assert context.model.burn_in is None and context.model.burn_in_frames == 3
