"""The README's Python example runs as written (the paper's 1-AF at full size)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_inverts() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) == 4, "README should have the flow, SLVM, saving and series examples"
    namespace: dict = {}
    for block in blocks[:2]:  # the second continues the first
        exec(compile(block, str(README), "exec"), namespace)
    x, x_again = namespace["x"], namespace["x_again"]
    torch.testing.assert_close(x_again, x, rtol=1e-4, atol=1e-4)
    assert namespace["future"].shape == (16, 10, 1, 64, 64)
    assert namespace["out"].noise.shape == (16, 10, 1, 64, 64)
    assert namespace["model"].burn_in == 3
    assert -10 < namespace["nats"] < 10
    assert abs(namespace["corr_x"]) < 0.05  # the example's x is uniform noise: no correlation
    assert namespace["elbo"].shape == (2, 10) and namespace["bound"].shape == (2,)
    assert namespace["predicted"].shape == (2, 10, 1, 64, 64)
    assert namespace["slvm"].burn_in == 3


def test_readme_saving_example_runs(tmp_path) -> None:
    """The third block, on a model saved where the README loads a trained one from."""
    import seqflows
    from seqflows.data import Preprocessing

    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)[2]
    saved = seqflows.FlowModel((1, 8, 8), hidden=4).eval()
    folder = saved.save_pretrained(tmp_path / "trained", Preprocessing("gaussian"))
    block = block.replace('"runs/bouncing_balls_1af/checkpoints/best.ckpt"', repr(str(folder)))
    block = block.replace('"models/balls_1af"', repr(str(tmp_path / "models")))
    namespace: dict = {"torch": torch, "seqflows": seqflows}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["score"].shape == (1, 13 - 3) and torch.isfinite(namespace["score"]).all()
    assert namespace["same"].config == saved.config


def test_readme_series_example_gives_the_datas_units(tmp_path) -> None:
    """The fourth block, on a series model saved with its standardisation: the prediction comes
    back in the data's units (values near 1000), not standardised ones (near 0)."""
    import numpy as np

    import seqflows
    from seqflows.data import Preprocessing

    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)[3]
    rng = np.random.default_rng(0)
    series = 1000 + 50 * rng.standard_normal((6, 12, 2))  # (N, T, D) around 1000
    np.save(tmp_path / "series.npy", series)
    standardisation = Preprocessing("none", mean=(1000.0, 1000.0), std=(50.0, 50.0))
    saved = seqflows.FlowModel((2,), window=3, conditioner="mlp", hidden=4).eval()
    folder = saved.save_pretrained(tmp_path / "trained", standardisation)
    block = block.replace('"runs/series/checkpoints/best.ckpt"', repr(str(folder)))
    block = block.replace('"series.npy"', repr(str(tmp_path / "series.npy")))
    namespace: dict = {"torch": torch, "seqflows": seqflows}
    exec(compile(block, str(README), "exec"), namespace)
    future, log_p = namespace["future"], namespace["log_p"]
    assert future.shape == (4, 10, 2) and future.dtype == torch.float64
    assert 500 < float(future.mean()) < 1500
    assert log_p.shape == (4, 12 - 3) and torch.isfinite(log_p).all()


def test_readme_says_how_to_install_the_cpu_wheel_and_the_train_extra() -> None:
    text = README.read_text()
    section = text[text.index("## Installing with pip") :]
    section = section[: section.index("\n## ", 1)]
    block = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines()]
    # The CPU wheel of torch first, so that seqflows' own install finds torch there already.
    assert commands == [
        "pip install torch --index-url https://download.pytorch.org/whl/cpu",
        'pip install "seqflows[train]"',
    ]
    assert 'pip install ".[train]"' in block  # from a checkout
    # The one line that seqflows train says without the extra (tests/test_cli.py checks it).
    assert "`seqflows train needs Lightning: pip install 'seqflows[train]'`" in section
