"""Model configurations by composition (issue 25, item 3): each holds only settings its model
uses, the flat names of earlier versions still build the same models, and old files migrate."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

from seqflows import SLVM, FlowModel
from seqflows.app.config import Config
from seqflows.config import build, choices
from seqflows.errors import ConfigError
from seqflows.flows import FlowConfig
from seqflows.latent_prior import PriorFlowConfig
from seqflows.slvm import SLVMConfig
from seqflows.transforms import AffineConfig, ConditionerConfig, SplineConfig, StackConfig

FIXTURES = Path(__file__).parent / "fixtures"
IMAGE = (1, 8, 8)
SMALL_LATENT = {"latent_dim": 2, "lstm_hidden": 4, "encoder_features": 4, "conv_width": 2}
# Settings that change how a model computes, not what: recomputed activations give the same
# numbers (tests/test_checkpointing.py checks that); the transform's kind is its type, and the
# conditioner's kind of frames (C, H, W) can only be "conv" ("auto" chooses it): the kinds are
# compared on vectors below.
SAME_NUMBERS = {"checkpoint_activations", "type", "kind"}
# Likewise, the encoder and the decoder of frames are convolutional; mlp_hidden sizes those of
# vectors (compared on vectors below).
VECTOR_ONLY = {"mlp_hidden", "likelihood_base"}
# The conditioner of a flow prior is an MLP or a linear map: the settings of the conv
# conditioner (normalization, BatchNorm statistics, padding) do not apply to it.
CONV_ONLY = {"normalization", "batch_norm", "padding"}


def reference_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "write_compose_reference", FIXTURES / "write_compose_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_models_built_from_flat_settings_are_those_of_before_the_composition():
    """The same parameter names, initial weights and scores as the code before the composition
    computed them (tests/fixtures/compose_reference.json, written on an AVX-512 CPU by the code
    of f689454): weights (per-tensor sums) and scores to float32's rounding, since the CPU's
    kernels (AVX-512 or AVX2) decide their last digits."""
    module = reference_module()
    expected = json.loads((FIXTURES / "compose_reference.json").read_text())
    assert set(expected) == set(module.MODELS)
    for name, spec in module.MODELS.items():
        found = module.reference(*spec)
        assert found["keys"] == expected[name]["keys"], name
        sums = pytest.approx(expected[name]["weight_sums"], rel=1e-5, abs=1e-5)
        assert found["weight_sums"] == sums, name
        assert found["scores"] == pytest.approx(expected[name]["scores"], rel=1e-5), name


def signature(config: Any, shape: tuple[int, ...]) -> tuple:
    """What a model of ``config`` is and computes: its burn-in, its weights (seed 0), its
    training loss and its per-frame scores of a fixed batch, in training mode."""
    torch.manual_seed(0)
    model = (FlowModel if config.type == "flow" else SLVM)(shape, config)
    batch = torch.Generator().manual_seed(1)
    x = torch.rand(2, 6, *shape, generator=batch)
    c = torch.randn(2, 6, config.condition_dim, generator=batch) if config.condition_dim else None
    loss = model.loss(x, torch.Generator().manual_seed(2), conditions=c).loss
    scores = model.scores(x, torch.Generator().manual_seed(2), conditions=c).log_prob
    weights = [
        (key, tuple(value.shape), value.sum().item()) for key, value in model.state_dict().items()
    ]
    return model.burn_in, weights, loss.item(), scores.tolist()


def other_values(config: Any, name: str) -> list[Any]:
    """Values of the field ``name`` of ``config`` other than its current one (a setting is
    used when one of them changes the model: ``likelihood_loc=None`` means the one of the two
    choices that suits the model)."""
    value = getattr(config, name)
    hint = typing.get_type_hints(type(config))[name]
    special = {
        "min_scale": [0.9],
        "max_scale": [1.1],
        "bound": [0.5],
        "lstm_layers": [3],
        "burn_in": [1],
        "prior": [PriorFlowConfig()],
        "likelihood": [StackConfig(conditioner=ConditionerConfig(window=1, hidden=4))],
    }
    if name in special:
        return special[name]
    if isinstance(value, bool):
        return [not value]
    allowed = [item for item in choices(hint) if item != value]
    if allowed:
        return allowed
    if isinstance(value, int):
        return [value + 1]
    raise AssertionError(f"no other value for {name}")


def changed_fields(config: Any, prefix: str = "", skip: frozenset[str] = frozenset()):
    """(path, [changed configs]) for every leaf setting of ``config``, one setting at a time."""
    for field in dataclasses.fields(config):
        name, value = field.name, getattr(config, field.name)
        if name in SAME_NUMBERS or name in VECTOR_ONLY or name in skip:
            continue
        if dataclasses.is_dataclass(value):
            inner_skip = skip | CONV_ONLY if isinstance(value, PriorFlowConfig) else skip
            for path, changed in changed_fields(value, f"{prefix}{name}.", inner_skip):
                yield path, [dataclasses.replace(config, **{name: item}) for item in changed]
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            for index, item in enumerate(value):
                for path, changed in changed_fields(item, f"{prefix}{name}.{index}.", skip):
                    yield (
                        path,
                        [
                            dataclasses.replace(
                                config, **{name: [*value[:index], other, *value[index + 1 :]]}
                            )
                            for other in changed
                        ],
                    )
        else:
            yield (
                f"{prefix}{name}",
                [
                    dataclasses.replace(config, **{name: other})
                    for other in other_values(config, name)
                ],
            )


LIVE = {"identity_init": False}  # trained-looking weights, so that every setting shows
CONFIGS = {
    "2-AF (spline, affine)": FlowConfig.from_settings(
        transforms=["spline", "affine"], num_transforms=2, window=1, hidden=4, **LIVE
    ),
    "SLVM": SLVMConfig.from_settings(**SMALL_LATENT),
    "SLVM w/ 1-AF, flow prior": SLVMConfig.from_settings(
        **SMALL_LATENT,
        num_transforms=1,
        window=1,
        hidden=4,
        prior_transforms=["spline"],
        bins=3,
        **LIVE,
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_setting_of_a_models_config_changes_the_model(name):
    config = CONFIGS[name]
    before = signature(config, IMAGE)
    paths = []
    # burn_in and train_frames choose the baseline's context and training frames: with a
    # likelihood the context is the flow's M*k and "all" frames are the scored ones.
    with_flow = getattr(config, "likelihood", None) is not None
    skip = frozenset({"burn_in", "train_frames"} if with_flow else ())
    # The settings of the bases beyond the paper serve their base only (documented exception):
    # base_layers the masked ones (maf, nsf), glow_* the flow within the frame.
    skip |= {"base_layers", "glow_coupling", "glow_levels", "glow_hidden"}
    for path, changed in changed_fields(config, skip=skip):
        differs = any(signature(other, IMAGE) != before for other in changed)
        assert differs, f"{name}: {path} changes nothing"
        paths.append(path)
    assert len(paths) >= 8


def test_the_settings_of_vector_frames_change_the_model():
    kinds = [FlowConfig.from_settings(conditioner=kind, **LIVE) for kind in ("mlp", "linear")]
    assert signature(kinds[0], (3,)) != signature(kinds[1], (3,))
    widths = [SLVMConfig.from_settings(**SMALL_LATENT, mlp_hidden=size) for size in (4, 5)]
    assert signature(widths[0], (3,)) != signature(widths[1], (3,))
    bases = [  # the within-step likelihoods add their own weights
        SLVMConfig.from_settings(**SMALL_LATENT, latent={"likelihood_base": base})
        for base in ("diagonal", "full_covariance", "maf")
    ]
    diagonal, full_covariance, maf = (signature(config, (3,)) for config in bases)
    assert diagonal != full_covariance and diagonal != maf and full_covariance != maf


def leaf_names(values: dict[str, Any]):
    """The names of the settings in nested ``values``."""
    for key, value in values.items():
        yield key
        if isinstance(value, dict):
            yield from leaf_names(value)


def test_the_baseline_slvm_holds_no_flow_settings():
    config = SLVMConfig()
    assert config.likelihood is None and config.prior is None
    held = set(leaf_names(dataclasses.asdict(config)))
    flow_settings = {"window", "hidden", "conditioner", "bins", "bound", "min_scale", "padding"}
    assert not held & flow_settings and {"latent_dim", "burn_in"} <= held
    assert FlowConfig().transforms == [AffineConfig()]  # an affine transform has no bins
    assert not hasattr(AffineConfig(), "bins") and SplineConfig().bins == 8


def test_flat_names_map_to_their_nested_places():
    config = build(
        SLVMConfig,
        {"num_transforms": 1, "window": 2, "hidden": 8, "conditioner": "linear",
         "latent_dim": 5, "batch_norm": "per_step", "prior_transforms": ["affine"],
         "prior_window": 2, "bins": 4},
    )  # fmt: skip
    assert (
        config.likelihood.conditioner.window == 2
        and config.likelihood.conditioner.kind == "linear"
    )
    assert config.likelihood.transforms == [AffineConfig()]  # bins: spline transforms only
    assert config.latent.latent_dim == 5 and config.latent.batch_norm == "per_step"
    assert config.likelihood.conditioner.batch_norm == "per_step"
    assert config.prior.conditioner.window == 2 and config.prior.conditioner.hidden == 8
    assert config.burn_in_frames == 2 and config.num_transforms == 1
    baseline = build(SLVMConfig, {"window": 2, "hidden": 8})  # the baseline's window: its burn-in
    assert baseline.burn_in == 2 and baseline.likelihood is None
    assert build(SLVMConfig, {"num_transforms": 0}) == SLVMConfig()
    flow = FlowConfig.from_settings(num_transforms=2, window=3, conditioner="conv")
    assert flow.kinds == ["affine", "affine"] and flow.burn_in_frames == 6
    assert FlowConfig.from_settings(flow, num_transforms=1).num_transforms == 1
    with pytest.raises(ConfigError, match="transforms lists 1 kinds for num_transforms=2"):
        FlowConfig.from_settings(transforms=["spline"], num_transforms=2)


def test_nested_and_flat_overrides_build_the_same_configuration():
    nested = Config.from_dict(
        {"model": {"transforms": [{"type": "spline", "bins": 4}], "conditioner": {"kind": "mlp"}}},
        ["model.conditioner.hidden=16", "model.transforms.0.bound=2.0"],
    ).model
    flat = Config.from_dict(
        {}, ["model.transforms=[spline]", "model.bins=4", "model.bound=2.0",
             "model.conditioner=mlp", "model.hidden=16"],
    ).model  # fmt: skip
    assert nested == flat
    assert nested.transforms == [SplineConfig(bins=4, bound=2.0)]
    with pytest.raises(ConfigError, match=r"'model.conditioner.hiden'.*override"):
        Config.from_dict({}, ["model.conditioner.hiden=16"])
    with pytest.raises(ConfigError, match="model.latent_dim is a setting of model.type=slvm"):
        Config.from_dict({}, ["model.latent_dim=8"])


def test_folders_saved_with_flat_configurations_load_migrated_and_score_as_before(tmp_path):
    """tests/fixtures/v2_saved: written by the code before the composition (flat configs)."""
    import seqflows

    folder = FIXTURES / "v2_saved"
    module_spec = importlib.util.spec_from_file_location(
        "write_v2", FIXTURES / "write_v2_saved.py"
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    expected = json.loads((folder / "expected.json").read_text())
    for name in module.MODELS:
        model = seqflows.load(folder / name)
        assert module.scores(model) == expected[name], name
        again = seqflows.load(model.save_pretrained(tmp_path / name))  # now nested
        assert again.config == model.config and module.scores(again) == expected[name]
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["_class_name"] == type(model).__name__
    spline = seqflows.load(folder / "spline_2af").config
    assert spline.transforms == [SplineConfig(bins=3), AffineConfig()]
    assert spline.conditioner.window == 1 and spline.context == "padded"
    slvm = seqflows.load(folder / "slvm_1af_prior").config
    assert slvm.likelihood.conditioner.window == 2 and slvm.prior.conditioner.window == 1
    assert slvm.prior.conditioner.identity_init is False and slvm.burn_in_frames == 2
