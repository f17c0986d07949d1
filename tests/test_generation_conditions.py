"""Conditions of generated frames: from the data or from a file (``seqflows sample`` and
``seqflows predict`` with ``--conditions``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seqflows import FlowModel
from seqflows.app.conditions import generation_conditions, read_conditions
from seqflows.app.prediction import _predict_batch
from seqflows.errors import ConfigError, NonFiniteError

from helpers import TINY_RUN, captured_figures


def test_conditions_files_in_every_format_give_the_same_array(tmp_path: Path) -> None:
    values = np.array([[0.5, -1.0], [2.0, 0.0], [-0.25, 3.0]], dtype=np.float32)
    np.save(tmp_path / "future.npy", values)
    np.savez(tmp_path / "future.npz", conditions=values, other=np.zeros(3))
    np.savez(tmp_path / "only.npz", values)
    (tmp_path / "future.csv").write_text("push_row,push_column\n0.5,-1\n2,0\n-0.25,3\n")
    (tmp_path / "bare.csv").write_text("0.5,-1\n2,0\n\n-0.25,3\n")  # no header, a blank line
    for name in ("future.npy", "future.npz", "only.npz", "future.csv", "bare.csv"):
        read = read_conditions(tmp_path / name)
        assert read.dtype == np.float32
        np.testing.assert_array_equal(read, values, err_msg=name)
    np.save(tmp_path / "each.npy", np.stack([values, -values]))
    assert read_conditions(tmp_path / "each.npy").shape == (2, 3, 2)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such conditions file"),
        ("bad.txt", "1,2\n", r"\.npy, \.npz or \.csv"),
        ("ragged.csv", "1,2\n3\n", "every row needs the same A"),
        ("words.csv", "a,b\n1,2\nx,3\n", "row 2 of conditions is not all numbers"),
        ("nan.csv", "1,2\nnan,3\n", r"at \(1, 0\) is not a finite number"),
        ("header.csv", "a,b\n", "no rows of conditions"),
    ],
)
def test_bad_conditions_files_name_the_file_and_the_problem(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        read_conditions(path)
    assert str(path) in str(error.value)


def test_bad_conditions_arrays_name_the_file_and_the_problem(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros(4))
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    for name, message in [
        ("flat.npy", r"shape \(L, A\) or \(N, L, A\), got \(4,\)"),
        ("two.npz", "name the conditions' array 'conditions'"),
        ("text.npy", "must be numbers"),
    ]:
        with pytest.raises(ConfigError, match=message):
            read_conditions(tmp_path / name)


def test_the_context_keeps_the_datas_conditions_and_a_file_replaces_the_future(
    tmp_path: Path,
) -> None:
    known = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)  # (N, c + L, A)
    # From the data: the context's and the future's conditions as they were.
    torch.testing.assert_close(generation_conditions(2, 2, 2, 3, known), known)
    # From a file (L, A): the same future for every sequence, after each one's own context.
    future = np.array([[9.0, 8.0], [7.0, 6.0], [5.0, 4.0]], dtype=np.float32)
    np.save(tmp_path / "future.npy", future)
    steps = generation_conditions(2, 2, 2, 3, known, tmp_path / "future.npy")
    assert steps.shape == (2, 5, 2)
    torch.testing.assert_close(steps[:, :2], known[:, :2])
    torch.testing.assert_close(steps[:, 2:], torch.from_numpy(future).expand(2, 3, 2))
    # No context: the file alone; an unconditioned model: nothing.
    alone = generation_conditions(2, 3, 0, 3, None, tmp_path / "future.npy")
    torch.testing.assert_close(alone, torch.from_numpy(future).expand(3, 3, 2))
    assert generation_conditions(0, 2, 2, 3, None) is None


def test_missing_or_mismatched_conditions_are_refused(tmp_path: Path) -> None:
    known = torch.zeros(2, 4, 2)
    np.save(tmp_path / "three.npy", np.zeros((3, 3), dtype=np.float32))
    np.save(tmp_path / "short.npy", np.zeros((1, 2), dtype=np.float32))
    np.save(tmp_path / "others.npy", np.zeros((3, 3, 2), dtype=np.float32))
    cases = [
        ((0, 2, 1, 3, None, tmp_path / "three.npy"), "takes no conditions"),
        ((2, 2, 1, 3, None), "no conditions of the context frames"),
        ((3, 2, 1, 3, known), "the data's conditions have 2 values per step, the model takes 3"),
        ((2, 2, 1, 5, known), "gives the conditions of 3 of the 5 frames.*--conditions FILE"),
        ((2, 2, 1, 3, known, tmp_path / "three.npy"), "3 conditions per step, the model takes 2"),
        ((2, 2, 1, 3, known, tmp_path / "short.npy"), "conditions of 1 frames, 3 are generated"),
        ((2, 2, 1, 3, known, tmp_path / "others.npy"), "conditions of 3 sequences, 2 are"),
    ]
    for arguments, message in cases:
        with pytest.raises(ConfigError, match=message):
            generation_conditions(*arguments)


def test_predictions_of_a_conditioned_flow_follow_the_given_conditions() -> None:
    torch.manual_seed(0)
    model = FlowModel((1, 6, 6), window=1, hidden=4, condition_dim=2).eval()
    conditioner = model.transforms[0].conditioner
    with torch.no_grad():  # no longer the identity: the conditions move the shift
        conditioner.condition_layer.weight.normal_(0, 3.0)
        conditioner.shift_head.weight.normal_(0, 0.3)
    observed = torch.rand(2, 1, 1, 6, 6)
    real = torch.rand(2, 3, 1, 6, 6)
    conditions = torch.randn(2, 4, 2)

    def metrics(steps: torch.Tensor) -> dict:
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return _predict_batch(model, observed, real, 3, 4, 8, generator, steps)[0]

    same = metrics(conditions)
    again = metrics(conditions.clone())
    other = metrics(-conditions)
    for kind, values in same.items():
        for metric, scores in values.items():
            torch.testing.assert_close(scores, again[kind][metric])
    assert not torch.allclose(same["temperature_0"]["mse"], other["temperature_0"]["mse"])
    with pytest.raises(ValueError, match="condition"):
        metrics(None)  # a conditioned model needs them


# The command line -------------------------------------------------------------------------

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = [
    *TINY_RUN,
    "data.validation_sequences=2",
    "data.test_sequences=3",
    "data.size=8",
    "data.length=4",
    "model.window=1",
]


@pytest.fixture(scope="module")
def conditioned_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny 1-AF conditioned on the controlled balls' actions, trained 2 steps."""
    pytest.importorskip("lightning")
    from seqflows.app.cli import main

    folder = tmp_path_factory.mktemp("conditioned")
    config = str(CONFIGS / "controlled_balls_1af.yaml")
    arguments = ["train", config, "--out", str(folder), "--max-steps", "2", "--no-progress"]
    assert main([*arguments, *TINY]) == 0
    return str(folder / "checkpoints" / "last.ckpt")


def test_sample_takes_the_future_conditions_from_the_data_or_a_file(
    conditioned_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from seqflows.app.cli import main

    capsys.readouterr()
    command = ["sample", conditioned_checkpoint, "--num", "2", "--length", "3", "--context", "1"]
    assert main([*command, "--out", str(tmp_path / "data")]) == 0
    from_data = json.loads(capsys.readouterr().out)
    assert from_data["conditions"] == "data"
    saved = torch.load(tmp_path / "data" / "samples.pt", weights_only=True)
    assert saved["conditions"].shape == (2, 4, 2) and saved["predicted"].shape == (2, 3, 1, 8, 8)
    # "What if": a file's actions for the 3 generated frames; the context keeps the data's.
    (tmp_path / "push.csv").write_text("d_row,d_column\n1,0\n1,0\n1,0\n")
    arguments = ["--out", str(tmp_path / "file"), "--conditions", str(tmp_path / "push.csv")]
    assert main([*command, *arguments, "--temperature", "0"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert from_file["conditions"] == "file"
    given = torch.load(tmp_path / "file" / "samples.pt", weights_only=True)["conditions"]
    torch.testing.assert_close(given[:, :1], saved["conditions"][:, :1])
    torch.testing.assert_close(given[:, 1:], torch.tensor([1.0, 0.0]).expand(2, 3, 2))
    # Too few rows for the frames to generate: a one-line error naming the file.
    assert main([*command, "--length", "5", *arguments]) == 2
    error = capsys.readouterr().err
    assert "push.csv: conditions of 3 frames, 5 are generated (--length)" in error


def test_predict_scores_futures_under_the_datas_or_given_conditions(
    conditioned_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from seqflows.app.cli import main

    capsys.readouterr()
    command = ["predict", conditioned_checkpoint, "--samples", "2", "--length", "2"]
    assert main([*command, "--out", str(tmp_path / "p"), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "conditions: the data's conditions of every frame" in table and "best_of_k" in table
    np.save(tmp_path / "still.npy", np.zeros((2, 2), dtype=np.float32))
    arguments = ["--out", str(tmp_path / "q"), "--conditions", str(tmp_path / "still.npy")]
    assert main([*command, *arguments, "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"]["conditions"].endswith("still.npy")


def one_error_line(capsys: pytest.CaptureFixture[str], command: list[str]) -> str:
    """The one error line of a command that must fail with exit status 2."""
    from seqflows.app.cli import main

    capsys.readouterr()
    assert main(command) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqflows: error: "), lines
    return lines[0]


def test_conditions_beyond_float32s_safe_range_are_one_line_errors(
    conditioned_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seqflows.app.cli import main

    # 1e30 and 3e38 are finite float32 numbers, but their squares overflow inside the model
    # (a series model's predictions reach 1e33): refused before generating, with the place.
    sample = ["sample", conditioned_checkpoint, "--num", "2", "--context", "1", "--length", "2"]
    predict = ["predict", conditioned_checkpoint, "--samples", "2", "--length", "2"]
    for value in ("1e30", "3e38", "-2e19"):
        path = tmp_path / f"{value}.csv"
        path.write_text(f"d_row,d_column\n0,1\n1,{value}\n")
        for command in (sample, predict):
            out = tmp_path / f"{command[0]}{value}"
            line = one_error_line(capsys, [*command, "--out", str(out), "--conditions", str(path)])
            assert f"{path}: row 2, column 2 of conditions is {float(value):g}" in line
            assert "beyond +-1.8e+19" in line and "diverged" not in line
            assert not out.exists()  # nothing written
    each = np.zeros((2, 2, 2), dtype=np.float32)
    each[1, 0, 1] = 3e38
    np.save(tmp_path / "each.npy", each)
    arguments = ["--out", str(tmp_path / "each"), "--conditions", str(tmp_path / "each.npy")]
    line = one_error_line(capsys, [*sample, *arguments])
    assert "each.npy: sequence 2, row 1, column 2 of conditions is 3e+38" in line
    # Large values within the range are the model's to judge: still generated.
    (tmp_path / "large.csv").write_text("1e6,0\n0,-1e6\n")
    arguments = ["--out", str(tmp_path / "large"), "--conditions", str(tmp_path / "large.csv")]
    assert main([*sample, *arguments]) == 0


def test_a_conditions_file_longer_than_the_frames_generated_is_refused(
    conditioned_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from seqflows.app.cli import main

    # 2,000,000 rows for --length 10: almost certainly the wrong file; refused, not truncated.
    np.save(tmp_path / "long.npy", np.zeros((2_000_000, 2), dtype=np.float32))
    command = ["sample", conditioned_checkpoint, "--num", "2", "--context", "1", "--length", "10"]
    out = tmp_path / "s"
    line = one_error_line(
        capsys, [*command, "--out", str(out), "--conditions", str(tmp_path / "long.npy")]
    )
    assert "long.npy: conditions of 2000000 frames, but 10 are generated (--length)" in line
    assert "give exactly 10 rows" in line and not out.exists()
    # A CSV one row too long, through predict; one of the right length is used.
    (tmp_path / "four.csv").write_text("d_row,d_column\n1,0\n1,0\n1,0\n1,0\n")
    predict = ["predict", conditioned_checkpoint, "--samples", "2", "--length", "3"]
    arguments = ["--out", str(tmp_path / "p"), "--no-progress", "--json"]
    line = one_error_line(
        capsys, [*predict, *arguments, "--conditions", str(tmp_path / "four.csv")]
    )
    assert "four.csv: conditions of 4 frames, but 3 are generated (--length)" in line
    assert (
        main([*predict, *arguments, "--length", "4", "--conditions", str(tmp_path / "four.csv")])
        == 0
    )
    # Rolling origins each have their own future: one file of conditions cannot be all of them.
    line = one_error_line(
        capsys,
        [
            *predict,
            *arguments,
            "--length",
            "4",
            "--origins",
            "2",
            "--conditions",
            str(tmp_path / "four.csv"),
        ],
    )
    assert "four.csv: one conditions file gives one future, but --origins 2" in line


def test_non_finite_predictions_name_the_conditions_file_before_the_weights() -> None:
    from seqflows.app.prediction import PREDICTIONS, _check_finite

    result = {kind: {"mean": {"mse": 1.0}} for kind in PREDICTIONS}
    result["temperature_0"]["mean"]["mse"] = float("inf")
    with pytest.raises(NonFiniteError, match=r"not finite \(diverged weights\?\)"):
        _check_finite(result, "last.ckpt")
    with pytest.raises(NonFiniteError, match=r"conditions in push\.csv far beyond") as error:
        _check_finite(result, "last.ckpt", "push.csv")
    assert str(error.value).startswith("last.ckpt: the mse of the temperature_0 is inf")


def test_an_unconditioned_model_refuses_conditions(tmp_path: Path, capsys) -> None:
    pytest.importorskip("lightning")
    from seqflows.app.cli import main

    config = str(CONFIGS / "bouncing_balls_1af.yaml")
    folder = tmp_path / "run"
    arguments = ["train", config, "--out", str(folder), "--max-steps", "2", "--no-progress"]
    assert main([*arguments, *TINY]) == 0
    np.save(tmp_path / "c.npy", np.zeros((3, 2), dtype=np.float32))
    checkpoint = str(folder / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    command = ["sample", checkpoint, "--out", str(tmp_path / "s"), "--length", "3"]
    assert main([*command, "--conditions", str(tmp_path / "c.npy")]) == 2
    assert "c.npy: this model takes no conditions" in capsys.readouterr().err


def test_a_conditioned_slvm_samples_under_a_files_conditions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    pytest.importorskip("lightning")
    from seqflows.app.cli import main

    config = str(CONFIGS / "controlled_balls_slvm_1af.yaml")
    folder = tmp_path / "run"
    arguments = ["train", config, "--out", str(folder), "--max-steps", "2", "--no-progress"]
    assert main([*arguments, *TINY]) == 0
    (tmp_path / "c.csv").write_text("1,0\n1,0\n")
    checkpoint = str(folder / "checkpoints" / "last.ckpt")
    capsys.readouterr()
    command = ["sample", checkpoint, "--out", str(tmp_path / "s"), "--length", "2"]
    assert main([*command, "--conditions", str(tmp_path / "c.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["conditions"] == "file"
    saved = torch.load(tmp_path / "s" / "samples.pt", weights_only=True)
    assert saved["predicted"].shape == (4, 2, 1, 8, 8) and torch.isfinite(saved["predicted"]).all()
    torch.testing.assert_close(
        saved["conditions"][:, 1:], torch.tensor([1.0, 0.0]).expand(4, 2, 2)
    )


def test_centre_of_mass_of_known_frames() -> None:
    from seqflows.metrics import centre_of_mass

    frames = torch.zeros(2, 1, 5, 7)
    frames[0, 0, 1, 2] = 1.0
    frames[1, 0, 4, 0] = 3.0
    frames[1, 0, 0, 6] = 1.0  # weights 3 and 1: row 3, column 1.5
    frames[1, 0, 2, 2] = -5.0  # negative values weigh nothing
    torch.testing.assert_close(centre_of_mass(frames), torch.tensor([[1.0, 2.0], [3.0, 1.5]]))


def test_what_if_predicts_under_four_pushes_from_the_command_line(
    conditioned_checkpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from reproduction.what_if import main as what_if_main

    arguments = [conditioned_checkpoint, "--out", str(tmp_path), "--sequences", "2"]
    assert what_if_main([*arguments, "--length", "2", "--push", "1.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines[:4]] == ["down", "up", "right", "left"]
    assert "(a free ball: (+3.0, +0.0))" in lines[0] and lines[-1].startswith("written: ")
    report = json.loads((tmp_path / "what_if.json").read_text())
    assert report["pushes"]["left"]["without_walls"] == [-0.0, -3.0]
    assert report["protocol"]["predicted_frames"] == 2 and (tmp_path / "what_if.png").is_file()
    unconditioned = tmp_path / "plain"
    assert what_if_main([str(unconditioned / "missing.ckpt"), "--out", str(tmp_path)]) == 2
    assert "what_if: error:" in capsys.readouterr().err


def test_the_figure_of_a_conditions_file_says_the_frames_follow_it(
    conditioned_checkpoint: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    from seqflows.app.cli import main

    figures = captured_figures(monkeypatch)
    command = ["sample", conditioned_checkpoint, "--num", "2", "--length", "3", "--context", "1"]
    assert main([*command, "--out", str(tmp_path / "data")]) == 0
    (tmp_path / "push.csv").write_text("d_row,d_column\n1,0\n1,0\n1,0\n")
    arguments = ["--out", str(tmp_path / "file"), "--conditions", str(tmp_path / "push.csv")]
    assert main([*command, *arguments]) == 0
    capsys.readouterr()
    from_data, from_file = (figure.axes[0].get_title() for figure in figures)
    assert "push.csv" not in from_data and "following" not in from_data
    assert from_file.endswith("following the action of push.csv (not the data's)")
