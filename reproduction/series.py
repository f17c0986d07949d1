r"""Dependence within a time step on real multivariate series (issue 26, "Series"; issue 27's
CRPS-sum and energy score): the 1-AF with and without a within-step base, and the SLVM with its
likelihood bases, beside a VAR.

``python -m reproduction series --out results/series`` (about an hour on a shared 2-core
machine: the flows a quarter of it, the SLVMs the rest); ``--models 'SLVM*'`` runs only the rows
whose labels match (shell patterns) and keeps the other rows of the ``summary.json`` already in
``--out``, which must have been made with the same settings; the table is made from them all.

Data (statsmodels' datasets, quarterly; levels differenced, rates kept):

* ``macro``: macrodata's inflation ``infl``, the change of the T-bill rate ``tbilrate`` and of
  unemployment ``unemp``: 202 steps, the first 160 to train, the next 42 held out.
* ``interest_inflation``: German inflation ``Dp`` and the change of the interest rate ``R``
  (statsmodels' interest_inflation): 106 steps, the first 84 to train, the next 22 held out.

Each series is standardised with its training steps' mean and standard deviation; scores are
in the series' own units (log-likelihoods minus sum_d log std_d).

Models, fitted on the training steps only:

* ``VAR``: statsmodels' VAR, order by AIC (at most 4 lags: one year of quarters; with 8 AIC takes 8
  on macro, and scores -1.85 nats/dim held out), intercept, its noise covariance
  ``sigma_u``; ``VAR (diagonal)`` the same with the off-diagonal covariances dropped;
* ``Gaussian (i.i.d.)``: one full-covariance Gaussian for every step (training mean and MLE
  covariance);
* ``1-AF <conditioner>, <base>``: :class:`seqflows.FlowModel` (window 4, the VAR's largest
  order: a year of quarters, so that both see the same past; 16 hidden units) with
  the ``linear`` or ``mlp`` conditioner and the ``standard``, ``full_covariance``, ``maf`` or
  ``nsf`` base, trained in float32 by full-batch Adam on the training sequence. The number of
  steps is chosen on the last 15% of the training steps (one-step log-likelihood every 10
  steps, at most 800; learning rate 2e-3), then the model is refitted on all training steps for
  that many steps (as the VAR's order is chosen by AIC on the training steps). Three seeds;
  their mean is reported with the spread.
* ``SLVM, <likelihood base>`` and ``SLVM w/ 1-AF linear, <likelihood base>``:
  :class:`seqflows.SLVM` (z_t of 4 dimensions, one LSTM layer of 16 units, an encoder of 8
  features, encoder and decoder of 16 hidden units; the 1-AF as the flows': linear, window 4)
  with the ``diagonal``, ``full_covariance`` or ``maf`` likelihood p(v_t | z_t)
  (``latent.likelihood_base``), trained on its loss (minus the ELBO) with the same step
  selection (on the IWAE bound with 10 samples), refit and seeds.

Scores on the held-out steps:

* ``log_likelihood``: the one-step-ahead predictive log-density log p(x_t | x_<t) per dimension
  (nats), each step given the true past: the mean over the held-out steps, whose sum is
  log p(x_held-out | x_train). For an SLVM, a lower bound on it (``log_likelihood_bound`` in the
  summary, ">=" in the table): the importance-weighted bound (:meth:`~seqflows.SLVM.bound`,
  K = 100) of the held-out steps, the latents of the training steps drawn from the filtering
  posterior q(z_t | x_<=t, z_<t): a bound on the log-density of the predictive distribution the
  SLVM samples its futures from;
* from every held-out origin o with ``horizon`` = 8 future steps held out, K = 100 sampled
  futures x_{o:o+8} given x_<o (the flows' :meth:`~seqflows.FlowModel.sample` given their last
  4 steps; the SLVMs' :meth:`~seqflows.SLVM.sample` given the whole past x_<o, its latents
  filtered and the new ones drawn from the prior; the VAR's and the Gaussian's by their
  recursions with Gaussian noise, as statsmodels' ``simulate_var``):
  ``crps`` (scoringrules' ``crps_ensemble``, mean over origins, steps and dimensions),
  ``crps_sum`` (the CRPS of the sum over dimensions, as TempFlow / TimeGrad and GluonTS's
  MultivariateEvaluator report it) and ``energy_score`` (over the D dimensions of each step,
  mean over origins and steps). Lower is better for the three.
"""

from __future__ import annotations

import fnmatch
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from seqflows import SLVM, FlowModel
from seqflows.app.forecast_scores import forecast_scores, summarize_scores
from seqflows.atomic import write_text_atomically
from seqflows.errors import ConfigError

__all__ = [
    "DATASETS",
    "ROWS",
    "SeriesConfig",
    "flow_model",
    "flow_scores",
    "future_scores",
    "gaussian_scores",
    "load_series",
    "model_scores",
    "run_series",
    "select_rows",
    "slvm_model",
    "slvm_scores",
    "var_scores",
]


@dataclass(frozen=True)
class SeriesConfig:
    """Settings of the series study."""

    seeds: tuple[int, ...] = (0, 1, 2)
    window: int = 4
    hidden: int = 16
    learning_rate: float = 2e-3
    max_steps: int = 800
    check_every: int = 10
    validation_fraction: float = 0.15
    horizon: int = 8
    samples: int = 100
    max_lags: int = 4
    latent_dim: int = 4
    lstm_hidden: int = 16
    encoder_features: int = 8
    validation_samples: int = 10
    iwae_samples: int = 100


def _macro() -> tuple[np.ndarray, list[str], int]:
    import statsmodels.api as sm

    data = sm.datasets.macrodata.load_pandas().data
    series = np.stack(
        [data["infl"].to_numpy()[1:], np.diff(data["tbilrate"]), np.diff(data["unemp"])], 1
    )
    return series, ["infl", "d tbilrate", "d unemp"], 160


def _interest_inflation() -> tuple[np.ndarray, list[str], int]:
    import statsmodels.api as sm

    data = sm.datasets.interest_inflation.load_pandas().data
    series = np.stack([data["Dp"].to_numpy()[1:], np.diff(data["R"])], 1)
    return series, ["Dp", "d R"], 84


DATASETS: dict[str, Callable[[], tuple[np.ndarray, list[str], int]]] = {
    "macro": _macro,
    "interest_inflation": _interest_inflation,
}


def load_series(name: str) -> tuple[np.ndarray, list[str], int]:
    """The series (T, D) in its own units, its column names and the number of training steps."""
    series, columns, train = DATASETS[name]()
    return series.astype(np.float64), columns, train


# --- scores of sampled futures ---------------------------------------------------------------


def future_scores(observed: np.ndarray, futures: np.ndarray) -> dict[str, float]:
    r"""CRPS, CRPS-sum and energy score of sampled futures (N, K, H, D) of observed (N, H, D):
    the means that ``seqflows predict`` reports (:mod:`seqflows.app.forecast_scores`)."""
    summary = summarize_scores(forecast_scores(np.moveaxis(futures, 1, 0), observed))["mean"]
    return {
        "crps": summary["crps"],
        "crps_sum": summary["crps_sum"],
        "energy_score": summary["energy"],
    }


def _origins(train: int, total: int, horizon: int) -> list[int]:
    return list(range(train, total - horizon + 1))


def _observed(series: np.ndarray, origins: list[int], horizon: int) -> np.ndarray:
    return np.stack([series[o : o + horizon] for o in origins])


# --- statsmodels' VAR and the i.i.d. Gaussian -------------------------------------------------


def _gaussian_log_density(residuals: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """log N(r; 0, S) of residuals (N, D)."""
    factor = np.linalg.cholesky(covariance)
    standard = np.linalg.solve(factor, residuals.T).T
    log_det = 2 * np.log(np.diag(factor)).sum()
    D = residuals.shape[1]
    return -0.5 * (np.square(standard).sum(1) + log_det + D * math.log(2 * math.pi))


def var_scores(
    series: np.ndarray, train: int, config: SeriesConfig, seed: int, diagonal: bool = False
) -> dict[str, float]:
    r"""statsmodels' VAR fitted on the first ``train`` steps (order by AIC): held-out one-step
    log-likelihood per dimension and the scores of K futures from each origin."""
    from statsmodels.tsa.api import VAR

    fitted = VAR(series[:train]).fit(maxlags=config.max_lags, ic="aic", trend="c")
    order, coefs, intercept = fitted.k_ar, fitted.coefs, fitted.intercept
    covariance = np.asarray(fitted.sigma_u)
    if diagonal:
        covariance = np.diag(np.diag(covariance))

    def mean_after(history: np.ndarray) -> np.ndarray:  # (..., p, D) -> (..., D)
        mean = np.broadcast_to(intercept, history.shape[:-2] + intercept.shape).copy()
        for lag in range(1, order + 1):
            mean += history[..., -lag, :] @ coefs[lag - 1].T
        return mean

    steps = range(train, len(series))
    means = np.stack([mean_after(series[t - order : t]) for t in steps])
    log_likelihood = _gaussian_log_density(series[train:] - means, covariance)
    origins = _origins(train, len(series), config.horizon)
    rng = np.random.default_rng(seed)
    factor = np.linalg.cholesky(covariance)
    futures = []
    for o in origins:  # statsmodels' simulate_var recursion, K paths at once
        history = np.repeat(series[None, o - order : o], config.samples, 0)
        for _ in range(config.horizon):
            noise = rng.standard_normal((config.samples, series.shape[1])) @ factor.T
            history = np.concatenate([history, (mean_after(history) + noise)[:, None]], 1)
        futures.append(history[:, order:])
    scores = future_scores(_observed(series, origins, config.horizon), np.stack(futures))
    D = series.shape[1]
    return {"log_likelihood": float(log_likelihood.mean() / D), "order": order, **scores}


def gaussian_scores(
    series: np.ndarray, train: int, config: SeriesConfig, seed: int
) -> dict[str, float]:
    r"""One full-covariance Gaussian for every step (training mean, MLE covariance)."""
    mean = series[:train].mean(0)
    covariance = np.cov(series[:train].T, bias=True)
    log_likelihood = _gaussian_log_density(series[train:] - mean, covariance)
    origins = _origins(train, len(series), config.horizon)
    rng = np.random.default_rng(seed)
    shape = (len(origins), config.samples, config.horizon)
    futures = rng.multivariate_normal(mean, covariance, size=shape)
    scores = future_scores(_observed(series, origins, config.horizon), futures)
    return {"log_likelihood": float(log_likelihood.mean() / series.shape[1]), **scores}


# --- the 1-AF and the SLVM ------------------------------------------------------------------


def _train(model: FlowModel | SLVM, x: torch.Tensor, steps: int, config: SeriesConfig) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(x).loss.backward()
        optimizer.step()
    model.eval()


def flow_model(D: int, conditioner: str, base: str, config: SeriesConfig) -> FlowModel:
    """The 1-AF of the study for D-dimensional steps."""
    return FlowModel(
        (D,), window=config.window, conditioner=conditioner, hidden=config.hidden, base=base
    )


def slvm_model(D: int, likelihood_base: str, flow: str | None, config: SeriesConfig) -> SLVM:
    r"""The SLVM of the study (one LSTM layer, sizes of :class:`SeriesConfig`) with the
    likelihood p(v_t | z_t) of ``likelihood_base``; ``flow``: the conditioner of a 1-AF in front
    of it (SLVM w/ 1-AF, the flows' window and width), None: the SLVM alone."""
    latent = {
        "latent_dim": config.latent_dim,
        "lstm_hidden": config.lstm_hidden,
        "lstm_layers": 1,
        "encoder_features": config.encoder_features,
        "mlp_hidden": config.hidden,
        "likelihood_base": likelihood_base,
    }
    if flow is None:
        return SLVM((D,), latent=latent)
    return SLVM(
        (D,),
        latent=latent,
        num_transforms=1,
        window=config.window,
        conditioner=flow,
        hidden=config.hidden,
    )


Build = Callable[[int, SeriesConfig], FlowModel | SLVM]  # (D, config) -> an untrained model


def _log_likelihood(
    model: FlowModel | SLVM, x: torch.Tensor, scored: int, samples: int, seed: int
) -> float:
    """log p of the last ``scored`` steps of x (1, T, D) given the earlier ones, per step: exact
    for a flow, the importance-weighted bound with ``samples`` samples for an SLVM."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return float(model.bound(x, samples, generator, scored=scored)[0]) / scored


def _chosen_steps(
    x: torch.Tensor, train: int, build: Build, config: SeriesConfig, seed: int
) -> int:
    """The number of Adam steps with the best one-step log-likelihood on the last
    ``validation_fraction`` of the training steps, the model trained on those before."""
    validation = max(1, round(config.validation_fraction * train))
    torch.manual_seed(seed)
    model = build(x.shape[-1], config)
    best, best_steps = -math.inf, config.check_every
    for done in range(config.check_every, config.max_steps + 1, config.check_every):
        _train(model, x[:, : train - validation], config.check_every, config)
        samples = config.validation_samples
        score = _log_likelihood(model, x[:, :train], validation, samples, seed)
        if score > best:
            best, best_steps = score, done
    return best_steps


def _sampled_futures(
    model: FlowModel | SLVM, x: torch.Tensor, origins: list[int], config: SeriesConfig, seed: int
) -> np.ndarray:
    """K futures of ``horizon`` steps from each origin o given x_<o: (N, K, H, D), standardised.
    A flow sees its last ``burn_in`` steps (every origin in one batch); an SLVM's filtering
    posterior reads the whole past x_<o, and its new latents come from the prior."""
    K, generator = config.samples, torch.Generator().manual_seed(seed)
    if model.exact:
        k = model.burn_in
        context = torch.cat([x[:, o - k : o].expand(K, -1, -1) for o in origins])
        sampled = model.sample(len(context), config.horizon, context, generator=generator)
    else:
        sampled = torch.cat(
            [
                model.sample(K, config.horizon, x[:, :o].expand(K, -1, -1), generator=generator)
                for o in origins
            ]
        )
    return sampled.numpy().reshape(len(origins), K, config.horizon, -1)


def model_scores(
    series: np.ndarray, train: int, build: Build, config: SeriesConfig, seed: int
) -> dict[str, float]:
    r"""A model (a 1-AF, or an SLVM: ``build``) fitted on the standardised training steps:
    held-out one-step log-likelihood per dimension (an SLVM's: the IWAE bound) and the scores
    of K sampled futures from each origin, in the series' units."""
    mean, std = series[:train].mean(0), series[:train].std(0)
    x = torch.as_tensor((series - mean) / std, dtype=torch.float32)[None]
    steps = _chosen_steps(x, train, build, config, seed)
    torch.manual_seed(seed)
    model = build(x.shape[-1], config)
    started = time.perf_counter()
    _train(model, x[:, :train], steps, config)
    seconds = time.perf_counter() - started
    held_out = len(series) - train  # each step given its true past
    per_step = _log_likelihood(model, x, held_out, config.iwae_samples, seed)
    log_likelihood = (per_step - np.log(std).sum()) / series.shape[1]
    origins = _origins(train, len(series), config.horizon)
    futures = _sampled_futures(model, x, origins, config, seed) * std + mean
    scores = future_scores(_observed(series, origins, config.horizon), futures)
    run = {"log_likelihood": float(log_likelihood), "steps": steps, "train_seconds": seconds}
    if not model.exact:
        run["log_likelihood_bound"] = f"IWAE, K={config.iwae_samples}"
    return run | scores


def flow_scores(
    series: np.ndarray,
    train: int,
    conditioner: str,
    base: str,
    config: SeriesConfig,
    seed: int,
) -> dict[str, float]:
    r""":func:`model_scores` of the 1-AF with ``conditioner`` and ``base``."""

    def build(D: int, config: SeriesConfig) -> FlowModel:
        return flow_model(D, conditioner, base, config)

    return model_scores(series, train, build, config, seed)


def slvm_scores(
    series: np.ndarray,
    train: int,
    likelihood_base: str,
    flow: str | None,
    config: SeriesConfig,
    seed: int,
) -> dict[str, float]:
    r""":func:`model_scores` of the SLVM (w/ a 1-AF with conditioner ``flow``)."""

    def build(D: int, config: SeriesConfig) -> SLVM:
        return slvm_model(D, likelihood_base, flow, config)

    return model_scores(series, train, build, config, seed)


CONDITIONERS = ("linear", "mlp")
BASES = ("standard", "full_covariance", "maf", "nsf")
# The SLVM's 1-AF (None: the SLVM alone) and its likelihood bases.
SLVMS = (
    (None, ("diagonal", "full_covariance", "maf")),
    ("linear", ("diagonal", "full_covariance")),
)
SCORES = ("log_likelihood", "crps", "crps_sum", "energy_score")
Fit = Callable[..., dict[str, float]]  # (series, train, config=, seed=) -> a seed's scores


def _rows() -> dict[str, Fit]:
    """Every row of the study, in the table's order: its label and how a seed's run is made."""
    rows: dict[str, Fit] = {
        "VAR": var_scores,
        "VAR (diagonal)": partial(var_scores, diagonal=True),
        "Gaussian (i.i.d.)": gaussian_scores,
    }
    for conditioner in CONDITIONERS:
        for base in BASES:
            fit = partial(flow_scores, conditioner=conditioner, base=base)
            rows[f"1-AF {conditioner}, {base}"] = fit
    for flow, likelihood_bases in SLVMS:
        for base in likelihood_bases:
            label = "SLVM" if flow is None else f"SLVM w/ 1-AF {flow}"
            rows[f"{label}, {base}"] = partial(slvm_scores, likelihood_base=base, flow=flow)
    return rows


ROWS = _rows()


def _summarise(runs: list[dict[str, float]]) -> dict[str, float | list[dict[str, float]]]:
    summary: dict = {"runs": runs}
    if "log_likelihood_bound" in runs[0]:  # a lower bound (an SLVM's), not the log-likelihood
        summary["log_likelihood_bound"] = runs[0]["log_likelihood_bound"]
    for name in SCORES:
        values = np.array([run[name] for run in runs])
        summary[name] = float(values.mean())
        summary[f"{name}_spread"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def select_rows(patterns: Sequence[str] | None) -> list[str]:
    """The rows whose labels match any of the shell-style ``patterns`` (``"SLVM*"``), in the
    table's order; None: every row.

    Raises:
        ConfigError: A pattern that matches no row, naming ``--models`` and the rows.
    """
    if patterns is None:
        return list(ROWS)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(label, pattern) for label in ROWS):
            raise ConfigError(
                f"--models {pattern!r} matches no row of the series study; the rows: "
                + "; ".join(ROWS)
            )
    return [label for label in ROWS if any(fnmatch.fnmatchcase(label, p) for p in patterns)]


def _earlier(out: Path, config: SeriesConfig) -> dict:
    """The summary already in ``out`` (empty without one), checked to have been made with the
    same settings wherever it records them."""
    path = out / "summary.json"
    if not path.exists():
        return {"datasets": {}}
    earlier = json.loads(path.read_text())
    changed = [
        f"{name}: {value} there, {config.__dict__[name]} now"
        for name, value in earlier.get("config", {}).items()
        if name in config.__dict__ and json.dumps(value) != json.dumps(config.__dict__[name])
    ]
    if changed:
        raise ConfigError(
            f"{path} was made with other settings ({'; '.join(changed)}): run every row "
            "(without --models) or give another --out"
        )
    return earlier


def run_series(
    out: Path,
    config: SeriesConfig | None = None,
    say: Callable = print,
    models: Sequence[str] | None = None,
) -> dict:
    """Runs the study on every data set and writes ``summary.json`` and ``table.md`` in ``out``.

    ``models``: shell-style patterns of the rows to run (:func:`select_rows`); the other rows
    of a ``summary.json`` already in ``out`` are kept (made with the same settings), and the
    table is made from them all. None: every row, the summary written anew.
    """
    config = config or SeriesConfig()
    labels = select_rows(models)
    earlier = {"datasets": {}} if models is None else _earlier(out, config)
    results: dict = {"config": config.__dict__, "datasets": {}}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest; restored below
    try:
        for name in DATASETS:
            results["datasets"][name] = _dataset_results(name, labels, earlier, config, say)
    finally:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "summary.json", json.dumps(results, indent=2) + "\n")
    write_text_atomically(out / "table.md", format_table(results))
    return results


def _dataset_results(
    name: str, labels: Sequence[str], earlier: dict, config: SeriesConfig, say: Callable
) -> dict:
    """The study's rows ``labels`` on the data set ``name``, beside its ``earlier`` rows."""
    series, columns, train = load_series(name)
    models_run = dict(earlier["datasets"].get(name, {}).get("models", {}))
    for label in labels:
        fit = ROWS[label]
        runs = [fit(series, train, config=config, seed=seed) for seed in config.seeds]
        models_run[label] = _summarise(runs)
        say(f"{name}: {label}: {models_run[label]['log_likelihood']:.3f} nats/dim")
    return {
        "columns": columns,
        "steps": len(series),
        "train": train,
        "held_out": len(series) - train,
        "models": {label: models_run[label] for label in ROWS if label in models_run},
    }


def format_table(results: dict) -> str:
    """The summary as Markdown tables, one per data set (mean over seeds, spread in brackets)."""
    lines = []
    for name, dataset in results["datasets"].items():
        lines += [
            f"### {name}: {', '.join(dataset['columns'])} ({dataset['train']} steps to train, "
            f"{dataset['held_out']} held out)",
            "",
            "| model | log-lik / dim (higher) | CRPS | CRPS-sum | energy score |",
            "|---|---|---|---|---|",
        ]
        bounds = set()
        for label, model in dataset["models"].items():
            cells = [f"{model[s]:.4g} ({model[f'{s}_spread']:.2g})" for s in SCORES]
            if "log_likelihood_bound" in model:  # a lower bound on the log-likelihood
                cells[0] = f">= {cells[0]}"
                bounds.add(model["log_likelihood_bound"])
            lines.append(f"| {label} | {' | '.join(cells)} |")
        lines.append("")
        if bounds:
            lines += [
                f">=: a lower bound on the log-likelihood ({', '.join(sorted(bounds))}: the "
                "importance-weighted bound of the held-out steps given the past).",
                "",
            ]
    return "\n".join(lines)
