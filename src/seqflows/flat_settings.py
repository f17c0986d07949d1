r"""The flat model settings of seqflows 0.x and where each lives in the nested configurations.

Until configurations were composed, a model's settings were one flat list
(``window``, ``hidden``, ``num_transforms``, ``prior_transforms``, ...). Those names remain
accepted everywhere a model setting is given, as aliases of the nested settings: keyword
settings of the model constructors (``FlowModel(shape, num_transforms=2, window=3)``), keys of
a configuration file and overrides (``model.hidden=64``), and the stored configurations of old
checkpoints and saved folders. :func:`nest_settings` is the one mapping that serves them all;
the nested settings given beside them are kept, the flat ones applied on top.

======================================  =================================================
flat name                                nested setting
======================================  =================================================
``num_transforms``, ``transforms``       the length and the kinds of ``transforms``
                                         (SLVM: ``likelihood.transforms``; 0: no likelihood)
``conditioner``                          ``conditioner.kind``
``window``, ``hidden``, ``padding``,     ``conditioner.*`` (SLVM baseline: ``window`` is
``normalization``, ``identity_init``     ``burn_in``)
``batch_norm``                           ``conditioner.batch_norm`` (SLVM: and
                                         ``latent.batch_norm``)
``min_scale``, ``max_scale``,            each transform's (``bins`` and ``bound``: each
``scale_map``, ``bins``, ``bound``       spline transform's)
``latent_dim``, ``lstm_hidden``, ...     ``latent.*``
``prior_transforms``, ``prior_window``,  ``prior.transforms``, ``prior.conditioner.window``,
``prior_conditioner``                    ``prior.conditioner.kind`` (with ``hidden``,
                                         ``identity_init`` and the scale settings)
======================================  =================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from .config import build
from .errors import ConfigError

__all__ = ["FLAT_NAMES", "AcceptsFlatNames", "nest_settings"]

CONDITIONER = ("window", "hidden", "normalization", "batch_norm", "identity_init", "padding")
SCALE = ("min_scale", "max_scale", "scale_map")
SPLINE = ("bins", "bound")
LATENT = (
    "latent_dim",
    "lstm_hidden",
    "lstm_layers",
    "encoder_features",
    "conv_width",
    "mlp_hidden",
    "likelihood_loc",
    "init",
)
STACK = ("num_transforms", "transforms", "conditioner", *CONDITIONER, *SCALE, *SPLINE)
PRIOR = ("prior_transforms", "prior_window", "prior_conditioner")
# Every flat name, per model type: the keys that nest_settings moves.
FLAT_NAMES: dict[str, frozenset[str]] = {
    "flow": frozenset(STACK),
    "slvm": frozenset((*STACK, *LATENT, *PRIOR)),
}


class AcceptsFlatNames:
    """What a model configuration adds to accept the flat names of earlier versions of its
    ``flat_type`` (``"flow"``, ``"slvm"``; a subclass inherits it) wherever its settings are
    given: ``flat_names`` (the aliases, for messages), ``nest_flat_settings`` (which
    :func:`~seqflows.config.build` and loading call) and ``from_settings``."""

    flat_type: ClassVar[str]
    flat_names: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.flat_names = FLAT_NAMES[cls.flat_type]  # the aliases it accepts

    @classmethod
    def nest_flat_settings(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with the flat names of earlier versions nested (:func:`nest_settings`)."""
        return nest_settings(cls.flat_type, values)

    @classmethod
    def from_settings(cls, config: Self | None = None, **settings: Any) -> Self:
        r"""``config`` (default: the defaults) with ``settings`` changed, flat names
        (``num_transforms=2``, ``window=3``) or nested ones (``conditioner={"hidden": 8}``)."""
        return build(cls, {**dataclasses.asdict(config or cls()), **settings})


def nest_settings(model_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
    r"""The settings ``values`` of a model of ``model_type`` (``"flow"``, ``"slvm"``), flat
    names moved to their nested places (the table above); nested ones and unknown keys kept.

    Raises:
        ConfigError: ``num_transforms`` and ``transforms`` that disagree.
    """
    values = {key: _plain(value) for key, value in values.items()}
    if model_type not in FLAT_NAMES:
        return values
    flat = {key: values.pop(key) for key in FLAT_NAMES[model_type] if _is_flat(key, values)}
    if model_type == "flow":
        return _nest_stack(values, flat, default_count=1)
    latent = dict(values.get("latent") or {})
    latent.update({key: flat[key] for key in LATENT if key in flat})
    if "batch_norm" in flat:
        latent["batch_norm"] = flat["batch_norm"]
    if latent:
        values["latent"] = latent
    likelihood = values.get("likelihood")
    if flat.get("transforms") and not (likelihood or flat.get("num_transforms")):
        count = flat.get("num_transforms", 0)
        raise ConfigError(
            f"transforms lists {len(flat['transforms'])} kinds for num_transforms={count}: give "
            "one kind per transform, outermost first"
        )
    if flat.get("num_transforms") == 0:
        likelihood = None
    elif likelihood is not None or flat.get("num_transforms"):
        stack = {key: flat[key] for key in STACK if key in flat}
        likelihood = _nest_stack(dict(likelihood or {}), stack, default_count=1)
    if likelihood is None and "window" in flat and values.get("burn_in") is None:
        values["burn_in"] = flat["window"]  # the baseline's window was its burn-in
    if likelihood is not None or "likelihood" in values or "num_transforms" in flat:
        values["likelihood"] = likelihood
    prior = values.get("prior")
    if "prior_transforms" in flat:
        prior = (
            {**(prior or {}), "transforms": flat["prior_transforms"]}
            if flat["prior_transforms"]
            else None
        )
    if prior is not None:
        shared = {
            key: flat[key] for key in ("hidden", "identity_init", *SCALE, *SPLINE) if key in flat
        }
        if "prior_window" in flat:
            shared["window"] = flat["prior_window"]
        if "prior_conditioner" in flat:
            shared["conditioner"] = flat["prior_conditioner"]
        values["prior"] = _nest_stack(dict(prior), shared, default_count=1)
    elif "prior" in values or "prior_transforms" in flat:
        values["prior"] = None
    return values


def _is_flat(key: str, values: Mapping[str, Any]) -> bool:
    """Whether ``values[key]`` is a flat setting (``conditioner`` is one unless a mapping)."""
    return key in values and not (key == "conditioner" and isinstance(values[key], Mapping))


def _nest_stack(
    values: dict[str, Any], flat: Mapping[str, Any], default_count: int
) -> dict[str, Any]:
    """A stack's nested settings (transforms and conditioner) with the ``flat`` ones applied."""
    flat = dict(flat)
    conditioner = flat.pop("conditioner", None)
    if "conditioner" in values:
        values["conditioner"] = dict(values["conditioner"] or {})
    if conditioner is not None:
        values.setdefault("conditioner", {})["kind"] = conditioner
    for key in CONDITIONER:
        if key in flat:
            values.setdefault("conditioner", {})[key] = flat[key]
    given = flat["transforms"] if "transforms" in flat else values.get("transforms")
    transforms = _transforms(given, flat.get("num_transforms"))
    if transforms is None and any(key in flat for key in (*SCALE, *SPLINE)):
        transforms = [{"type": "affine"}] * default_count
    if transforms is not None:
        for key in SCALE:
            if key in flat:
                transforms = [{**item, key: flat[key]} for item in transforms]
        for key in SPLINE:
            if key in flat:
                transforms = [
                    {**item, key: flat[key]} if item.get("type") == "spline" else item
                    for item in transforms
                ]
        values["transforms"] = transforms
    return values


def _transforms(given: Any, count: Any) -> list[dict[str, Any]] | None:
    r"""The list of transform settings that ``transforms`` (kinds, or nested settings) and
    ``num_transforms`` describe: kinds must name one kind per transform, as before; a list of
    equal nested settings is repeated to ``count``."""
    if given is None:
        return None if count is None else [{"type": "affine"}] * count
    if not isinstance(given, list | tuple):
        return given  # the configuration's own check names the problem
    kinds = all(isinstance(item, str) for item in given)
    items = [{"type": item} if isinstance(item, str) else _plain(item) for item in given]
    if count is None or len(items) == count:
        return items
    if not kinds and items and all(item == items[0] for item in items):
        return [items[0]] * count
    raise ConfigError(
        f"transforms lists {len(items)} kinds for num_transforms={count}: give one kind per "
        "transform, outermost first"
    )


def _plain(value: Any) -> Any:
    """A dataclass as a mapping (nested ones too), anything else as it is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
