"""GPU readiness, proven on CPU: every tensor the models create follows the device and dtype of
their parameters and inputs, and the training objective waits for no value (no host-device
synchronisation) beyond the one input check it documents.

The ``meta`` device has shapes, dtypes and devices but no values: a tensor created on the CPU
by mistake fails there (meta and CPU tensors do not mix), and so does any ``.item()``,
``bool(tensor)`` or ``.tolist()``, which on a GPU would wait for the device.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from seqflows import SLVM, FlowModel, flows, slvm
from seqflows.layout import cpu_gradient_layout

IMAGE = (1, 8, 8)
VECTOR = (3,)
SLVM_SIZES = dict(latent_dim=4, lstm_hidden=8, encoder_features=8, conv_width=4, mlp_hidden=8)

MODELS = {
    "flow conv": (FlowModel, IMAGE, dict(hidden=4, window=2)),
    "2-AF conv": (FlowModel, IMAGE, dict(hidden=4, window=1, num_transforms=2)),
    "flow mlp": (FlowModel, VECTOR, dict(hidden=4, window=2, conditioner="mlp")),
    "flow linear": (FlowModel, VECTOR, dict(window=2, conditioner="linear")),
    "flow spline": (FlowModel, IMAGE, dict(hidden=4, window=2, transforms=["spline"])),
    "flow padded, learned base": (
        FlowModel,
        VECTOR,
        dict(hidden=4, window=2, context="padded", base="learned"),
    ),
    "SLVM": (SLVM, IMAGE, SLVM_SIZES),
    "SLVM w/ 1-AF": (SLVM, IMAGE, dict(num_transforms=1, window=2, hidden=4, **SLVM_SIZES)),
    "SLVM w/ 1-AF vectors": (SLVM, VECTOR, dict(num_transforms=1, window=2, **SLVM_SIZES)),
}


def _model(name: str, **settings: object) -> torch.nn.Module:
    cls, event_shape, sizes = MODELS[name]
    return cls(event_shape, **sizes, **settings)


@pytest.mark.parametrize("name", list(MODELS))
def test_models_run_on_the_meta_device(name):
    """Training objective, gradients, scores, bounds and samples, all on ``meta``."""
    model = _model(name).to("meta")
    event_shape = model.event_shape
    x = torch.randn(2, 6, *event_shape, device="meta")
    scored = 6 - model.burn_in

    terms = model.train().loss(x)
    assert terms.loss.device.type == "meta" and terms.loss.shape == ()
    terms.loss.backward()
    for parameter in model.parameters():
        assert parameter.grad is not None and parameter.grad.device.type == "meta"
        assert parameter.grad.shape == parameter.shape

    model.eval()
    scores = model.scores(x)
    assert scores.log_prob.shape == (2, scored) and scores.log_prob.device.type == "meta"
    bound = model.bound(x, num_samples=3, chunk=2)
    assert bound.shape == (2,) and bound.device.type == "meta"
    if isinstance(model, FlowModel):
        assert model.log_prob(x).shape == (2, scored)
        if not model.burn_in:  # padded: samples without context
            assert model.sample(2, 3).device.type == "meta"
    else:
        assert model.elbo(x).shape == (2, scored)
        assert model.bound(x, num_samples=3).shape == (2,)
    context = x[:, : max(model.burn_in, 1)]
    sample = model.sample(2, 3, context=context)
    assert sample.shape == (2, 3, *event_shape) and sample.device.type == "meta"


@pytest.mark.parametrize("name", list(MODELS))
def test_cpu_gradients_have_their_parameters_strides(name):
    """DDP's gradient buckets take the parameters' strides and warn when a gradient's differ
    ("Grad strides do not match bucket view strides"): on the CPU, after cpu_gradient_layout,
    every gradient has exactly its parameter's strides, and the values are unchanged."""
    model = _model(name).train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    cpu_gradient_layout(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = torch.rand(2, 6, *model.event_shape, generator=torch.Generator().manual_seed(0))
    model.loss(x).loss.backward()
    mismatched = [
        (key, parameter.stride(), parameter.grad.stride())
        for key, parameter in model.named_parameters()
        if parameter.grad is not None and parameter.grad.stride() != parameter.stride()
    ]
    assert not mismatched


@pytest.mark.parametrize("name", ["SLVM", "SLVM w/ 1-AF", "SLVM w/ 1-AF vectors"])
def test_slvms_compute_in_float64_when_their_parameters_are(name):
    """The latent model's float32 islands (mixed precision) keep float64 in float64."""
    model = _model(name).double()
    x = torch.rand(2, 5, *model.event_shape, dtype=torch.float64)
    loss = model.train().loss(x, torch.Generator().manual_seed(0)).loss
    assert loss.dtype == torch.float64
    loss.backward()
    model.eval()
    assert model.elbo(x).dtype == torch.float64
    assert model.bound(x, num_samples=2).dtype == torch.float64
    sample = model.sample(2, 2, context=x[:, : max(model.burn_in, 1)])
    assert sample.dtype == torch.float64


@pytest.mark.parametrize("name", ["flow conv", "flow spline", "SLVM", "SLVM w/ 1-AF"])
def test_the_training_objective_waits_for_no_value(name, monkeypatch):
    """Loss and backward read no tensor value on the host (on a GPU each would wait for the
    device), except the documented input checks per call (``check_finite``, and
    ``split_missing``'s one read of whether the input has gaps)."""
    model = _model(name).train()
    x = torch.rand(2, 6, *model.event_shape)
    checked = []
    for module in (flows, slvm):
        monkeypatch.setattr(module, "check_finite", lambda x, name: checked.append(name))
        monkeypatch.setattr(module, "split_missing", lambda x, name="x": (x, None))

    def refuse(self: Tensor, *args: object) -> None:
        raise AssertionError("a tensor's value was read on the host")

    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(Tensor, method, refuse)
    terms = model.loss(x)
    terms.loss.backward()
    monkeypatch.undo()
    assert checked == ["x"]
    assert torch.isfinite(terms.loss)


def test_training_progress_reads_the_metrics_only_for_the_lines_it_writes(capsys):
    """Lightning turns the progress-bar metrics into Python numbers when they are asked for (on
    a GPU, a wait for the device): the progress lines ask once per line, not once per step."""
    from types import SimpleNamespace

    import torch

    from seqflows.app.callbacks import ProgressLines

    reads = []

    class Trainer(SimpleNamespace):
        @property
        def progress_bar_metrics(self) -> dict:
            reads.append(self.global_step)
            return {"train/loss": torch.tensor(float(self.global_step))}

    trainer = Trainer(max_steps=100, global_step=0, sanity_checking=False)
    progress = ProgressLines(interval=3600.0)
    progress.on_train_start(trainer, None)
    for step in range(1, 101):
        trainer.global_step = step
        progress.on_train_batch_end(trainer, None, None, None, step - 1)
    progress.on_train_end(trainer, None)
    assert reads == [100]  # the last line's, none per step
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("train: 100/100 steps (100%)") and last.endswith("loss 100")
