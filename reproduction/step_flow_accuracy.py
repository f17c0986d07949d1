r"""Accuracy of conditional MAF / NSF across the dimensions of a step: zuko's beside seqflows'.

``python -m reproduction.step_flow_accuracy --out results/series`` (seconds) writes
``accuracy.json``. Each flow (D = 3, context of 3 numbers, 2 transforms, 16 hidden units) is
trained in float32 for 300 Adam steps on a dependent, non-Gaussian target on the standardised
scale (x_2 = x_1^2 - 1 + noise, x_3 = sin(2 x_2) + context), then measured on 4,096 standardised
points (N(0, I), plus 64 points at 4 to 6 standard deviations):

* ``round_trip``: max |f^{-1}(f(x)) - x| in float32 (f: data -> noise);
* ``log_det``: max |log |det df/dx| (float32) - log |det J| (float64 autograd Jacobian of the
  same weights)|;
* ``identity_at_init``: max |f(x) - x| of the untrained flow (0: it starts as N(0, I));
* ``bf16``: the max difference of log p(x | c) under bfloat16 weights and inputs from float32,
  or the error raised;
* ``held_out_nats``: minus the mean log p(x | c) of 512 of those points (drawn apart from the
  training batches): how well each fitted the target in the same steps.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from seqflows.atomic import write_text_atomically
from seqflows.step_flows import make_step_base

D, CONTEXT, HIDDEN, STEPS = 3, 3, 16, 300


def _data(points: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    context = torch.randn(points, CONTEXT, generator=generator)
    first = torch.randn(points, generator=generator)
    second = first**2 - 1 + 0.3 * torch.randn(points, generator=generator)
    third = torch.sin(2 * second) + context[:, 0] + 0.3 * torch.randn(points, generator=generator)
    x = torch.stack([first, second, third], 1)
    return (x - x.mean(0)) / x.std(0), context


class _Zuko(torch.nn.Module):
    """zuko's conditional MAF or NSF as data -> noise, log-det, inverse."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        import zuko

        flow = zuko.flows.NSF if kind == "nsf" else zuko.flows.MAF
        self.flow = flow(D, context=CONTEXT, transforms=2, hidden_features=(HIDDEN, HIDDEN))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flow(c).transform.call_and_ladj(x)

    def inverse(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.flow(c).transform.inv(z)


class _Ours(torch.nn.Module):
    """seqflows' within-step base (:mod:`seqflows.step_flows`), its context network on c."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.base = make_step_base(kind, (D,), window=1, hidden=HIDDEN, layers=2)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base.to_noise(x, self.base.context_network(c))

    def inverse(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.base.from_noise(z, self.base.context_network(c))


def _log_prob(flow: torch.nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    noise, log_det = flow(x, c)
    return torch.distributions.Normal(0.0, 1.0).log_prob(noise.float()).sum(-1) + log_det.float()


def measure(make: Callable[[], torch.nn.Module], seed: int = 0) -> dict[str, float | str]:
    """The four measurements of one flow."""
    torch.manual_seed(seed)
    flow = make()
    generator = torch.Generator().manual_seed(seed)
    x, c = _data(4096, generator)
    tails = torch.randn(64, D, generator=generator)
    tails = (
        tails / tails.norm(dim=1, keepdim=True) * (4 + 2 * torch.rand(64, 1, generator=generator))
    )
    x = torch.cat([x, tails])
    c = torch.cat([c, torch.randn(64, CONTEXT, generator=generator)])
    with torch.no_grad():
        identity = float((flow(x, c)[0] - x).abs().max())
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(STEPS):
        target, context = _data(256, generator)
        optimizer.zero_grad()
        (-_log_prob(flow, target, context).mean()).backward()
        optimizer.step()
    with torch.no_grad():
        noise, log_det = flow(x, c)
        round_trip = float((flow.inverse(noise, c) - x).abs().max())
        reference = _log_prob(flow, x[:512], c[:512])
    exact = flow.double()
    errors = []
    for row in range(256):
        point, context = x[row].double(), c[row : row + 1].double()
        jacobian = torch.autograd.functional.jacobian(
            lambda v, context=context: exact(v[None], context)[0][0], point
        )
        errors.append(float((log_det[row].double() - torch.linalg.slogdet(jacobian)[1]).abs()))
    try:
        half = flow.to(torch.bfloat16)
        with torch.no_grad():
            low = _log_prob(half, x[:512].bfloat16(), c[:512].bfloat16())
        bf16: float | str = float((low - reference).abs().max())
    except Exception as error:  # noqa: BLE001 (what fails is the measurement)
        bf16 = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return {
        "round_trip": round_trip,
        "log_det": max(errors),
        "identity_at_init": identity,
        "bf16": bf16,
        "held_out_nats": float(-reference.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduction.step_flow_accuracy")
    parser.add_argument("--out", type=Path, default=Path("results/series"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    flows = {"zuko": _Zuko, "seqflows": _Ours}
    results = {
        f"{library} {kind}": measure(lambda make=make, kind=kind: make(kind))
        for library, make in flows.items()
        for kind in ("maf", "nsf")
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "accuracy.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
