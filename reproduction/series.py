r"""Dependence within a time step on real multivariate series (issue 26, "Series"; issue 27's
CRPS-sum and energy score): the 1-AF with and without a within-step base beside a VAR.

``python -m reproduction series --out results/series`` (a few minutes on 2 cores).

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

Scores on the held-out steps:

* ``log_likelihood``: the one-step-ahead predictive log-density log p(x_t | x_<t) per dimension
  (nats), each step given the true past;
* from every held-out origin o with ``horizon`` = 8 future steps held out, K = 100 sampled
  futures x_{o:o+8} given x_<o (the flows' :meth:`~seqflows.FlowModel.sample`, the VAR's and
  the Gaussian's by their recursions with Gaussian noise, as statsmodels' ``simulate_var``):
  ``crps`` (scoringrules' ``crps_ensemble``, mean over origins, steps and dimensions),
  ``crps_sum`` (the CRPS of the sum over dimensions, as TempFlow / TimeGrad and GluonTS's
  MultivariateEvaluator report it) and ``energy_score`` (over the D dimensions of each step,
  mean over origins and steps). Lower is better for the three.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqflows import FlowModel
from seqflows.app.forecast_scores import forecast_scores, summarize_scores
from seqflows.atomic import write_text_atomically

__all__ = [
    "DATASETS",
    "SeriesConfig",
    "flow_scores",
    "future_scores",
    "gaussian_scores",
    "load_series",
    "run_series",
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


# --- the 1-AF ---------------------------------------------------------------------------------


def _train(model: FlowModel, x: torch.Tensor, steps: int, config: SeriesConfig) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model.loss(x).loss.backward()
        optimizer.step()
    model.eval()


def _build(D: int, conditioner: str, base: str, config: SeriesConfig, seed: int) -> FlowModel:
    torch.manual_seed(seed)
    return FlowModel(
        (D,), window=config.window, conditioner=conditioner, hidden=config.hidden, base=base
    )


def _chosen_steps(
    x: torch.Tensor, train: int, conditioner: str, base: str, config: SeriesConfig, seed: int
) -> int:
    """The number of Adam steps with the best one-step log-likelihood on the last
    ``validation_fraction`` of the training steps, the model trained on those before."""
    validation = max(1, round(config.validation_fraction * train))
    model = _build(x.shape[-1], conditioner, base, config, seed)
    best, best_steps = -math.inf, config.check_every
    for done in range(config.check_every, config.max_steps + 1, config.check_every):
        _train(model, x[:, : train - validation], config.check_every, config)
        with torch.no_grad():
            score = float(model.log_prob(x[:, :train])[:, -validation:].mean())
        if score > best:
            best, best_steps = score, done
    return best_steps


def flow_scores(
    series: np.ndarray,
    train: int,
    conditioner: str,
    base: str,
    config: SeriesConfig,
    seed: int,
) -> dict[str, float]:
    r"""A 1-AF fitted on the standardised training steps: held-out one-step log-likelihood per
    dimension and the scores of K sampled futures from each origin, in the series' units."""
    mean, std = series[:train].mean(0), series[:train].std(0)
    x = torch.as_tensor((series - mean) / std, dtype=torch.float32)[None]
    steps = _chosen_steps(x, train, conditioner, base, config, seed)
    model = _build(x.shape[-1], conditioner, base, config, seed)
    started = time.perf_counter()
    _train(model, x[:, :train], steps, config)
    seconds = time.perf_counter() - started
    held_out = len(series) - train
    with torch.no_grad():
        log_prob = model.log_prob(x)[:, -held_out:]  # (1, held_out): each given its true past
    log_likelihood = (log_prob.numpy()[0] - np.log(std).sum()).mean() / series.shape[1]
    origins = _origins(train, len(series), config.horizon)
    K, k = config.samples, model.burn_in
    context = torch.cat([x[:, o - k : o].expand(K, -1, -1) for o in origins])
    generator = torch.Generator().manual_seed(seed)
    sampled = model.sample(len(context), config.horizon, context, generator=generator)
    futures = sampled.numpy().reshape(len(origins), K, config.horizon, -1) * std + mean
    scores = future_scores(_observed(series, origins, config.horizon), futures)
    return {
        "log_likelihood": float(log_likelihood),
        "steps": steps,
        "train_seconds": seconds,
        **scores,
    }


CONDITIONERS = ("linear", "mlp")
BASES = ("standard", "full_covariance", "maf", "nsf")
SCORES = ("log_likelihood", "crps", "crps_sum", "energy_score")


def _summarise(runs: list[dict[str, float]]) -> dict[str, float | list[dict[str, float]]]:
    summary: dict = {"runs": runs}
    for name in SCORES:
        values = np.array([run[name] for run in runs])
        summary[name] = float(values.mean())
        summary[f"{name}_spread"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def run_series(out: Path, config: SeriesConfig | None = None, say: Callable = print) -> dict:
    """Runs the study on every data set; writes ``summary.json`` and ``table.md`` in ``out``."""
    config = config or SeriesConfig()
    torch.set_num_threads(1)
    results: dict = {"config": config.__dict__, "datasets": {}}
    for name in DATASETS:
        series, columns, train = load_series(name)
        models: dict = {}
        models["VAR"] = _summarise([var_scores(series, train, config, s) for s in config.seeds])
        models["VAR (diagonal)"] = _summarise(
            [var_scores(series, train, config, s, diagonal=True) for s in config.seeds]
        )
        models["Gaussian (i.i.d.)"] = _summarise(
            [gaussian_scores(series, train, config, s) for s in config.seeds]
        )
        for conditioner in CONDITIONERS:
            for base in BASES:
                label = f"1-AF {conditioner}, {base}"
                runs = [
                    flow_scores(series, train, conditioner, base, config, seed)
                    for seed in config.seeds
                ]
                models[label] = _summarise(runs)
                say(f"{name}: {label}: {models[label]['log_likelihood']:.3f} nats/dim")
        results["datasets"][name] = {
            "columns": columns,
            "steps": len(series),
            "train": train,
            "held_out": len(series) - train,
            "models": models,
        }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out / "summary.json", json.dumps(results, indent=2) + "\n")
    write_text_atomically(out / "table.md", format_table(results))
    return results


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
        for label, model in dataset["models"].items():
            cells = [f"{model[s]:.4g} ({model[f'{s}_spread']:.2g})" for s in SCORES]
            lines.append(f"| {label} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)
