r"""GluonTS's convention, the optional extra ``seqflows[gluonts]``: its datasets in, its
forecasts out, so that GluonTS's own evaluators score a seqflows model as the literature does.

What maps to what:

* A GluonTS dataset (a ``ListDataset``, a ``FileDataset`` of JSON lines, a ``PandasDataset``, or
  any iterable of dicts) becomes a series store (:func:`convert_gluonts`, ``seqflows convert
  gluonts``): each entry is one sequence of T steps; its ``target``, (T,) or (D, T), gives the
  modelled columns ``target`` (D = 1) or ``target_0`` .. ``target_{D-1}``, and its
  ``feat_dynamic_real`` (F, T), covariates known for every step, the columns
  ``feat_dynamic_real_0`` .. ``feat_dynamic_real_{F-1}``, which ``data.conditions`` turns into
  the per-step conditions of a conditioned model (``my_time_series_covariates``). The entry's
  ``item_id``, ``start`` and frequency are kept in the store's metadata. Static features are not
  used (seqflows has no per-sequence conditions).
* A trained model becomes a GluonTS ``Predictor`` (:class:`SeqflowsPredictor`): for each entry,
  K futures of ``prediction_length`` steps after its whole target
  (:func:`~seqflows.app.prediction.forecast_samples`, undone to the data's units by the model's
  ``preprocessing.inverse``), as a ``SampleForecast`` of samples (K, H) (D = 1) or (K, H, D),
  starting one period after the last observed step. A conditioned model takes the future's
  conditions from ``feat_dynamic_real`` beyond the target's end (GluonTS's
  ``make_evaluation_predictions`` cuts the target only, so they are there).

GluonTS is imported only here, inside the functions that need it: ``import seqflows`` does not
need it, and without it these raise :class:`~seqflows.errors.MissingDependency` naming
``pip install "seqflows[gluonts]"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.scaling import TOO_LARGE, first_too_large
from ..data.series import write_series
from ..data.store import Progress
from ..errors import ConfigError, DataError, MissingDependency
from .conditions import generation_conditions
from .prediction import forecast_samples

try:  # the Predictor's base class; without GluonTS, SeqflowsPredictor() raises a clear error
    from gluonts.model.predictor import Predictor as _Predictor
except ModuleNotFoundError:
    _Predictor = object

__all__ = ["SeqflowsPredictor", "convert_gluonts", "gluonts_columns", "gluonts_entries"]

INSTALL = 'pip install "seqflows[gluonts]"'


def _gluonts() -> Any:
    try:
        import gluonts
    except ModuleNotFoundError:
        raise MissingDependency(f"the GluonTS convention needs gluonts: {INSTALL}") from None
    return gluonts


@dataclass(frozen=True)
class GluonTSEntry:
    """One entry of a GluonTS dataset, as seqflows reads it.

    Attributes:
        target: The observed values, (T, D) float64.
        covariates: ``feat_dynamic_real`` transposed, (T', F) with T' >= T (beyond T: known
            future steps), or None.
        start: The period (``pandas.Period``) of the first step.
        item_id: The entry's ``item_id`` (a string), or None.
        label: What errors and the store call it: ``item_id '...'``, or ``entry N`` (its
            position) without one.
    """

    target: np.ndarray
    covariates: np.ndarray | None
    start: Any
    item_id: str | None
    label: str


def gluonts_columns(dimensions: int, covariates: int) -> list[str]:
    """The store's column names of D target dimensions and F covariates.

    Example:
        >>> gluonts_columns(2, 1)
        ['target_0', 'target_1', 'feat_dynamic_real_0']
    """
    target = ["target"] if dimensions == 1 else [f"target_{d}" for d in range(dimensions)]
    return target + [f"feat_dynamic_real_{f}" for f in range(covariates)]


def _as_dataset(dataset: Any, freq: str | None) -> Iterable[dict[str, Any]]:
    """A GluonTS dataset from a JSON-lines file or folder, a pandas DataFrame (its ``target``
    column, GluonTS's ``PandasDataset`` default), or the iterable of dicts given."""
    if isinstance(dataset, str | os.PathLike):
        from gluonts.dataset.common import FileDataset

        path = Path(dataset)
        if not path.exists():
            raise FileNotFoundError(f"GluonTS dataset not found: {path}")
        if freq is None:
            raise ConfigError(
                f"{path}: a GluonTS file dataset needs its frequency (--freq, e.g. H)"
            )
        return FileDataset(path, freq=freq)
    import pandas as pd

    if isinstance(dataset, pd.DataFrame):
        from gluonts.dataset.pandas import PandasDataset

        return PandasDataset(dataset, freq=freq)
    return dataset


def gluonts_entries(
    dataset: Any, freq: str | None = None, name: str = "GluonTS dataset"
) -> list[GluonTSEntry]:
    r"""The entries of a GluonTS dataset, checked: finite targets of one dimension D, and
    covariates of one number F covering at least the target's steps.

    Arguments:
        dataset: A ``ListDataset``, ``FileDataset``, ``PandasDataset`` (or a pandas DataFrame
            with a ``target`` column), any iterable of dicts with ``target`` and ``start``, or
            the path of a JSON-lines file or folder (GluonTS's ``FileDataset``).
        freq: The frequency (e.g. ``H``) of a path, or of plain dicts whose ``start`` is not a
            ``pandas.Period``; None: the starts' own.
        name: What the errors call the dataset.

    Raises:
        DataError: A target that is not (T,) or (D, T), has no steps, or holds infinite values
            (NaN marks a missing value, kept as a gap); covariates shorter than the target or
            not finite; entries of different D or F.
    """
    _gluonts()
    import pandas as pd

    entries: list[GluonTSEntry] = []
    for index, entry in enumerate(_as_dataset(dataset, freq)):
        if not isinstance(entry, Mapping) or "target" not in entry or "start" not in entry:
            raise DataError(f"{name}, entry {index}: {entry!r:.40} is no dict of target and start")
        item_id = None if entry.get("item_id") is None else str(entry["item_id"])
        label = f"entry {index}" if item_id is None else f"item_id {item_id!r}"
        where = f"{name}, {label}"
        target = np.asarray(entry["target"], np.float64)
        if target.ndim not in (1, 2) or target.shape[-1] == 0:
            raise DataError(f"{where}: target of shape {target.shape}; (T,) or (D, T) expected")
        target = target[:, None] if target.ndim == 1 else target.T  # (T, D)
        bad = np.argwhere(np.isinf(target))  # NaN: a missing value, kept (a gap)
        if len(bad):
            step, dimension = (int(value) for value in bad[0])
            raise DataError(
                f"{where}: target value {target[step, dimension]} at step {step}, dimension "
                f"{dimension}: values must be finite or NaN (missing)"
            )
        large = first_too_large(target)
        if large is not None:
            raise DataError(f"{where}: target value {target[large]:g} is {TOO_LARGE}")
        covariates = entry.get("feat_dynamic_real")
        if covariates is not None:
            covariates = np.asarray(covariates, np.float64)
            covariates = covariates[None] if covariates.ndim == 1 else covariates
            if covariates.ndim != 2 or covariates.shape[1] < len(target):
                raise DataError(
                    f"{where}: feat_dynamic_real of shape {covariates.shape}; (F, T') with T' "
                    f"at least the target's {len(target)} steps expected"
                )
            covariates = covariates.T  # (T', F)
            bad = np.argwhere(~np.isfinite(covariates))
            if len(bad):
                step, row = (int(value) for value in bad[0])
                raise DataError(
                    f"{where}: feat_dynamic_real value {covariates[step, row]} at step {step}, "
                    f"row {row}: covariates must be finite"
                )
        start = entry["start"]
        if not isinstance(start, pd.Period):
            if freq is None:
                raise ConfigError(f"{where}: start {start!r} is no pandas.Period; give freq")
            start = pd.Period(start, freq=freq)
        found = GluonTSEntry(target, covariates, start, item_id, label)
        if entries:
            first = entries[0]
            for what, shape, expected in (
                ("target dimensions", target.shape[1], first.target.shape[1]),
                ("feat_dynamic_real", _count(covariates), _count(first.covariates)),
            ):
                if shape != expected:
                    raise DataError(
                        f"{where}: {shape} {what}, {first.label} has {expected}; every entry "
                        "needs the same"
                    )
        entries.append(found)
    if not entries:
        raise DataError(f"{name}: no entries")
    return entries


def _count(covariates: np.ndarray | None) -> int:
    return 0 if covariates is None else covariates.shape[1]


def convert_gluonts(
    src: Any,
    dst: str | os.PathLike,
    freq: str | None = None,
    validation: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Writes a GluonTS dataset into a series store (float64 frames, the values as they are):
    one sequence per entry, columns :func:`gluonts_columns` (the targets, then the covariates
    ``feat_dynamic_real_*`` for ``data.conditions``), split by entry as ``convert series``
    splits its sequences.

    Arguments:
        src: A GluonTS dataset, or the path of a JSON-lines file or folder
            (:func:`gluonts_entries`).
        dst: The store folder.
        freq: The frequency of a path (or of plain dicts' starts).
        validation: Fraction of the entries in the validation split.
        test: Fraction of the entries in the test split.
        seed: Seed of the split permutation.
        progress: As :func:`~seqflows.data.convert_series`'s.

    Returns:
        ``{split: {"sequences", "frames"}}`` for the whole store.

    Example (the store trains ``my_time_series`` with ``data.dataset=store``):
        >>> from gluonts.dataset.common import ListDataset
        >>> import tempfile
        >>> data = ListDataset([{"start": "2020-01-01", "target": np.arange(8.0)}] * 4, freq="D")
        >>> convert_gluonts(data, tempfile.mkdtemp(), validation=0.25, test=0.25)["train"]
        {'sequences': 2, 'frames': 16}
    """
    name = str(src) if isinstance(src, str | os.PathLike) else "GluonTS dataset"
    entries = gluonts_entries(src, freq, name)
    first = entries[0]
    columns = gluonts_columns(first.target.shape[1], _count(first.covariates))
    sequences = [
        entry.target
        if entry.covariates is None
        else np.concatenate([entry.target, entry.covariates[: len(entry.target)]], axis=1)
        for entry in entries
    ]
    metadata = [
        {
            "source": name,
            "id": entry.label if entry.item_id is None else entry.item_id,
            "start": str(entry.start),
            "freq": entry.start.freqstr,
        }
        for entry in entries
    ]
    found = {"gluonts": name, "freq": first.start.freqstr}
    return write_series(sequences, metadata, dst, columns, validation, test, seed, found, progress)


class SeqflowsPredictor(_Predictor):
    r"""A trained seqflows model of vector series as a GluonTS ``Predictor``.

    ``predict(dataset)`` yields one ``gluonts.model.forecast.SampleForecast`` per entry: K
    futures of the H = ``prediction_length`` steps after the entry's target (all of it, or its
    last ``context_length`` steps, condition them), in the data's units; samples (K, H) for a
    univariate model, (K, H, D) otherwise; ``start_date`` the period after the last observed
    step; the entry's ``item_id``. A conditioned model (``condition_dim`` A > 0) reads the
    conditions of the past and the future from ``feat_dynamic_real`` (A rows, at least
    T + H steps). A target may have NaN gaps: the model fills them as in training
    (:mod:`seqflows.missing`), and a model trained with observation masks (``data.gaps``,
    recorded in ``model.preprocessing.gaps``) is given the masks of the gaps in its context.
    The same seed gives the same forecasts.

    Arguments:
        model: A trained model (``seqflows.load``) or the path of a checkpoint or saved folder.
        prediction_length: H, the steps forecast.
        num_samples: K, the futures sampled per entry.
        context_length: The last steps of each target given to the model (None: all of them;
            at least the model's ``burn_in``).
        seed: Seed of the sampled noise.
        batch_size: Futures sampled per call of the model (None: all K at once).

    Example:
        >>> from seqflows import FlowModel
        >>> from gluonts.dataset.common import ListDataset
        >>> model = FlowModel((1,), window=2, conditioner="linear").eval()
        >>> data = ListDataset([{"start": "2020-01-01", "target": np.ones(6)}], freq="D")
        >>> forecast = next(SeqflowsPredictor(model, 3, num_samples=5).predict(data))
        >>> forecast.samples.shape, str(forecast.start_date)
        ((5, 3), '2020-01-07')
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        prediction_length: int,
        num_samples: int = 100,
        context_length: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        _gluonts()
        from ..saving import load

        for what, value in (
            ("prediction_length", prediction_length),
            ("num_samples", num_samples),
        ):
            if value < 1:
                raise ConfigError(f"{what} must be at least 1, got {value}")
        super().__init__(prediction_length=prediction_length)
        self.model = load(model) if isinstance(model, str | os.PathLike) else model.eval()
        self.where = str(model) if isinstance(model, str | os.PathLike) else "the model"
        if len(self.model.event_shape) != 1:
            raise ConfigError(
                f"{self.where}: a model of frames {tuple(self.model.event_shape)}; a GluonTS "
                "predictor needs a model of vector series (D,)"
            )
        if context_length is not None and context_length < max(1, self.model.burn_in):
            raise ConfigError(
                f"context_length={context_length}: the model needs at least its burn_in of "
                f"{max(1, self.model.burn_in)} steps"
            )
        self.num_samples = num_samples
        self.context_length = context_length
        self.seed = seed
        self.batch_size = batch_size

    @torch.no_grad()
    def predict(self, dataset: Any, num_samples: int | None = None, **kwargs: Any) -> Iterator:
        r"""One ``SampleForecast`` per entry of ``dataset`` (:func:`gluonts_entries`'s input).

        Raises:
            DataError: An entry whose target dimension is not the model's D, shorter than the
                model's ``burn_in``, or (conditioned model) without A covariates of T + H steps.
        """
        from gluonts.model.forecast import SampleForecast

        model = self.model
        samples = self.num_samples if num_samples is None else num_samples
        parameter = next(model.parameters(), None)
        device = torch.device("cpu") if parameter is None else parameter.device
        generator = torch.Generator(device=device).manual_seed(self.seed)
        H, (D,) = self.prediction_length, tuple(model.event_shape)
        preprocessing = getattr(model, "preprocessing", None)
        for entry in gluonts_entries(dataset):
            where = f"GluonTS dataset, {entry.label}"
            if entry.target.shape[1] != D:
                raise DataError(
                    f"{where}: target of {entry.target.shape[1]} dimensions, but {self.where} "
                    f"forecasts {D}"
                )
            past = entry.target[-self.context_length :] if self.context_length else entry.target
            if len(past) < max(1, model.burn_in):
                raise DataError(
                    f"{where}: {len(past)} observed steps; the model needs at least "
                    f"{max(1, model.burn_in)}"
                )
            conditions = self._conditions(entry, past, where)
            x = torch.as_tensor(past[None])  # (1, c, D)
            x = preprocessing(x) if preprocessing is not None else x
            dtype = parameter.dtype if parameter is not None else torch.float32
            drawn = forecast_samples(
                model,
                x.to(device, dtype),
                H,
                samples,
                None if conditions is None else conditions.to(device, dtype),
                generator=generator,
                per_call=self.batch_size,
            )[:, 0]  # (K, H, D)
            if preprocessing is not None:
                drawn = preprocessing.inverse(drawn.cpu())
            values = drawn.double().numpy(force=True)
            yield SampleForecast(
                values[..., 0] if D == 1 else values,
                start_date=entry.start + len(entry.target),
                item_id=entry.item_id,
            )

    def _conditions(self, entry: GluonTSEntry, past: np.ndarray, where: str) -> Tensor | None:
        """The conditions (1, c + H, A) of the c observed steps ``past`` (c, D) and the H
        forecast: the entry's covariates, then (a model trained with ``data.gaps``) the
        observation masks of the past's NaN gaps and of the forecast steps."""
        preprocessing = getattr(self.model, "preprocessing", None)
        gaps = torch.as_tensor(past[None]) if preprocessing and preprocessing.gaps else None
        masks = 0 if gaps is None else 2 * past.shape[1]
        A = self.model.condition_dim - masks  # the covariates'
        T, H, context = len(entry.target), self.prediction_length, len(past)
        found = entry.covariates
        if A and (found is None or found.shape[1] != A or len(found) < T + H):
            shape = "none" if found is None else f"{found.shape[1]} x {len(found)} steps"
            raise DataError(
                f"{where}: feat_dynamic_real has {shape}; the conditioned model needs {A} x "
                f"{T + H} steps (the target's {T} and the {H} forecast)"
            )
        known = torch.as_tensor(found[T - context : T + H][None]) if A else None
        return generation_conditions(A + masks, 1, context, H, known, gaps=gaps)
