"""Issue 25: only the project's errors are the user's, a small public API, choices written once.

A bug (any exception that is not a :class:`~seqflows.errors.SeqflowsError` or the OS error of a
path the user named) keeps its traceback; the top-level package and ``seqflows.data`` export what
users need, and the names they no longer export still work with a DeprecationWarning; the
command line's choices are the configuration's ``Literal`` types.
"""

from __future__ import annotations

import argparse
import importlib
import typing

import pytest

import seqflows
import seqflows.data
from seqflows.app import config as app_config
from seqflows.app.cli import build_parser, main
from seqflows.app.config import EvaluateConfig, TrainConfig
from seqflows.data.kth import KTH_SPLITS
from seqflows.data.video import RESIZES
from seqflows.errors import ConfigError


@pytest.mark.parametrize("bug", [ValueError, TypeError, FloatingPointError, KeyError])
def test_a_bug_in_a_command_keeps_its_traceback(monkeypatch, capsys, bug):
    def broken() -> dict[str, str]:
        raise bug("an internal invariant failed")

    monkeypatch.setattr(app_config, "available_configs", broken)
    with pytest.raises(bug, match="an internal invariant failed"):
        main(["configs"])
    assert "seqflows: error:" not in capsys.readouterr().err


def test_a_user_error_is_still_one_line_and_exit_status_2(monkeypatch, capsys):
    def refused() -> dict[str, str]:
        raise ConfigError("configs/x.yaml: model.window must be at least 1, got 0")

    monkeypatch.setattr(app_config, "available_configs", refused)
    assert main(["configs"]) == 2
    err = capsys.readouterr().err
    assert err == "seqflows: error: configs/x.yaml: model.window must be at least 1, got 0\n"


def _choices(parser: argparse.ArgumentParser, *path: str) -> tuple:
    """The choices of the option ``path[-1]`` of the subcommand ``path[:-1]``."""
    *commands, dest = path
    for command in commands:
        (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = subparsers.choices[command]
    (action,) = [action for action in parser._actions if action.dest == dest]
    return tuple(action.choices)


def _literal(config_type: type, name: str) -> tuple:
    hint = typing.get_type_hints(config_type)[name]
    return typing.get_args(hint)


def test_the_command_line_choices_are_the_configuration_literals():
    parser = build_parser()
    assert _choices(parser, "train", "precision") == _literal(TrainConfig, "precision")
    split = _literal(EvaluateConfig, "split")
    for command in ("evaluate", "sample", "predict", "visualize"):
        assert _choices(parser, command, "split") == split, command
    assert _choices(parser, "convert", "kth", "split") == tuple(KTH_SPLITS)
    for source in ("kth", "folder"):
        assert _choices(parser, "convert", source, "resize") == RESIZES


def test_a_new_choice_of_the_configuration_reaches_the_command_line(monkeypatch):
    """Written once: a precision added to TrainConfig's Literal is a choice of --precision."""
    precision = typing.Literal["32", "bf16-mixed", "16-mixed", "64", "auto", "transformer-engine"]
    monkeypatch.setitem(TrainConfig.__annotations__, "precision", precision)
    assert "transformer-engine" in _choices(build_parser(), "train", "precision")


def test_the_top_level_api_is_small_and_every_name_resolves():
    assert len(seqflows.__all__) <= 24
    assert {"FlowModel", "FlowConfig", "SLVM", "SLVMConfig", "load", "data", "errors"} <= set(
        seqflows.__all__
    )
    assert not {"retain_freed_memory", "fold_batch_norm", "allocator"} & set(seqflows.__all__)
    for name in seqflows.__all__:
        assert getattr(seqflows, name) is not None, name


# The names that the packages exported before issue 25 and now leave to their modules.
REMOVED = {
    "seqflows": {
        "allocator": ["retain_freed_memory"],
        "flows": ["FlowOutput"],
        "inference": ["fold_batch_norm"],
        "latent": ["LatentSequenceModel"],
        "transforms": [
            "AffineAutoregressiveTransform",
            "SplineAutoregressiveTransform",
            "TransformOutput",
        ],
    },
    "seqflows.data": {
        "datasets": ["item_rng"],
        "mnist": ["MNIST_FILES", "MNIST_MIRRORS", "DownloadError", "md5sum", "read_idx"],
        "moving_mnist": [
            "MOVING_MNIST_SHAPE",
            "MOVING_MNIST_SPLITS",
            "MOVING_MNIST_URL",
            "downscale_digits",
            "moving_mnist_split",
        ],
        "samplers": ["EvaluationSampler", "StreamSampler", "split_indices"],
        "scaling": ["NOISES", "check_frames", "frames_to_unit_interval", "series_statistics"],
        "simulators": ["bounce", "render_sequences"],
        "sources": ["load_conditioned_array"],
        "store": ["ShardData", "StoreError", "StoreWriter", "convert_shards", "read_manifest"],
    },
}


@pytest.mark.parametrize(
    "package, module, name",
    [
        (package, module, name)
        for package, modules in REMOVED.items()
        for module, names in modules.items()
        for name in names
    ],
)
def test_a_removed_name_warns_where_it_lives_and_still_works(package, module, name):
    package = importlib.import_module(package)
    where = f"{package.__name__}.{module}"
    assert name not in package.__all__
    with pytest.deprecated_call(match=f"use {where}.{name}"):
        value = getattr(package, name)
    assert value is getattr(importlib.import_module(where), name)


def test_from_import_of_a_removed_name_warns_too():
    with pytest.deprecated_call(match="seqflows.allocator.retain_freed_memory"):
        from seqflows import retain_freed_memory
    assert retain_freed_memory is seqflows.allocator.retain_freed_memory
    with pytest.deprecated_call(match="seqflows.data.samplers.split_indices"):
        from seqflows.data import split_indices
    assert split_indices is seqflows.data.samplers.split_indices


def test_the_data_package_exports_what_users_need():
    assert len(seqflows.data.__all__) < 40
    users = {"MovingMNIST", "FixedSequences", "ArraySource", "Preprocessing", "open_dataset"}
    assert users | {"convert_bair", "convert_kth", "convert_folder", "convert_series"} <= set(
        seqflows.data.__all__
    )
    for name in seqflows.data.__all__:
        assert getattr(seqflows.data, name) is not None, name


def test_the_reproduction_command_keeps_bad_settings_one_line(capsys, tmp_path):
    """python -m reproduction reports through seqflows.app.cli.run_reporting: a bad --sigma is
    a ConfigError, not a bug."""
    from reproduction.__main__ import main as reproduction_main

    out = tmp_path / "motion"
    assert reproduction_main(["motion", "--sigma", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "reproduction: error: sigma must be positive, got 0.0\n"
    assert not out.exists()
