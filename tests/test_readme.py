"""The README's Python example runs as written (the paper's 1-AF at full size)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_inverts() -> None:
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None, "README has no Python example"
    namespace: dict = {}
    exec(compile(block.group(1), str(README), "exec"), namespace)
    x, x_again = namespace["x"], namespace["x_again"]
    torch.testing.assert_close(x_again, x, rtol=1e-4, atol=1e-4)
    assert namespace["future"].shape == (16, 10, 1, 64, 64)
    assert namespace["out"].noise.shape == (16, 10, 1, 64, 64)
    assert namespace["model"].burn_in == 3
    assert -10 < namespace["nats"] < 10
    assert abs(namespace["corr_x"]) < 0.05  # the example's x is uniform noise: no correlation
