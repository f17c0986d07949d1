"""Activation checkpointing (``model.checkpoint_activations``): the same losses, gradients and
BatchNorm statistics as without it, with the networks run again in the backward pass."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from seqflows import SLVM, FlowConfig, FlowModel, SLVMConfig
from seqflows.app.config import Config
from seqflows.config import build
from seqflows.saving import model_config

FRAME = (1, 8, 8)


def _twins(cls: type, event_shape: tuple[int, ...], **settings: object) -> tuple[nn.Module, ...]:
    """The same model (same weights, train mode, float64) without and with checkpointing."""
    torch.manual_seed(0)
    plain = cls(event_shape, **settings).double()
    checkpointed = cls(event_shape, checkpoint_activations=True, **settings).double()
    checkpointed.load_state_dict(plain.state_dict())
    return plain.train(), checkpointed.train()


def _step(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    """Loss, gradients and buffers (BatchNorm statistics) after one forward and backward."""
    loss = model.loss(x, torch.Generator().manual_seed(3)).loss
    loss.backward()
    parameters = model.named_parameters()
    gradients = {name: p.grad.clone() for name, p in parameters if p.grad is not None}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return loss.detach(), gradients, buffers


def _count_convolution_calls(model: nn.Module) -> list[int]:
    """A list whose length grows by one per forward call of any convolution of ``model``."""
    calls: list[int] = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _assert_same_step(plain: nn.Module, checkpointed: nn.Module, x: torch.Tensor) -> None:
    plain_calls = _count_convolution_calls(plain)
    checkpointed_calls = _count_convolution_calls(checkpointed)
    loss, gradients, buffers = _step(plain, x)
    loss_c, gradients_c, buffers_c = _step(checkpointed, x)
    torch.testing.assert_close(loss_c, loss, rtol=1e-12, atol=1e-10)
    assert gradients_c.keys() == gradients.keys() and gradients
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradients_c[name], gradient, rtol=1e-9, atol=1e-10, msg=name)
    # BatchNorm's running statistics and counts moved once, as without checkpointing.
    assert any("running_mean" in name for name in buffers)
    assert buffers_c.keys() == buffers.keys()
    for name, buffer in buffers.items():
        assert torch.equal(buffers_c[name], buffer), name
    # The checkpointed model did run its convolutions again in the backward pass.
    assert len(plain_calls) > 0 and len(checkpointed_calls) > len(plain_calls)


@pytest.mark.parametrize("batch_norm", ["pooled", "per_step"])
def test_checkpointed_flow_trains_as_the_plain_one(batch_norm):
    plain, checkpointed = _twins(
        FlowModel, FRAME, hidden=4, window=2, batch_norm=batch_norm, identity_init=False
    )
    x = torch.randn(3, 6, *FRAME, dtype=torch.float64)
    _assert_same_step(plain, checkpointed, x)


@pytest.mark.parametrize("batch_norm", ["pooled", "per_step"])
def test_checkpointed_slvm_with_a_flow_trains_as_the_plain_one(batch_norm):
    settings = dict(
        num_transforms=1,
        window=2,
        hidden=4,
        latent_dim=4,
        lstm_hidden=8,
        encoder_features=8,
        conv_width=4,
        batch_norm=batch_norm,
        identity_init=False,
    )
    plain, checkpointed = _twins(SLVM, FRAME, **settings)
    x = torch.randn(2, 5, *FRAME, dtype=torch.float64)
    _assert_same_step(plain, checkpointed, x)


def test_checkpointed_vector_models_give_the_same_gradients():
    for cls, settings in [
        (FlowModel, dict(hidden=8, window=2, conditioner="mlp", identity_init=False)),
        (SLVM, dict(num_transforms=1, latent_dim=4, lstm_hidden=8, mlp_hidden=8, hidden=8)),
    ]:
        plain, checkpointed = _twins(cls, (3,), **settings)
        x = torch.randn(2, 6, 3, dtype=torch.float64)
        loss, gradients, _ = _step(plain, x)
        loss_c, gradients_c, _ = _step(checkpointed, x)
        torch.testing.assert_close(loss_c, loss)
        for name, gradient in gradients.items():
            torch.testing.assert_close(gradients_c[name], gradient, msg=name)


def test_checkpointing_under_bfloat16_autocast_matches_the_plain_model():
    plain, checkpointed = _twins(FlowModel, FRAME, hidden=4, window=2, identity_init=False)
    plain, checkpointed = plain.float(), checkpointed.float()
    x = torch.randn(2, 5, *FRAME)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, gradients, buffers = _step(plain, x)
        loss_c, gradients_c, buffers_c = _step(checkpointed, x)
    assert torch.equal(loss_c, loss)
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradients_c[name], gradient, msg=name)
    for name, buffer in buffers.items():
        assert torch.equal(buffers_c[name], buffer), name


def test_no_recomputation_without_gradients():
    _, checkpointed = _twins(FlowModel, FRAME, hidden=4, window=2)
    calls = _count_convolution_calls(checkpointed)
    with torch.no_grad():
        checkpointed.eval().log_prob(torch.randn(2, 5, *FRAME, dtype=torch.float64))
    assert len(calls) == 8  # 4 encoder and 4 decoder convolutions, each once (heads: F.conv2d)


def test_the_setting_has_one_name_and_one_default_and_old_configurations_still_load():
    assert FlowConfig().checkpoint_activations is False
    assert SLVMConfig().checkpoint_activations is False
    with_flow = SLVMConfig.from_settings(num_transforms=1, checkpoint_activations=True)
    assert with_flow.flow.checkpoint_activations
    config = Config.from_dict({}, ["model.type=slvm", "model.checkpoint_activations=true"])
    assert config.model.checkpoint_activations is True
    # A model section stored before the setting existed: the default.
    stored = dataclasses.asdict(FlowConfig())
    del stored["checkpoint_activations"]
    assert model_config(stored).checkpoint_activations is False
    with pytest.raises(Exception, match="model.checkpoint_activations must be bool"):
        build(FlowConfig, {"checkpoint_activations": "sometimes"}, prefix="model.")


def test_checkpointed_model_loads_the_weights_of_a_plain_one(tmp_path):
    torch.manual_seed(0)
    plain = FlowModel(FRAME, hidden=4, window=2)
    folder = plain.save_pretrained(tmp_path / "plain")
    loaded = FlowModel.from_pretrained(folder)
    again = FlowModel(FRAME, dataclasses.replace(loaded.config, checkpoint_activations=True))
    again.load_state_dict(loaded.state_dict())  # the same parameters and buffers
    x = torch.randn(2, 5, *FRAME)
    assert torch.equal(again.eval().log_prob(x), loaded.log_prob(x))


def test_a_run_may_resume_with_checkpointing_switched_on_but_not_with_another_model():
    from seqflows.app.checkpoints import CheckpointError
    from seqflows.app.task import SequenceTask

    stored = Config.from_dict({}, ["model.hidden=4"])
    task = SequenceTask(stored, FRAME)
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    resumed = SequenceTask(
        Config.from_dict({}, ["model.hidden=4", "model.checkpoint_activations=true"]), FRAME
    )
    resumed.on_load_checkpoint(checkpoint)  # accepted: the same model
    other = SequenceTask(Config.from_dict({}, ["model.hidden=8"]), FRAME)
    with pytest.raises(CheckpointError, match="conditioner.hidden: 4 vs 8"):
        other.on_load_checkpoint(checkpoint)
