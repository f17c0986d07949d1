"""Helpers for the tests: small models with non-trivial weights, float64 unless asked."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from seqflows import FlowModel
from seqflows.distributions import DiagonalNormal

# Training runs of the command-line tests: tiny networks, no loader workers, and a validation,
# a checkpoint and a log line every few steps (each test adds its data's sizes).
TINY_RUN = [
    "data.num_workers=0",
    "model.hidden=4",
    "train.batch_size=2",
    "train.val_every=2",
    "train.checkpoint_every=2",
    "train.log_every=1",
]
# TINY_RUN with bouncing balls' sizes: 8x8 frames, crops of 6, small held-out splits.
TINY_BALLS = [
    *TINY_RUN,
    "data.size=8",
    "data.num_frames=12",
    "data.length=6",
    "data.validation_sequences=4",
    "data.test_sequences=6",
    "model.window=1",
    "evaluate.batch_size=4",
]
IMAGE = (1, 3, 2)  # (C, H, W): tiny, non-square, so that H/W mix-ups fail
COLOR = (2, 2, 3)
VECTOR = (3,)
WARM_UP_PASSES = 3


def conditioner_for(event_shape: tuple[int, ...], vector_kind: str = "mlp") -> str:
    return "conv" if len(event_shape) == 3 else vector_kind


def make_flow(
    event_shape: tuple[int, ...] = IMAGE,
    num_transforms: int = 1,
    window: int = 2,
    context: str = "burn_in",
    conditioner: str | None = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **kwargs: object,
) -> FlowModel:
    """A FlowModel in eval mode whose heads, BatchNorm statistics and initial frames are random.

    ``identity_init=False`` gives the heads PyTorch's default random initialisation, so shift
    and scale depend on the window; ``WARM_UP_PASSES`` training-mode passes give BatchNorm
    running statistics that are not the identity and that do normalize the activations.
    """
    torch.manual_seed(seed)
    model = FlowModel(
        event_shape,
        num_transforms=num_transforms,
        window=window,
        conditioner=conditioner or conditioner_for(event_shape),
        hidden=kwargs.pop("hidden", 4),
        context=context,
        identity_init=False,
        **kwargs,
    ).to(dtype)
    with torch.no_grad():
        if isinstance(model.base, DiagonalNormal):
            model.base.loc.normal_(0, 0.3)
            model.base.log_scale.normal_(0, 0.3)
        for transform in model.transforms:
            if transform.initial_frames is not None:
                transform.initial_frames.normal_(0, 1)
        batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for batch_norm in batch_norms:  # running statistics = average of the warm-up batches
            batch_norm.momentum = None
        model.train()
        for _ in range(WARM_UP_PASSES):
            x = torch.randn(4, model.burn_in + 3, *event_shape, dtype=dtype)
            model.log_prob(x, conditions_for(model, x))
        for batch_norm in batch_norms:
            batch_norm.momentum = 0.1
    return model.eval()


def conditions_for(model: torch.nn.Module, x: torch.Tensor, seed: int = 2) -> torch.Tensor | None:
    """Random conditions (B, T, A) of sequences x for a conditioned model, else None."""
    if not model.config.condition_dim:
        return None
    generator = torch.Generator().manual_seed(seed)
    shape = (*x.shape[:2], model.config.condition_dim)
    return torch.randn(shape, generator=generator, dtype=x.dtype)


def sequence(
    batch: int,
    length: int,
    event_shape: tuple[int, ...],
    dtype: torch.dtype = torch.float64,
    seed: int = 1,
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, *event_shape, generator=generator, dtype=dtype)


def mnist_test_digits() -> Path:
    """The real MNIST test digits of the workplace's shared folder (tests skip when absent).

    Looked up in $SEQFLOWS_MNIST_DIR, then ../shared/data/mnist beside the checkout, then
    /work/shared/data/mnist.
    """
    name = "t10k-images-idx3-ubyte.gz"
    folders = [
        os.environ.get("SEQFLOWS_MNIST_DIR", ""),
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
        "/work/shared/data/mnist",
    ]
    for folder in folders:
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    return Path(folders[-1]) / name


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """Writes uint8 ``array`` as an MNIST IDX file (gzipped when ``compress``)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}i", *array.shape)
    content = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if compress else content)


def flip_weight_bytes(checkpoint: Path) -> str:
    r"""Inverts 4 bytes in the middle of the largest weight tensor of a checkpoint file, in
    place, without touching the zip's structure (torch's reader checks no CRC); returns the
    weight's name."""
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    name, weight = max(
        ((key, value) for key, value in state.items() if value.is_floating_point()),
        key=lambda item: item[1].numel(),
    )
    data = bytearray(checkpoint.read_bytes())
    start = data.find(weight.contiguous().numpy().tobytes())
    assert start > 0, "the weight's bytes are not stored as they are"
    middle = start + weight.numel() * weight.element_size() // 2
    data[middle : middle + 4] = bytes(byte ^ 0xFF for byte in data[middle : middle + 4])
    checkpoint.write_bytes(bytes(data))
    return name


def captured_figures(monkeypatch) -> list:
    """The matplotlib figures that seqflows' figure functions save from now on (saved as well),
    for tests of their titles and labels."""
    from seqflows.app import figures

    saved: list = []
    save = figures._save_figure

    def keep(figure, path):
        saved.append(figure)
        return save(figure, path)

    monkeypatch.setattr(figures, "_save_figure", keep)
    return saved
