"""seqflows.app.figures, .animation and .metrics_csv: GIF and tile layout, readable PNGs, CSV
metrics, lazy imports."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from seqflows import SLVM, FlowModel
from seqflows.app.animation import save_gif, tile_frames
from seqflows.app.figures import (
    figure_rows,
    model_label,
    save_curves,
    save_flow_rows,
    save_grid,
    save_prediction,
    save_vector_prediction,
    save_vector_rows,
)
from seqflows.app.metrics_csv import (
    read_metrics_csv,
    read_run_metrics,
    run_metrics_files,
    write_metrics_csv,
)

from helpers import captured_figures


def constant_sequences(B: int, T: int, C: int, H: int, W: int) -> torch.Tensor:
    """Frame (b, t) is constant, value (10 * b + t + 1) / 255 in every channel (+ c for RGB)."""
    values = torch.tensor([[10.0 * b + t + 1 for t in range(T)] for b in range(B)])
    frames = values.view(B, T, 1, 1, 1) + torch.arange(C).view(1, 1, C, 1, 1)
    return (frames / 255).expand(B, T, C, H, W).clone()


def read_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.suffix == ".png"
    image = iio.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 100 and image.shape[1] > 200
    assert image[..., :3].std() > 10  # not a blank page
    return image


def flow_layers(x: torch.Tensor, count: int) -> list[dict[str, torch.Tensor]]:
    layers = []
    for _ in range(count):
        layers.append(
            {
                "shift": x.roll(1, dims=0) * 0.8,
                "scale": torch.rand_like(x) + 0.1,
                "noise": torch.randn_like(x),
            }
        )
    return layers


def test_gif_round_trip_grayscale(tmp_path: Path) -> None:
    B, T, C, H, W = 3, 4, 1, 3, 5
    path = save_gif(constant_sequences(B, T, C, H, W), tmp_path / "out" / "s.gif", fps=4.0)
    assert path == tmp_path / "out" / "s.gif"
    frames = iio.imread(path, index=None)
    # columns = ceil(sqrt(3)) = 2, so 2 x 2 cells with 1-pixel separators
    assert frames.shape[:3] == (T, 2 * H + 1, 2 * W + 1)
    gray = frames if frames.ndim == 3 else frames[..., 0]
    if frames.ndim == 4:
        assert (frames[..., :3] == gray[..., None]).all()
    for t in range(T):
        for b in range(B):
            top, left = (b // 2) * (H + 1), (b % 2) * (W + 1)
            assert (gray[t, top : top + H, left : left + W] == 10 * b + t + 1).all()
        assert (gray[t, H, :] == 255).all() and (gray[t, :, W] == 255).all()
        assert (gray[t, H + 1 :, W + 1 :] == 255).all()  # the unused fourth cell
    meta = iio.immeta(path)
    assert meta["loop"] == 0
    assert meta["duration"] == 250


def test_gif_rgb_columns_and_border(tmp_path: Path) -> None:
    B, T, C, H, W = 2, 3, 3, 4, 2
    sequences = constant_sequences(B, T, C, H, W)
    sequences[1, 2, :, 0, 0] = torch.tensor([1.0, 0.0, 0.5])
    frames = iio.imread(save_gif(sequences, tmp_path / "c.gif", columns=1, border=2), index=None)
    assert frames.shape[:4] == (T, 2 * H + 2, W, 3)
    pixel = frames[2, H + 2, 0, :3].astype(int)
    assert np.abs(pixel - [255, 0, 128]).max() <= 2
    assert np.abs(frames[0, 1, 1, :3].astype(int) - [1, 2, 3]).max() <= 2
    assert (frames[:, H : H + 2] == 255).all()


def test_tile_frames_grayscale_placement() -> None:
    B, T, H, W = 2, 3, 4, 5
    sequences = torch.zeros(B, T, 1, H, W)
    sequences[1, 2, 0, 3, 4] = 1.0
    sequences[0, 1, 0, 0, 0] = 0.5
    sequences[0, 0, 0, 1, 1] = 7.0  # clipped to 1
    image = tile_frames(sequences, border=2)
    assert image.dtype == np.uint8
    assert image.shape == (B * H + 2, T * W + 2 * 2, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    assert image[H + 2 + 3, 2 * (W + 2) + 4, 0] == 255
    assert image[0, W + 2, 0] == 128  # round(0.5 * 255)
    assert image[1, 1, 0] == 255
    assert (image[H : H + 2] == 255).all() and (image[:, W : W + 2] == 255).all()
    assert (image[:H, :W][image[:H, :W] != 255] == 0).all()


def test_tile_frames_rgb_any_dtype() -> None:
    sequences = torch.zeros(1, 2, 3, 2, 2, dtype=torch.bfloat16)
    sequences[0, 1, :, 1, 0] = torch.tensor([1.0, 0.5, 0.0])
    image = tile_frames(sequences)
    assert image.shape == (2, 2 * 2 + 1, 3)
    assert image[1, 3].tolist() == [255, 128, 0]
    assert (image[:, 2] == 255).all()
    assert (image[:, :2] == 0).all()
    with pytest.raises(ValueError, match=r"sequences must have shape \(B, T, C, H, W\)"):
        tile_frames(torch.zeros(2, 1, 2, 4, 4))


@pytest.mark.parametrize("C", [1, 3])
def test_save_grid(tmp_path: Path, C: int) -> None:
    sequences = torch.rand(2, 6, C, 16, 16)
    path = save_grid(sequences, tmp_path / "a" / "grid.png", ["one", "two"], "title", 3)
    image = read_png(path)
    assert image.shape[1] > image.shape[0]  # 6 columns by 2 rows
    with pytest.raises(ValueError, match="row_labels must hold 2 labels"):
        save_grid(sequences, tmp_path / "bad.png", ["one"])


def test_save_prediction_rows(tmp_path: Path) -> None:
    context = torch.rand(2, 3, 1, 16, 16)
    real, predicted = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    both = read_png(save_prediction(context, real, predicted, tmp_path / "both.png", "pred"))
    only = read_png(save_prediction(context, None, predicted, tmp_path / "only.png"))
    assert both.shape[0] > only.shape[0] * 1.4  # four rows against two
    with pytest.raises(ValueError, match="real must have the shape of predicted"):
        save_prediction(context, real[:, :2], predicted, tmp_path / "bad.png")


@pytest.mark.parametrize("C", [1, 3])
def test_save_flow_rows_one_and_two_layers(tmp_path: Path, C: int) -> None:
    x = torch.rand(5, C, 12, 12)
    one = read_png(save_flow_rows(x, flow_layers(x, 1), tmp_path / "one.png", first_frame=2))
    two = read_png(save_flow_rows(x, flow_layers(x, 2), tmp_path / "f" / "two.png", title="2"))
    assert two.shape[0] > one.shape[0] * 1.4  # 7 rows against 4
    assert abs(two.shape[1] - one.shape[1]) < 0.1 * one.shape[1]


def test_save_flow_rows_validates_layers(tmp_path: Path) -> None:
    x = torch.rand(4, 1, 6, 6)
    layers = flow_layers(x, 2)
    del layers[1]["scale"]
    with pytest.raises(ValueError, match=r"layers\[1\] needs one of each: 'scale' \(it has"):
        save_flow_rows(x, layers, tmp_path / "bad.png")
    layers = flow_layers(x, 1)
    layers[0]["loc"] = layers[0]["shift"]  # two locations
    with pytest.raises(ValueError, match=r"layers\[0\] needs one of each: 'shift' or 'loc'"):
        save_flow_rows(x, layers, tmp_path / "bad.png")
    layers = [{"mean": x, "scale": x, "noise": x}]
    with pytest.raises(ValueError, match=r"layers\[0\] has unknown key\(s\) \['mean'\]"):
        save_flow_rows(x, layers, tmp_path / "bad.png")
    layers = flow_layers(x, 1)
    layers[0]["noise"] = torch.rand(3, 1, 6, 6)
    with pytest.raises(ValueError, match=r"layers\[0\]\['noise'\] must have the shape of x"):
        save_flow_rows(x, layers, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="x must have shape"):
        save_flow_rows(x[:, None], flow_layers(x, 1), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The matplotlib figures that the save_* functions draw, kept for inspection."""
    return captured_figures(monkeypatch)


def row_labels(figure) -> list[str]:
    return [axis.get_ylabel() for axis in figure.axes if axis.get_ylabel()]


def texts(figure) -> str:
    return " ".join(text.get_text() for text in figure.texts)


@pytest.mark.parametrize("keys", [("shift", "scale", "noise"), ("loc", "scale", "residual")])
def test_flow_rows_are_labelled_by_their_keys_with_a_colour_bar_each(tmp_path, drawn, keys):
    x = torch.rand(5, 1, 12, 12)
    layer = dict(zip(keys, (x * 0.9, x + 0.1, x - 0.5), strict=True))
    note = "loc and scale: the likelihood p(x_t | z_t)"
    read_png(save_flow_rows(x, [layer], tmp_path / "rows.png", first_frame=3, note=note))
    (figure,) = drawn
    output = "noise y" if keys[2] == "noise" else "residual"
    assert row_labels(figure) == ["x", keys[0], "scale", output]
    images = [axis for axis in figure.axes if axis.get_images()]
    assert len(images) == 4
    # every row has a colour bar, x and the location included, over [0, 1] for those
    colour_bars = [axis for axis in figure.axes if axis.axison and not axis.get_images()]
    assert len(colour_bars) == 4
    assert [axis.get_ylim() for axis in colour_bars[:2]] == [(0.0, 1.0), (0.0, 1.0)]
    # columns are time steps, numbered from first_frame, on top of the first row
    top = images[0]
    assert top.get_xlabel() == "time step t"
    assert [label.get_text() for label in top.get_xticklabels()] == ["3", "4", "5", "6", "7"]
    assert note in texts(figure).replace("\n", " ")


def test_flow_rows_of_two_transforms_name_the_intermediate_output(tmp_path, drawn):
    x = torch.rand(4, 3, 8, 8)
    save_flow_rows(x, flow_layers(x, 2), tmp_path / "rows.png")
    labels = [axis.get_ylabel() for axis in drawn[0].axes if axis.get_images()]
    assert labels == ["x", "shift 1", "scale 1", "u 2", "shift 2", "scale 2", "noise y"]


def test_vector_rows_and_predictions_are_line_plots(tmp_path, drawn):
    T, D = 7, 5
    x = torch.randn(T, D)
    layer = {"shift": x + 0.1, "scale": torch.full_like(x, 0.2), "noise": torch.randn(T, D)}
    read_png(save_vector_rows(x, [layer, layer], tmp_path / "rows.png", first_frame=2))
    rows = drawn[-1]
    assert [axis.get_title() for axis in rows.axes[:4]] == [f"dimension {d}" for d in range(4)]
    assert row_labels(rows)[:3] == ["x (transform 1)", "u 2 (transform 2)", "noise y"]
    assert list(rows.axes[0].lines[-1].get_xdata()) == list(range(2, 2 + T))  # time steps
    assert "the first 4 of 5 dimensions" in texts(rows)
    context, real = torch.randn(3, 4, D), torch.randn(3, 6, D)
    predicted, spread = torch.randn(3, 6, D), torch.randn(20, 3, 6, D)
    path = tmp_path / "prediction.png"
    read_png(save_vector_prediction(context, real, predicted, path, spread=spread, title="t"))
    prediction = drawn[-1]
    assert len(prediction.axes) == 3 * 4  # sequences x dimensions (at most 4)
    legend = [text.get_text() for text in prediction.axes[0].get_legend().get_texts()]
    assert legend == [
        "5-95% of 20 samples",
        "median",
        "context",
        "real future",
        "sampled future",
    ]
    # the sampled line starts at the last context frame and runs over the L new steps
    sampled = prediction.axes[0].lines[-1]
    assert list(sampled.get_xdata()) == list(range(3, 10))
    np.testing.assert_allclose(sampled.get_ydata()[1:], predicted[0, :, 0].numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="spread must have shape"):
        save_vector_prediction(context, real, predicted, path, spread=spread[:, :2])
    with pytest.raises(ValueError, match="real must have the shape of predicted"):
        save_vector_prediction(context, real[:, :2], predicted, path)
    with pytest.raises(ValueError, match=r"x must have shape \(T, D\)"):
        save_vector_rows(x[None], [layer], path)


def test_curves_have_readable_titles_units_and_a_caption(tmp_path, drawn):
    columns = {"train/loss": [(0.0, 2.0), (1.0, 1.0)], "val/other": [(0.0, 1.0)]}
    labels = {"train/loss": ("training loss", "nats / frame")}
    save_curves(columns, tmp_path / "c.png", title="1-AF on balls", labels=labels, note="why")
    (figure,) = drawn
    assert [axis.get_title() for axis in figure.axes] == ["training loss", "val/other"]
    assert figure.axes[0].get_ylabel() == "nats / frame"
    assert figure.axes[-1].get_xlabel() == "training step"
    assert figure.get_suptitle() == "1-AF on balls" and "why" in texts(figure)


def test_curves_of_too_few_points_say_so_instead_of_a_lone_dot(tmp_path, drawn):
    columns = {
        "train/loss": [(0.0, 2.0), (3.0, 1.5), (6.0, 1.0)],
        "val/nats_per_dim": [(60.0, 2.3125)],  # a 60-step run validating every 500 steps
        "train/scale_mean_0": [],
        "lr": [(0.0, float("nan"))],
    }
    save_curves(columns, tmp_path / "c.png")
    (figure,) = drawn
    loss, validation, empty, rate = figure.axes
    assert len(loss.lines) == 1 and len(loss.lines[0].get_xdata()) == 3
    assert [len(axis.lines) for axis in (validation, empty, rate)] == [0, 0, 0]  # no lone dot
    assert [text.get_text() for text in validation.texts] == [
        "too few points to draw: 1 (step 60: 2.312)"
    ]
    assert [text.get_text() for text in empty.texts] == ["too few points to draw: 0"]
    assert [text.get_text() for text in rate.texts] == ["no finite values"]


def test_save_curves_skips_nan(tmp_path: Path) -> None:
    columns = {
        "train/loss": [(float(i), math.exp(-i / 5)) for i in range(20)],
        "val/nats_per_dim": [(0.0, 2.0), (10.0, float("nan")), (19.0, 1.5)],
    }
    image = read_png(save_curves(columns, tmp_path / "c" / "curves.png", title="training"))
    assert image.shape[0] > 200


def test_read_metrics_csv(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "epoch,step,train/loss,val/loss,lr\n0,0,2.5,,\n0,1,2.25,,0.001\n0,1,,3.0,\n1,3,nan,,\n"
    )
    curves = read_metrics_csv(path)
    assert list(curves) == ["train/loss", "val/loss", "lr"]
    assert curves["train/loss"][:2] == [(0.0, 2.5), (1.0, 2.25)]
    assert curves["train/loss"][2][0] == 3.0 and math.isnan(curves["train/loss"][2][1])
    assert curves["val/loss"] == [(1.0, 3.0)]
    assert curves["lr"] == [(1.0, 0.001)]
    path.write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="no 'step' column"):
        read_metrics_csv(path)


def test_run_metrics_merge_every_session_in_numeric_order(tmp_path: Path) -> None:
    """version_10 comes after version_9 (as text it sorts before); a resumed session replaces,
    metric by metric, the earlier points from its first step on."""
    sessions = {
        "version_9": "epoch,step,train/loss,val/nats\n0,0,5.0,\n0,1,4.0,\n0,2,3.0,1.0\n0,3,2.5,\n",
        "version_10": "epoch,step,train/loss,val/nats\n0,2,2.9,\n0,3,2.4,\n0,5,,1.5\n",
        "version_2": "epoch,step,train/loss\n0,0,9.0\n",  # the first session
        "version_x": "epoch,step,train/loss\n0,0,1.0\n",  # not a session folder: ignored
    }
    for name, text in sessions.items():
        (tmp_path / "logs" / name).mkdir(parents=True)
        (tmp_path / "logs" / name / "metrics.csv").write_text(text)
    files = run_metrics_files(tmp_path)
    assert [path.parent.name for path in files] == ["version_2", "version_9", "version_10"]
    curves = read_run_metrics(tmp_path)
    # version_9 replaces version_2 from step 0; version_10 replaces version_9 from step 2 on:
    # its steps 2 and 3 win, version_9's losses at 0 and 1 stay.
    assert curves["train/loss"] == [(0.0, 5.0), (1.0, 4.0), (2.0, 2.9), (3.0, 2.4)]
    # version_10's validation starts at step 5: version_9's at step 2 stays.
    assert curves["val/nats"] == [(2.0, 1.0), (5.0, 1.5)]
    written = write_metrics_csv(curves, tmp_path / "out" / "metrics.csv")
    assert read_metrics_csv(written) == curves
    assert written.read_text().splitlines()[:2] == ["step,train/loss,val/nats", "0,5.0,"]
    assert read_run_metrics(tmp_path / "absent") == {}


def test_figure_rows_of_a_flow_are_each_transforms_shift_scale_and_output() -> None:
    """Eq. 15 row by row: transform m's output is (its input - shift) / scale, its input the
    previous output (x for the outermost), the last output the flow's noise y."""
    torch.manual_seed(0)
    model = FlowModel((3,), num_transforms=2, window=1, conditioner="mlp", hidden=8).eval()
    x = torch.randn(2, 6, 3)
    data, layers = figure_rows(model, x)
    torch.testing.assert_close(data, x[:, model.burn_in :])
    assert [list(layer) for layer in layers] == [["shift", "scale", "noise"]] * 2
    previous = data
    for layer in layers:
        torch.testing.assert_close(layer["noise"], (previous - layer["shift"]) / layer["scale"])
        previous = layer["noise"]
    torch.testing.assert_close(previous, model.normalize(x).noise)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_figure_rows_of_an_slvm_and_the_deprecated_rows_method(num_transforms) -> None:
    """Without a flow: the likelihood's loc, scale and residual (x - loc) / scale at the
    posterior sample; with one, the flow's rows. ``model.rows`` still gives them, warning."""
    torch.manual_seed(0)
    model = SLVM((3,), latent_dim=2, num_transforms=num_transforms, window=1, lstm_hidden=4)
    model = model.eval()
    x = torch.randn(2, 5, 3)
    data, layers = figure_rows(model, x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(data, x[:, model.burn_in :])
    (layer,) = layers
    if num_transforms:
        assert list(layer) == ["shift", "scale", "noise"]
        torch.testing.assert_close(layer["noise"], model.flow.normalize(x).noise)
    else:
        assert list(layer) == ["loc", "scale", "residual"]
        torch.testing.assert_close(layer["residual"], (data - layer["loc"]) / layer["scale"])
    with pytest.warns(DeprecationWarning, match=r"SLVM.rows is deprecated: use seqflows.app"):
        old_data, old_layers = model.rows(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(old_data, data)
    for key, value in layers[0].items():
        torch.testing.assert_close(old_layers[0][key], value, rtol=0, atol=0)


def test_model_label_names_each_model_as_the_paper_and_label_is_deprecated() -> None:
    flow = FlowModel((3,), num_transforms=2, window=1, transforms=["affine", "spline"])
    cases = {
        FlowModel((3,), window=1): "1-AF",
        flow: "2-AF (affine, spline)",
        SLVM((3,), latent_dim=2, lstm_hidden=4): "SLVM",
        SLVM((3,), latent_dim=2, lstm_hidden=4, num_transforms=1, window=1): "SLVM w/ 1-AF",
        SLVM(
            (3,), latent_dim=2, lstm_hidden=4, num_transforms=1, prior_transforms=["affine"]
        ): "SLVM w/ 1-AF, flow prior",
    }
    for model, label in cases.items():
        assert model_label(model) == label
        name = type(model).__name__
        with pytest.warns(DeprecationWarning, match=f"{name}.label is deprecated: use seqflows"):
            assert model.label == label
    with pytest.raises(TypeError, match="no label for a Linear"):
        model_label(torch.nn.Linear(1, 1))


def test_import_does_not_import_matplotlib() -> None:
    code = (
        "import seqflows.app.figures, seqflows.app.animation, seqflows.app.metrics_csv, sys\n"
        "assert not {'matplotlib', 'PIL'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_figures_leave_the_backend_and_pyplot_alone(tmp_path: Path) -> None:
    # A notebook user's session: a backend of their own and pyplot imported. Drawing every
    # figure must neither switch the backend nor leave figures registered with pyplot.
    script = tmp_path / "draw.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})  # reproduction/\n"
        "import matplotlib\n"
        "matplotlib.use('pdf')\n"
        "import matplotlib.pyplot as plt\n"
        "import torch\n"
        "from seqflows.app import animation, figures\n"
        "from reproduction.motion import plot_motion\n"
        "out = Path(sys.argv[1])\n"
        "x = torch.rand(2, 4, 1, 8, 8)\n"
        "layer = {'shift': x[0], 'scale': x[0] + 0.1, 'noise': x[0] - 0.5}\n"
        "figures.save_grid(x, out / 'grid.png')\n"
        "figures.save_prediction(x[:, :2], x[:, 2:], x[:, 2:], out / 'prediction.png')\n"
        "figures.save_flow_rows(x[0], [layer], out / 'flow.png')\n"
        "figures.save_curves({'loss': [(0, 1.0), (1, 0.5)]}, out / 'curves.png')\n"
        "figures.save_overlay({'a': [(0, 1.0), (1, 2.0)]}, out / 'overlay.png', 'nats')\n"
        "animation.save_gif(x, out / 'samples.gif')\n"
        "w = torch.randn(1, 6, 2)\n"
        "sequences = {'x': w, 'u': w, 'w': w, 'a': w, 'b': w, 'c': w}\n"
        "plot_motion({'sequences': sequences, 'models': ['a', 'b', 'c']}, out / 'motion.png')\n"
        "print(matplotlib.get_backend(), plt.get_fignums())\n"
    )
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "pdf []"
    for name in ("grid", "prediction", "flow", "curves", "overlay", "motion"):
        read_png(tmp_path / f"{name}.png")


def test_the_rows_caption_explains_the_border_with_the_measured_scales() -> None:
    from seqflows import FlowModel
    from seqflows.app.commands import rows_note

    x = torch.rand(3, 1, 8, 8)
    scale = torch.full_like(x, 0.02)
    scale[..., 0, :] = scale[..., -1, :] = scale[..., :, 0] = scale[..., :, -1] = 0.06
    rows = [{"shift": x, "scale": scale, "noise": x}]
    note = rows_note(FlowModel((1, 8, 8), window=1), rows)
    assert "pad with zeros (model.padding=zeros" in note
    assert "the outermost rows and columns is 3.00x the interior's" in note
    two = rows_note(FlowModel((1, 8, 8), window=1, num_transforms=2), rows * 2)
    assert "3.00x (transform 1), 3.00x (transform 2)" in two
    assert rows_note(FlowModel((1, 8, 8), window=1, padding="replicate"), rows) is None
    slvm_rows = [{"loc": x, "scale": scale, "residual": x}]
    assert "residual: (x_t - loc) / scale" in rows_note(FlowModel((1, 8, 8)), slvm_rows)
