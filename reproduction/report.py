r"""The reproduction's report: the tables of docs/results.md, the findings, comparison figures.

Everything here reads ``summary.json`` (what :func:`~reproduction.run.reproduce`
writes): the paper's scale beside the paper's numbers, every model on the same frames, the
findings with the seed spread's tie rule (:func:`compare`), one table per study, Table 2
reconciled, and figures with every model's curves on one axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .experiments import LABELS, PAPER, STUDIES

DATASET_NAMES = {
    "moving_mnist": "Moving MNIST at reduced scale",
    "bouncing_balls": "Bouncing balls",
    "controlled_balls": "Controlled balls",
}  # the study tables' captions

__all__ = [
    "FINDINGS",
    "MAIN_MODELS",
    "compare",
    "comparison_figures",
    "SEEDED_DIFFERENCES",
    "STUDY_FINDINGS",
    "format_tables",
    "family_sd",
    "seed_spread",
    "seeded_difference",
]


def comparison_figures(runs: Mapping[str, Any], dataset: str, runs_root: Path, out: Path) -> None:
    r"""Training curves of every model of a dataset on shared axes, and corr_y (Fig. 7)."""
    from seqflows.app.figures import save_overlay
    from seqflows.app.metrics_csv import read_metrics_csv

    columns: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, run in runs.items():
        if run["dataset"] != dataset:
            continue
        metrics = out / name.split("/")[1] / "metrics.csv"
        if metrics.is_file():
            columns[run["model"]] = read_metrics_csv(metrics)
    if not columns:
        return
    save_overlay(
        {label: values.get("val/nats_per_dim", []) for label, values in columns.items()},
        out / "validation_curves.png",
        "validation nats per pixel per channel (SLVMs: ELBO)",
    )
    save_overlay(
        {label: values.get("train/nats_per_dim", []) for label, values in columns.items()},
        out / "training_curves.png",
        "training nats per pixel per channel (SLVMs: ELBO), per batch",
    )
    noise = {label: values.get("train/corr_noise", []) for label, values in columns.items()}
    noise = {label: points for label, points in noise.items() if points}
    if noise:
        save_overlay(noise, out / "corr_noise_during_training.png", "temporal correlation of y")


MAIN_MODELS = ("1af", "2af", "slvm", "slvm_1af")
# The paper's findings on Moving MNIST, as (better, worse) pairs of models.
FINDINGS = (
    ("slvm_1af", "slvm", "SLVM w/ 1-AF beats the SLVM (the paper's main claim)"),
    ("2af", "1af", "2-AF is at least as good as 1-AF"),
    ("slvm", "1af", "the SLVM beats the 1-AF (paper: -1.92 against -2.15)"),
    ("slvm_1af", "1af", "SLVM w/ 1-AF beats the 1-AF"),
)


def seed_spread(summary: Mapping[str, Any], key: str = "nats_per_dim_8bit") -> dict[str, Any]:
    r"""Seed-to-seed standard deviation of each model's test score (the ``seeds`` study).

    Returns {model: {"values", "mean", "sd"}} (sample standard deviation over the seeds) for
    the models with at least two seeds; empty without the study.
    """
    spread: dict[str, Any] = {}
    variants = summary.get("studies", {}).get("seeds", {})
    for model in MAIN_MODELS:
        values = [
            runs[model]["test"][key]
            for runs in variants.values()
            if model in runs and runs[model]["test"].get(key) is not None
        ]
        if len(values) >= 2:
            mean = sum(values) / len(values)
            variance = sum((value - mean) ** 2 for value in values) / (len(values) - 1)
            spread[model] = {"values": values, "mean": mean, "sd": math.sqrt(variance)}
    return spread


def family_sd(spread: Mapping[str, Any], model: str) -> float | None:
    r"""The seed-to-seed standard deviation of ``model``, or of its family's member in the seeds
    study (the 1-AF for flows, the SLVM for SLVMs) when it has no seeds of its own."""
    if model in spread:
        return spread[model]["sd"]
    family = "slvm" if model.startswith("slvm") else "1af"
    return spread.get(family, {}).get("sd")


def compare(
    better: float, worse: float, sd_better: float | None, sd_worse: float | None
) -> tuple[float, float | None, str]:
    r"""A difference between two single-seed scores, with the tie rule of the write-up.

    Two runs differ by chance with standard deviation sqrt(sd_a^2 + sd_b^2); a difference
    within twice that is a tie. Returns (difference, threshold or None, verdict).
    """
    difference = better - worse
    if sd_better is None or sd_worse is None:
        return difference, None, "holds" if difference > 0 else "does not hold"
    threshold = 2 * math.sqrt(sd_better**2 + sd_worse**2)
    if abs(difference) <= threshold:
        return difference, threshold, "tie"
    return difference, threshold, "holds" if difference > 0 else "reversed"


# Differences measured over training seeds, as (study, (variant prefix, model) of the better
# one, the same of the worse one, the claim).
SEEDED_DIFFERENCES = (
    (
        "seeds_balls",
        ("seed", "slvm_1af"),
        ("seed", "slvm"),
        "bouncing balls, published budget: SLVM w/ 1-AF beats the SLVM (the main claim; IWAE "
        "bounds)",
    ),
    (
        "seeds",
        ("seed", "slvm_1af"),
        ("seed", "slvm"),
        "Moving MNIST, a third of the budget: SLVM w/ 1-AF beats the SLVM (the main claim; ELBO)",
    ),
    (
        "seeds",
        ("seed", "2af"),
        ("seed", "1af"),
        "Moving MNIST, a third of the budget: the 2-AF is at least as good as the 1-AF",
    ),
    (
        "transform_seeds",
        ("spline_seed", "1af"),
        ("affine_seed", "1af"),
        "Moving MNIST, a third of the budget: the spline 1-AF beats the affine 1-AF",
    ),
)


def seeded_difference(
    summary: Mapping[str, Any],
    study: str,
    better: tuple[str, str],
    worse: tuple[str, str],
    key: str = "nats_per_dim_8bit",
) -> dict[str, Any] | None:
    r"""The difference of two models' mean test scores over training seeds, and its spread.

    ``better`` and ``worse`` are (variant prefix, model): the runs of the study's variants whose
    name starts with the prefix. The seeds of the two are independent runs, so the difference
    of the means has standard deviation sqrt(sd_a^2 / n_a + sd_b^2 / n_b); a difference within
    twice that is a tie. None unless each side has at least two seeds.

    Example:
        >>> runs = lambda value: {"m": {"test": {"nats_per_dim_8bit": value}}}
        >>> summary = {"studies": {"s": {"a0": runs(1.0), "a1": runs(1.2), "b0": runs(0.0),
        ...                              "b1": runs(0.2)}}}
        >>> result = seeded_difference(summary, "s", ("a", "m"), ("b", "m"))
        >>> round(result["difference"], 3), round(result["sd"], 3), result["verdict"]
        (1.0, 0.141, 'holds')
    """
    variants = summary.get("studies", {}).get(study, {})

    def scores(prefix: str, model: str) -> list[float]:
        return [
            runs[model]["test"][key]
            for variant, runs in variants.items()
            if variant.startswith(prefix) and model in runs
        ]

    sides = [scores(*better), scores(*worse)]
    if min(len(values) for values in sides) < 2:
        return None
    means = [sum(values) / len(values) for values in sides]
    variances = [
        sum((value - mean) ** 2 for value in values) / (len(values) - 1)
        for values, mean in zip(sides, means, strict=True)
    ]
    sd = math.sqrt(sum(var / len(values) for var, values in zip(variances, sides, strict=True)))
    difference = means[0] - means[1]
    verdict = "tie" if abs(difference) <= 2 * sd else "holds" if difference > 0 else "reversed"
    return {
        "better": sides[0],
        "worse": sides[1],
        "difference": difference,
        "sd": sd,
        "verdict": verdict,
    }


def _seeded_findings(summary: Mapping[str, Any]) -> list[str]:
    """The table of :data:`SEEDED_DIFFERENCES` that the summary has the seeds for."""
    rows = []
    for study, better, worse, text in SEEDED_DIFFERENCES:
        result = seeded_difference(summary, study, better, worse)
        if result is None:
            continue
        rows.append(
            f"| {text} | {len(result['better'])} + {len(result['worse'])} "
            f"| {_number(result['difference'], signed=True)} | {_number(2 * result['sd'])} "
            f"| {result['verdict']} |"
        )
    if not rows:
        return []
    return [
        "### Differences over training seeds (paper scale)",
        "",
        "The difference of the two models' mean test scores over their seeds; 2 sd is twice "
        "the standard deviation of that difference, sqrt(sd_a^2 / n_a + sd_b^2 / n_b) from the "
        "seeds' own spread; within it, a tie.",
        "",
        "| finding | seeds | difference of means | 2 sd | verdict |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


# Single-seed differences inside a study, as (study, better variant, worse variant, model, the
# claim); the tie band is the seeds study's spread of the model (Moving MNIST, a third of the
# budget), the only measured one for these models.
# Single-seed findings beyond the paper, as ((study, variant, model) of the better one, the same
# of the worse one, the claim). Both sides are trained with the same seed and budget.
_WITHIN = (("within_frames", "Moving MNIST"), ("within_frames_balls", "bouncing balls"))
STUDY_FINDINGS = (
    *(
        finding
        for study, data in _WITHIN
        for finding in (
            (
                (study, "affine_glow", "1af"),
                (study, "affine", "1af"),
                f"{data}: the frame flow (affine couplings) improves the affine 1-AF",
            ),
            (
                (study, "spline_glow", "1af"),
                (study, "spline", "1af"),
                f"{data}: the frame flow (spline couplings) improves the spline 1-AF",
            ),
            (
                (study, "affine_glow", "1af"),
                (study, "spline", "1af"),
                f"{data}: the affine 1-AF with the frame flow beats the spline 1-AF",
            ),
        )
    ),
    (
        ("spline_slvm", "spline", "slvm_1af"),
        ("spline_slvm", "affine", "slvm_1af"),
        "Moving MNIST: the spline improves the SLVM w/ 1-AF",
    ),
    (
        ("spline_slvm", "spline", "slvm_1af"),
        ("transform", "spline", "1af"),
        "Moving MNIST: the SLVM w/ spline 1-AF beats the spline 1-AF (the latent on top of "
        "the spline flow)",
    ),
    (
        ("spline_2af", "spline", "2af"),
        ("spline_2af", "affine", "2af"),
        "Moving MNIST: the spline improves the 2-AF",
    ),
    (
        ("spline_2af", "spline", "2af"),
        ("transform", "spline", "1af"),
        "Moving MNIST: the spline 2-AF is at least as good as the spline 1-AF",
    ),
    (
        ("slvm_likelihood_balls", "glow", "slvm_1af"),
        ("slvm_likelihood_balls", "diagonal", "slvm_1af"),
        "bouncing balls: the frame flow as the SLVM's likelihood improves the SLVM w/ 1-AF",
    ),
)


def _study_findings(summary: Mapping[str, Any], spread: Mapping[str, Any]) -> list[str]:
    """The table of :data:`STUDY_FINDINGS` that the summary has both runs of."""
    rows = []
    studies = summary.get("studies", {})
    for better, worse, text in STUDY_FINDINGS:
        runs = [
            studies.get(study, {}).get(variant, {}).get(model)
            for study, variant, model in (better, worse)
        ]
        if None in runs:
            continue
        difference, threshold, verdict = compare(
            *(run["test"]["nats_per_dim_8bit"] for run in runs),
            family_sd(spread, better[2]),
            family_sd(spread, worse[2]),
        )
        rows.append(
            f"| {text} | {_number(difference, signed=True)} | {_number(threshold)} | {verdict} |"
        )
    if not rows:
        return []
    return [
        "### Beyond the paper: single-seed differences (paper scale)",
        "",
        "One seed per variant, the same budget and seed for both sides; 2 sd from the seeds "
        "study's spread of each side's model (Moving MNIST, a third of the budget); within it, "
        "a tie.",
        "",
        "| finding | difference | 2 sd | verdict |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
    ]


def format_tables(summary: Mapping[str, Any]) -> str:
    r"""The tables of docs/results.md, in Markdown, from ``summary.json``."""
    lines: list[str] = []
    runs = summary["runs"]
    spread = seed_spread(summary)
    moving = {
        name.split("/")[1]: run for name, run in runs.items() if run["dataset"] == "moving_mnist"
    }
    if moving:
        lines += [
            "### Beside the paper: Moving MNIST, nats per pixel per channel on the paper's 0-255 "
            "scale (Tables 1 and 3)",
            "",
            "Ours: density of the 8-bit pixel values (nats/dim on [0, 1] minus log 256), "
            "the paper's protocol of each model (the last 10 frames of crops of 13, 16 for the "
            "2-AF), best-by-validation checkpoint. SLVMs: IWAE bound, K = 100 (≥). A perfect "
            "predictor of the 8-bit frames scores -1.419 with the paper's noise.",
            "",
            "| model | test, ours | test, paper | ours − paper | train, ours | train, paper "
            "| train − test, ours | train − test, paper | seed sd |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for model, run in moving.items():
            test, train = run["test"], run.get("train")
            ours = test["nats_per_dim_8bit"]
            paper_test, paper_train = PAPER["test"].get(model), PAPER["train"].get(model)
            gap = None if train is None else train["nats_per_dim_8bit"] - ours
            paper_gap = None if paper_train is None else paper_train - paper_test
            sd = spread.get(model, {}).get("sd")
            lines.append(
                "| "
                + " | ".join(
                    [
                        run["model"],
                        _bound(ours, model),
                        _bound(paper_test, model, 2),
                        _number(None if paper_test is None else ours - paper_test, signed=True),
                        _bound(None if train is None else train["nats_per_dim_8bit"], model),
                        _bound(paper_train, model, 2),
                        _number(gap, signed=True),
                        _number(paper_gap, 2, signed=True),
                        _number(sd),
                    ]
                )
                + " |"
            )
        lines.append("")
    for dataset in ("moving_mnist", "bouncing_balls"):
        rows = {name.split("/")[1]: run for name, run in runs.items() if run["dataset"] == dataset}
        if not rows:
            continue
        lines += [
            f"### {dataset}: every model on the same frames, and the runs",
            "",
            "Test sequences, crops of 16 frames, the last 10 scored (the others context), "
            "nats per pixel per channel on the paper's scale and on [0, 1]; SLVMs: ELBO and "
            "IWAE (K = 100) bounds. Validation: best; gain of the last quarter of the run.",
            "",
            "| model | paper scale | [0, 1] | ELBO, paper scale | corr x | corr y "
            "| steps | best validation [0, 1] | last-quarter gain | parameters | train time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for model, run in rows.items():
            same = run.get("test_same_frames") or run["test"]
            validation = run.get("validation", {})
            gain = validation.get("gain_last_quarter")
            stopped = validation.get("stopped_improving")
            lines.append(
                "| "
                + " | ".join(
                    [
                        run["model"],
                        _bound(same["nats_per_dim_8bit"], model),
                        _bound(same["nats_per_dim"], model),
                        _bound(same.get("elbo_nats_per_dim_8bit"), model),
                        _number(same["corr_x"]),
                        _number(same["corr_noise"]),
                        f"{run['steps']:,}",
                        _number(validation.get("best")),
                        _number(gain, signed=True)
                        + ("" if stopped is None else (" (flat)" if stopped else " (rising)")),
                        f"{run['parameters']:,}",
                        f"{run['train_seconds'] / 60:.1f} min",
                    ]
                )
                + " |"
            )
        lines.append("")
    if moving:
        lines += _findings(moving, spread)
    lines += _seeded_findings(summary)
    lines += _study_findings(summary, spread)
    lines += _study_tables(summary, spread)
    motion = summary.get("motion")
    if motion:
        true = motion["true_process"]
        lines += [
            "### Motivating example (Sec. 3.1): held-out nats per dimension",
            "",
            "| model | nats/dim | gap to the true process | temporal correlation of its noise |",
            "| --- | --- | --- | --- |",
            f"| true process | {true['nats_per_dim']:.3f} | 0 "
            f"| {true['noise_temporal_correlation']:.3f} |",
        ]
        for name, model in motion["models"].items():
            lines.append(
                f"| {name} | {model['nats_per_dim']:.3f} "
                f"| {model['gap_to_true_nats_per_dim']:.3f} "
                f"| {model['noise_temporal_correlation']:.3f} |"
            )
        lines.append("")
    parameters = summary.get("parameters", {})
    if parameters:
        lines += [
            "### Table 2 reconciled: parameters at the paper's full size",
            "",
            "ours + parameters the authors' code creates but the objective never uses "
            "(initial context frames, initial distribution parameters, conv biases before "
            "BatchNorm) = the authors' code = the paper.",
            "",
            "| dataset | model | ours | unused in the authors' code | sum | authors' code "
            "| paper |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for dataset, models in parameters.items():
            for model in MAIN_MODELS:
                entry = models.get(model)
                if entry is None:
                    continue
                authors = entry["authors"]
                paper_count = entry["paper_thousands"]
                lines.append(
                    f"| {dataset} | {LABELS[model]} | {entry['ours']:,} "
                    f"| {sum(entry['unused'].values()):,} | {entry['reconstructed']:,} "
                    f"| {'n/a' if authors is None else f'{authors:,}'} "
                    f"| {'n/a' if paper_count is None else f'{paper_count:,}k'} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def _findings(moving: Mapping[str, Any], spread: Mapping[str, Any]) -> list[str]:
    """The paper's findings checked on the same frames, with the seed spread's tie rule."""
    lines = [
        "### The paper's findings on Moving MNIST (same frames, paper scale)",
        "",
        "A difference within twice the standard deviation of a difference between two "
        "single-seed runs (from the seeds study; a model without seeds takes its family's: "
        "the 1-AF's for flows, the SLVM's for SLVMs) is a tie.",
        "",
        "| finding | difference | 2 sd | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for better, worse, text in FINDINGS:
        if better not in moving or worse not in moving:
            continue
        scores = [
            (moving[model].get("test_same_frames") or moving[model]["test"])["nats_per_dim_8bit"]
            for model in (better, worse)
        ]
        difference, threshold, verdict = compare(
            scores[0],
            scores[1],
            family_sd(spread, better),
            family_sd(spread, worse),
        )
        lines.append(
            f"| {text} | {_number(difference, signed=True)} | {_number(threshold)} | {verdict} |"
        )
    gaps = {
        model: moving[model]["train"]["nats_per_dim_8bit"]
        - moving[model]["test"]["nats_per_dim_8bit"]
        for model in ("slvm", "slvm_1af")
        if model in moving and moving[model].get("train")
    }
    if len(gaps) == 2:
        lines.append(
            f"| SLVM w/ 1-AF overfits less than the SLVM (train − test) | "
            f"{gaps['slvm_1af']:+.3f} against {gaps['slvm']:+.3f} | n/a | "
            f"{'holds' if gaps['slvm_1af'] < gaps['slvm'] else 'does not hold'} |"
        )
    if "slvm_1af" in moving:
        test = moving["slvm_1af"]["test"]
        lines.append(
            f"| flows decorrelate in time (SLVM w/ 1-AF corr y ≪ corr x; paper 0.02 ≪ 0.24) | "
            f"{_number(test['corr_noise'])} against {_number(test['corr_x'])} | n/a | "
            f"{'holds' if (test['corr_noise'] or 1) < 0.5 * test['corr_x'] else 'does not hold'} |"
        )
    return [*lines, ""]


def _study_tables(summary: Mapping[str, Any], spread: Mapping[str, Any]) -> list[str]:
    """One table per study: validation and test scores of each variant."""
    lines: list[str] = []
    for name, variants in summary.get("studies", {}).items():
        if name not in STUDIES or not variants:
            continue
        study = STUDIES[name]
        lines += [
            f"### Study `{name}`: {study.question}",
            "",
            DATASET_NAMES[study.dataset]
            + ", "
            + (
                "the same training time for every variant (steps scaled by speed)"
                if study.step_factors
                else "the same budget for every variant"
                if study.budget == 1
                else f"{study.budget:.2g} of the budget"
            )
            + (
                ", the training seed each variant names"
                if any("train.seed=" in " ".join(changes) for changes in study.variants.values())
                else ", the same seed for every variant"
            )
            + "; nats per pixel per channel (test: paper scale; validation: [0, 1], best)"
            + ("; SLVMs: ELBO." if study.elbo_only else "; SLVMs: IWAE bound, K = 100."),
            "",
            "| variant | model | test, paper scale | best validation [0, 1] | last-quarter gain "
            "| train time |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for variant, models in variants.items():
            for run in models.values():
                validation = run.get("validation", {})
                lines.append(
                    f"| {variant} | {run['model']} | {_number(run['test']['nats_per_dim_8bit'])} "
                    f"| {_number(validation.get('best'))} "
                    f"| {_number(validation.get('gain_last_quarter'), signed=True)} "
                    f"| {run['train_seconds'] / 60:.1f} min |"
                )
        if name == "seeds" and spread:
            lines += [
                "",
                "| model | seeds | mean, paper scale | sd |",
                "| --- | --- | --- | --- |",
            ]
            for model, entry in spread.items():
                lines.append(
                    f"| {LABELS[model]} | {len(entry['values'])} | {entry['mean']:.3f} "
                    f"| {entry['sd']:.3f} |"
                )
        lines.append("")
    return lines


def _bound(value: float | None, model: str, digits: int = 3) -> str:
    """A score, marked as a lower bound (≥) for SLVMs."""
    if value is None:
        return "n/a"
    return f"≥ {value:.{digits}f}" if model.startswith("slvm") else f"{value:.{digits}f}"


def _number(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
