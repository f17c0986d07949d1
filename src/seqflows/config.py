r"""Typed, frozen configurations built from plain mappings (YAML, JSON) and checked once.

Each model keeps its settings in a frozen dataclass beside it (:class:`~seqflows.flows.FlowConfig`,
:class:`~seqflows.slvm.SLVMConfig`): every setting has one name, one default and one validation.
:func:`build` makes such a dataclass from a mapping: unknown keys are errors, values are coerced to
the field's type hint (``int``, ``float``, ``str``, ``bool``, ``Literal`` choices, ``list[int]``,
``tuple[float, ...]``, unions with ``None``), and the dataclass's own ``__post_init__`` checks
ranges. Errors are :class:`~seqflows.errors.ConfigError` and name the source and the key.

Nested dataclasses are built from nested mappings, and a list of several kinds
(``list[AffineConfig | SplineConfig]``) from mappings whose ``type`` names the kind.

Example:
    >>> from seqflows.flows import FlowConfig
    >>> build(FlowConfig, {"transforms": [{"type": "spline", "bins": 4}]}).transforms[0].bins
    4
    >>> from seqflows.transforms import TransformConfig
    >>> build(TransformConfig, {"scale_map": "tanh"}, source="x.yaml", prefix="model.")
    Traceback (most recent call last):
    ...
    seqflows.errors.ConfigError: x.yaml: model.scale_map must be one of 'clamp', 'soft'; got 'tanh'
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "build",
    "check_at_least",
    "check_choices",
    "check_seed",
    "choices",
    "coerce",
]

T = TypeVar("T")


def build(cls: type[T], values: Mapping[str, Any], source: str = "", prefix: str = "") -> T:
    r"""The dataclass ``cls`` with the fields given in ``values`` (the rest at their defaults).

    A class with a ``nest_flat_settings`` class method (the model configurations) first passes
    ``values`` through it: the flat names of earlier versions move to their nested places.

    Arguments:
        cls: A dataclass type.
        values: Field name -> value (as read from YAML or JSON).
        source: Where the values came from (a file name), for error messages.
        prefix: Prefix of the keys in error messages (``"model."``).

    Raises:
        ConfigError: An unknown key, a value of the wrong type, an unknown choice, or a value
            that the dataclass's ``__post_init__`` refuses; the message names the source and key.
    """
    where = f"{source}: " if source else ""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}{prefix.rstrip('.') or 'configuration'} must be a mapping")
    nest = getattr(cls, "nest_flat_settings", None)  # a model's settings under earlier names
    if nest is not None:
        try:
            values = nest(values)
        except ConfigError as error:
            raise ConfigError(f"{where}{_prefixed(str(error), prefix)}") from None
    known = {field.name for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(values) - known)
    if unknown:
        aliases = sorted(getattr(cls, "flat_names", frozenset()))
        also = f" (and the flat names {', '.join(aliases)})" if aliases else ""
        raise ConfigError(
            f"{where}unknown configuration key {prefix + unknown[0]!r}; "
            f"{prefix.rstrip('.') or cls.__name__} has {', '.join(sorted(known))}{also}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {
        name: coerce(_over_default(cls, name, value), hints[name], f"{prefix}{name}", source)
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{where}{_prefixed(str(error), prefix)}") from None


def _over_default(cls: type, name: str, value: Any) -> Any:
    r"""A mapping given for a field whose default is a dataclass, over that default: the
    settings it leaves out keep the field's defaults (a flow prior's conditioner given
    ``{hidden: 8}`` keeps the prior's window of 1), not those of the field's class."""
    if not isinstance(value, Mapping):
        return value
    field = next(item for item in dataclasses.fields(cls) if item.name == name)
    if field.default_factory is dataclasses.MISSING:
        return value
    default = field.default_factory()
    if not dataclasses.is_dataclass(default):
        return value
    return {**dataclasses.asdict(default), **value}


def _prefixed(message: str, prefix: str) -> str:
    """A ``__post_init__`` message "window must ..." as "model.window must ..."."""
    return message if not prefix or message.startswith(prefix) else f"{prefix}{message}"


def choices(hint: Any) -> tuple[Any, ...]:
    """The values a ``Literal`` type hint allows (inside an optional union too)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    for option in options:
        if typing.get_origin(option) is typing.Literal:
            return typing.get_args(option)
    return ()


def coerce(value: Any, hint: Any, key: str, source: str = "") -> Any:
    r"""``value`` as the type ``hint``: int, float, str, bool, Literal, list[int],
    tuple[float, ...], a dataclass (from a mapping), optional.

    YAML 1.1 reads ``3e-4`` as a string: it is accepted for floats.
    """
    where = f"{source}: " if source else ""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{where}{key} cannot be null")
    nested = [option for option in options if dataclasses.is_dataclass(option)]
    if nested:
        return _nested(value, nested, key, source)
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option)
        if origin is typing.Literal:
            allowed = typing.get_args(option)
            if value in allowed and not isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and str(value) in allowed:  # YAML read "64" as 64
                return str(value)
            listed = ", ".join(repr(item) for item in allowed)
            raise ConfigError(f"{where}{key} must be one of {listed}; got {value!r}")
        if origin is list and isinstance(value, Sequence) and not isinstance(value, str):
            (item_type,) = typing.get_args(option)
            return [
                coerce(item, item_type, f"{key}.{index}", source)
                for index, item in enumerate(value)
            ]
        if origin is tuple and isinstance(value, Sequence) and not isinstance(value, str):
            item_type = typing.get_args(option)[0]  # tuple[float, ...]
            return tuple(coerce(item, item_type, key, source) for item in value)
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if option is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    expected = " or ".join(getattr(option, "__name__", str(option)) for option in options)
    raise ConfigError(f"{where}{key} must be {expected}, got {value!r}")


def _nested(value: Any, options: list[Any], key: str, source: str) -> Any:
    r"""``value`` as one of the dataclasses ``options``: an instance, or a mapping built with
    :func:`build`; between several, the mapping's ``type`` picks the one whose ``type``
    default it is (the first when the mapping has none)."""
    if isinstance(value, tuple(options)):
        return value
    where = f"{source}: " if source else ""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}{key} must be a mapping of settings, got {value!r}")
    chosen = options[0]
    if len(options) > 1 and "type" in value:
        kinds = {getattr(option, "type", None): option for option in options}
        if value["type"] not in kinds:
            listed = ", ".join(repr(kind) for kind in kinds)
            raise ConfigError(f"{where}{key}.type must be one of {listed}; got {value['type']!r}")
        chosen = kinds[value["type"]]
    return build(chosen, value, source, f"{key}.")


def check_at_least(config: object, minimum: int, *names: str) -> None:
    """Raises ConfigError unless every field in ``names`` is None or at least ``minimum``."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")


MAX_SEED = 2**32 - 1  # the largest seed that numpy's legacy seeding and Lightning accept


def check_seed(seed: int, name: str = "seed") -> None:
    """Raises ConfigError unless ``seed`` is an integer in 0 .. 2^32 - 1 (naming ``name``)."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed}")


def check_choices(config: object) -> None:
    """Raises ConfigError when a ``Literal`` field of the dataclass holds another value."""
    for name, hint in typing.get_type_hints(type(config)).items():
        allowed = choices(hint)
        value = getattr(config, name)
        if allowed and value not in allowed and value is not None:
            listed = ", ".join(repr(item) for item in allowed)
            raise ConfigError(f"{name} must be one of {listed}; got {value!r}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)
