"""The README's Python example runs as written (the paper's 1-AF at full size)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_inverts() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(blocks) == 2, "README should have the flow and the SLVM examples"
    namespace: dict = {}
    for block in blocks:  # the second continues the first
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
