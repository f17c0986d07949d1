"""Integrity of saved models and checkpoints (issue 24, items 8 and 9): checksums over every
record, non-finite weights, and edited config.json files, each refused in one line naming the
file; the files written before these checks existed (tests/fixtures) still load."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import pytest
import torch

import seqflows
from seqflows.errors import CheckpointError, SeqflowsError
from seqflows.saving import load_checkpoint_model, read_checkpoint

from helpers import make_flow, sequence

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_CHECKPOINT = FIXTURES / "v0_checkpoint.ckpt"  # written before checkpoint_sha256
OLD_FOLDER = FIXTURES / "v0_saved"  # written before weights_sha256
FRAME = (1, 8, 8)


def saved_flow(folder: Path) -> tuple[seqflows.FlowModel, Path]:
    """A 1-AF on 8x8 frames (conv conditioner, hidden 4, window 2), saved into ``folder``."""
    model = make_flow(FRAME, window=2, dtype=torch.float32)
    return model, model.save_pretrained(folder)


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def one_line_error(error: BaseException, file: Path | str) -> str:
    message = str(error)
    assert "\n" not in message and str(file) in message, message
    return message


def test_a_saved_folder_checks_the_sha256_of_its_weights(tmp_path):
    model, folder = saved_flow(tmp_path / "saved")
    weights = folder / "model.safetensors"
    info = json.loads((folder / "config.json").read_text())
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    x = sequence(2, 5, FRAME, dtype=torch.float32)
    assert torch.equal(seqflows.load(folder).log_prob(x), model.log_prob(x))
    # One bit of a weight in the middle of the tensor data (past the header): safetensors
    # reads it without a complaint, and the model would score differently.
    flip_bit(weights, len(weights.read_bytes()) // 2, bit=6)
    with pytest.raises(CheckpointError, match="corrupt or edited") as error:
        seqflows.load(folder)
    assert one_line_error(error.value, weights).startswith(f"{weights}: corrupt or edited")


def test_a_saved_folder_with_a_nan_weight_is_refused_naming_the_tensor(tmp_path):
    model = make_flow(FRAME, window=2, dtype=torch.float32)
    name = "transforms.0.conditioner.shift_head.bias"
    with torch.no_grad():
        model.get_parameter(name)[0] = float("nan")
    folder = model.save_pretrained(tmp_path / "nan")  # its checksum matches: not corruption
    with pytest.raises(CheckpointError, match=f"{name} holds NaN or infinite") as error:
        seqflows.load(folder)
    one_line_error(error.value, folder / "model.safetensors")


def test_a_folder_saved_before_checksums_existed_still_loads():
    info = json.loads((OLD_FOLDER / "config.json").read_text())
    assert "weights_sha256" not in info
    old = seqflows.load(OLD_FOLDER)
    trained = seqflows.load(OLD_CHECKPOINT)  # the model it was saved from
    assert old.config == trained.config and old.preprocessing == trained.preprocessing
    for name, tensor in trained.state_dict().items():
        assert torch.equal(old.state_dict()[name], tensor), name


def edit(folder: Path, change) -> Path:
    info = json.loads((folder / "config.json").read_text())
    change(info)
    (folder / "config.json").write_text(json.dumps(info))
    return folder


EDITS = {
    "no event_shape": (lambda info: info.pop("event_shape"), "missing 'event_shape'"),
    "no config": (lambda info: info.pop("config"), "missing 'config'"),
    "config is a list": (lambda info: info.update(config=[1]), "must be a mapping"),
    "event_shape is text": (lambda info: info.update(event_shape="8x8"), "event_shape must"),
    "event_shape 1x9x8": (
        lambda info: info.update(event_shape=[1, 9, 8]),
        r"event_shape \[1, 9, 8\] differs from the frame shape \[1, 8, 8\]",
    ),
    "window 1e9": (lambda info: info["config"].update(window=1e9), "window must be int"),
    "window 10**9": (
        lambda info: info["config"].update(window=10**9),
        "does not describe the weights of .*model.safetensors: .* is 4x8x3x3 in the weights, "
        "4x4000000000x3x3 in the model",
    ),
    "hidden 1e6": (lambda info: info["config"].update(hidden=1e6), "hidden must be int"),
    "hidden 10**6": (
        lambda info: info["config"].update(hidden=10**6),
        "does not describe the weights .* is 4x1x3x3 in the weights, 1000000x1x3x3",
    ),
    "num_transforms 10**6": (
        lambda info: info["config"].update(num_transforms=10**6),
        "num_transforms=1000000 cannot describe .*model.safetensors, which holds 52 tensors",
    ),
    "num_transforms 2": (
        lambda info: info["config"].update(num_transforms=2),
        "the model needs transforms.1.",
    ),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edited_config_json_fails_fast_naming_the_file(tmp_path, name):
    change, message = EDITS[name]
    _, folder = saved_flow(tmp_path / "saved")
    edit(folder, change)
    start = time.perf_counter()
    with pytest.raises(SeqflowsError, match=message) as error:
        seqflows.load(folder)
    assert time.perf_counter() - start < 5
    assert one_line_error(error.value, folder / "config.json").startswith(
        f"{folder / 'config.json'}: "
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lstm_layers", "lstm_layers=1000000 cannot describe .*model.safetensors, which holds"),
        ("latent_dim", "does not describe the weights of .*model.safetensors: .* in the model"),
    ],
)
def test_an_edited_slvm_config_json_fails_fast(tmp_path, setting, message):
    model = seqflows.SLVM(
        FRAME, latent_dim=2, lstm_hidden=4, encoder_features=4, conv_width=2, mlp_hidden=4
    )
    folder = edit(
        model.save_pretrained(tmp_path / "slvm"),
        lambda info: info["config"].update({setting: 10**6}),
    )
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=message) as error:
        seqflows.load(folder)
    assert time.perf_counter() - start < 5
    one_line_error(error.value, folder / "config.json")


def tiny_checkpoint(path: Path) -> dict:
    """The fixture checkpoint written again by today's seqflows (with every checksum)."""
    from seqflows.app.checkpoints import save_checkpoint

    checkpoint = read_checkpoint(OLD_CHECKPOINT)
    save_checkpoint(checkpoint, path)
    return read_checkpoint(path)


def test_the_checksum_of_a_checkpoint_covers_its_configuration(tmp_path):
    pytest.importorskip("lightning")
    from seqflows.app.checkpoints import model_from_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "good.ckpt")
    checkpoint["seqflows"]["config"]["model"]["max_scale"] = 10.000000000003638
    torch.save(checkpoint, tmp_path / "edited.ckpt")  # the weights are untouched
    with pytest.raises(CheckpointError, match="corrupt checkpoint: its records") as error:
        model_from_checkpoint(tmp_path / "edited.ckpt")
    one_line_error(error.value, tmp_path / "edited.ckpt")
    # A checkpoint of seqflows 0.1 (weights_sha256 only) loads as before.
    assert "checkpoint_sha256" not in read_checkpoint(OLD_CHECKPOINT)["seqflows"]
    model, _, _ = model_from_checkpoint(OLD_CHECKPOINT)
    assert model.config.transforms[0].max_scale == 10.0


def test_single_bit_flips_in_a_checkpoint_load_unchanged_or_fail_as_corrupt(tmp_path, capsys):
    """200 single-bit flips over a tiny checkpoint's bytes, half of them in its pickled
    records: each loads the same configuration and weights, or raises one CheckpointError line
    naming the file (never KeyError, IndexError or a silently changed configuration)."""
    pytest.importorskip("lightning")
    from seqflows.app.cli import main

    original = tiny_checkpoint(tmp_path / "good.ckpt")
    data = (tmp_path / "good.ckpt").read_bytes()
    with zipfile.ZipFile(tmp_path / "good.ckpt") as archive:
        record = next(info for info in archive.infolist() if info.filename.endswith("data.pkl"))
    pickled = record.header_offset + 30 + len(record.filename)  # past the local header
    offsets = [index * len(data) // 100 for index in range(100)]
    offsets += [pickled + index * record.file_size // 100 for index in range(100)]
    flipped = tmp_path / "flipped.ckpt"
    outcomes = {"loaded": 0, "refused": 0}
    parse_failure = None
    for number, offset in enumerate(offsets):
        flipped.write_bytes(data)
        flip_bit(flipped, offset, bit=number % 8)
        try:
            checkpoint = read_checkpoint(flipped)
            model = load_checkpoint_model(checkpoint, flipped)
        except CheckpointError as error:
            one_line_error(error, flipped)
            outcomes["refused"] += 1
            if parse_failure is None and "corrupt or truncated" in str(error):
                parse_failure = offset, number % 8
            continue
        assert checkpoint["seqflows"] == original["seqflows"], (offset, number % 8)
        for name, tensor in original["state_dict"].items():
            assert torch.equal(checkpoint["state_dict"][name], tensor), (offset, name)
            assert torch.equal(model.state_dict()[name[len("model.") :]], tensor), (offset, name)
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 100, outcomes  # most bits matter
    # The command line says the same in one line, exit status 2.
    assert parse_failure is not None
    flipped.write_bytes(data)
    flip_bit(flipped, *parse_failure)
    capsys.readouterr()
    assert main(["evaluate", str(flipped)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"seqflows: error: {flipped}: corrupt")
