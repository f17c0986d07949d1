"""``python -m reproduction reproduce``: the half-resolution Moving MNIST set, and the whole
pipeline on a tiny budget (every model trains 2 steps; the numbers mean nothing, the plumbing is
checked)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

import reproduction as reproduce
from reproduction.__main__ import main
from seqflows.data import MovingMNIST
from seqflows.data.moving_mnist import downscale_digits
from seqflows.data.simulators import render_sequences

from helpers import write_idx


def test_downscale_digits_averages_blocks() -> None:
    digits = np.array([[[0, 2, 10, 10], [4, 6, 10, 11], [255, 255, 0, 0], [255, 254, 0, 1]]])
    shrunk = downscale_digits(digits.astype(np.uint8), 2)
    assert shrunk.dtype == np.uint8
    np.testing.assert_array_equal(shrunk, [[[3, 10], [255, 0]]])  # 10.25 and 254.75 round
    with pytest.raises(ValueError, match="factor 3"):
        downscale_digits(np.zeros((1, 28, 28), np.uint8), 3)


def test_render_sequences_is_a_function_of_the_seed() -> None:
    simulator = MovingMNIST(np.full((5, 14, 14), 200, np.uint8), num_frames=6, size=32)
    first = render_sequences(simulator, 3, seed=7)
    assert first.shape == (3, 6, 1, 32, 32) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, render_sequences(simulator, 3, seed=7))
    assert not np.array_equal(first, render_sequences(simulator, 3, seed=8))
    # half resolution: 14 x 14 digits move 0.1 of the 18 free pixels (1.8) per frame
    assert simulator.speed == pytest.approx(1.8)


def _digits_file(folder: Path) -> Path:
    """10,000 digits: 0-7999 bright with value 100, 8000-9999 with value 250 (written once)."""
    path = folder / "t10k-images-idx3-ubyte.gz"
    if path.is_file():
        return path
    digits = np.zeros((10000, 28, 28), np.uint8)
    digits[:8000, 8:20, 8:20] = 100
    digits[8000:, 8:20, 8:20] = 250
    write_idx(path, digits, compress=True)
    return path


def test_moving_mnist_set_keeps_evaluation_digits_apart(tmp_path: Path) -> None:
    path = reproduce.render_moving_mnist(
        _digits_file(tmp_path), tmp_path / "set.npy", sequences=(6, 2, 3)
    )
    array = np.load(path)
    assert array.shape == (11, 20, 1, 32, 32)
    train_and_validation, test = array[:8], array[8:]
    assert set(np.unique(train_and_validation)) == {0, 100}  # digits 0-7999 only
    assert set(np.unique(test)) == {0, 250}  # digits 8000-9999 only
    modified = path.stat().st_mtime_ns
    reproduce.render_moving_mnist(_digits_file(tmp_path), path, sequences=(6, 2, 3))
    assert path.stat().st_mtime_ns == modified  # the same contents: kept, not rewritten


def test_full_size_parameter_counts_reconcile_with_table_2_exactly() -> None:
    """Ours + the parameters the authors' code creates but never uses = the authors' counts."""
    table = reproduce.parameter_counts()
    assert set(table) == {"mmnist", "bair", "kth"}
    exact = 0
    for models in table.values():
        for model in ("1af", "2af", "slvm", "slvm_1af"):
            entry = models[model]
            assert entry["reconstructed"] == entry["ours"] + sum(entry["unused"].values())
            assert round(entry["reconstructed"] / 1000) == pytest.approx(
                entry["paper_thousands"], abs=10
            )
            if entry["authors"] is not None:
                assert entry["reconstructed"] == entry["authors"]
                assert round(entry["authors"] / 1000) == entry["paper_thousands"]
                exact += 1
    assert exact == 11  # all but BAIR's SLVM w/ 1-AF, for which no exact count is known
    mmnist = table["mmnist"]
    assert mmnist["2af"]["ours"] == 2 * mmnist["1af"]["ours"]
    assert mmnist["1af"]["unused"] == {
        "initial shift and scale of each transform": 2 * 64 * 64,
        "conv biases before BatchNorm (flow)": 8 * 64,
    }


def _reproduce(tmp_path: Path, *options: str) -> int:
    """``python -m reproduction reproduce`` into tmp_path on a budget of 2 steps per model."""
    arguments = ["reproduce", "--out", str(tmp_path / "results"), "--runs", str(tmp_path / "runs")]
    arguments += ["--digits", str(_digits_file(tmp_path)), "--no-motion", "--sequences", "4"]
    budget = [
        "train.max_steps=2",
        "train.val_every=2",
        "train.val_sequences=4",
        "train.log_every=1",
    ]
    return main([*arguments, *options, *budget, "evaluate.iwae_samples=2"])


def test_reproduce_runs_every_step_on_a_tiny_budget(tmp_path: Path, capsys) -> None:
    assert _reproduce(tmp_path, "--models", "1af,slvm", "--studies", "none") == 0
    out, runs = tmp_path / "results", tmp_path / "runs"
    # Progress on stderr: which run of how many, its training's steps (from its log), the time
    # left overall, and the evaluations' batches.
    err = capsys.readouterr().err
    assert "1/4 moving_mnist/1af: training (1-AF), 2 steps to go; overall: 0/4 runs done\n" in err
    last = r"4/4 bouncing_balls/slvm: training \(SLVM\), 2 steps to go; overall: 3/4 runs done, "
    assert re.search(last + r"\d+:\d\d left\n", err), err
    assert re.search(r"1/4 moving_mnist/1af: step 2/2, \d+:\d\d elapsed, 0:00 left, loss ", err)
    assert "moving_mnist/1af: evaluate test: 1/1 batches (100%)" in err
    assert "train: 2/2 steps (100%)" in (runs / "moving_mnist" / "1af" / "train.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {
        "moving_mnist/1af",
        "moving_mnist/slvm",
        "bouncing_balls/1af",
        "bouncing_balls/slvm",
    }
    for name, run in summary["runs"].items():
        assert run["steps"] == 2 and run["train_seconds"] > 0
        assert run["evaluated_checkpoint"] == "best.ckpt" and run["evaluated_step"] == 2
        assert math.isfinite(run["test"]["nats_per_dim"])
        folder = out / name
        for figure in ("flow_rows.png", "samples.png", "metrics.csv", "test.json"):
            assert (folder / figure).is_file(), folder / figure
        if name.startswith("moving_mnist"):  # Table 3: fixed crops of training sequences
            evaluation = json.loads((folder / "train.json").read_text())
            assert evaluation["protocol"]["split"] == "train" and evaluation["sequences"] == 4
            assert math.isfinite(run["train"]["nats_per_dim"])
        else:  # bouncing balls are rendered on the fly: no fixed training set
            assert "train" not in run
    slvm = summary["runs"]["moving_mnist/slvm"]["test"]
    assert slvm["iwae_samples"] == 2 and slvm["nats_per_dim"] == slvm["iwae_nats_per_dim"]
    flow = summary["runs"]["moving_mnist/1af"]["test"]
    assert flow["elbo_nats_per_dim"] is None and 0 < flow["corr_x"] < 1
    for name, run in summary["runs"].items():  # every model on the same frames too
        same = run["test_same_frames"]
        assert same["frames_scored"] == 4 * 10, name
        assert same["nats_per_dim_8bit"] == pytest.approx(same["nats_per_dim"] - math.log(256))
        assert set(run["validation"]) >= {"best", "last", "gain_last_quarter"}
    tables = (out / "tables.md").read_text()
    slvm_test = summary["runs"]["moving_mnist/slvm"]["test"]["nats_per_dim_8bit"]
    assert f"| SLVM | ≥ {slvm_test:.3f} | ≥ -1.92 |" in tables  # paper scale beside the paper
    assert "| 1-AF | " in tables and "-2.15" in tables
    assert "| the SLVM beats the 1-AF" in tables  # the findings, checked
    assert "| mmnist | 1-AF | 334,530 | 8,704 | 343,234 | 343,234 | 343k |" in tables
    assert (out / "moving_mnist" / "validation_curves.png").is_file()
    assert (out / "moving_mnist" / "corr_noise_during_training.png").is_file()
    # again, one run only: its training is complete and is not started again, its evaluation
    # is redone, the other runs stay in the summary, and both invocations are timed
    again = ("--models", "1af", "--datasets", "moving_mnist", "--studies", "none")
    assert _reproduce(tmp_path, *again) == 0
    assert (runs / "moving_mnist" / "1af" / "train.log").read_text().count("$ ") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["runs"]) == 4 and len(summary["invocations"]) == 2
    # A finished run of other settings is not taken for this experiment's run.
    assert _reproduce(tmp_path, *again, "train.seed=5") == 2
    assert "train.seed: 0 -> 5" in capsys.readouterr().err


def test_a_study_trains_its_variants_and_reports_them(tmp_path: Path) -> None:
    options = ("--models", "slvm", "--datasets", "moving_mnist", "--studies", "init")
    assert _reproduce(tmp_path, *options) == 0
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert set(summary["runs"]) == {"moving_mnist/slvm"}
    study = summary["studies"]["init"]
    assert set(study) == {"default", "reference"} and set(study["reference"]) == {"slvm"}
    # The variant of the default settings (the authors' initialisation) is the main run itself:
    # trained once, reported once.
    assert study["reference"]["slvm"] == summary["runs"]["moving_mnist/slvm"]
    assert not (tmp_path / "runs" / "studies" / "init" / "reference").exists()
    assert (tmp_path / "runs" / "studies" / "init" / "default" / "moving_mnist").is_dir()
    run = study["default"]["slvm"]
    assert "model.init=default" in run["overrides"] and math.isfinite(
        run["test"]["nats_per_dim_8bit"]
    )
    tables = (tmp_path / "results" / "tables.md").read_text()
    assert "### Study `init`" in tables and "| default | SLVM |" in tables
    # Again, the study alone: the main run evaluated by the first invocation is taken as it is
    # (not evaluated again), the other variant's run is complete and evaluated again.
    main_test = tmp_path / "results" / "moving_mnist" / "slvm" / "test.json"
    written = main_test.stat().st_mtime_ns
    options = ("--models", "none", "--datasets", "moving_mnist", "--studies", "init")
    assert _reproduce(tmp_path, *options) == 0
    assert main_test.stat().st_mtime_ns == written
    again = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert again["studies"]["init"]["reference"]["slvm"] == summary["runs"]["moving_mnist/slvm"]
    assert again["studies"]["init"]["default"]["slvm"]["test"] == run["test"]


def test_seed_spread_and_the_tie_rule() -> None:
    runs = {
        f"seed{seed}": {"1af": {"test": {"nats_per_dim_8bit": value}}}
        for seed, value in enumerate([-2.0, -2.1, -2.2])
    }
    spread = reproduce.seed_spread({"studies": {"seeds": runs}})
    assert spread["1af"]["mean"] == pytest.approx(-2.1)
    assert spread["1af"]["sd"] == pytest.approx(0.1)
    difference, threshold, verdict = reproduce.compare(-2.0, -2.2, 0.1, 0.1)
    assert threshold == pytest.approx(2 * math.sqrt(0.02)) and verdict == "tie"
    assert reproduce.compare(-1.5, -2.2, 0.1, 0.1)[2] == "holds"
    assert reproduce.compare(-2.4, -2.2, 0.1, 0.1)[2] == "tie"
    assert reproduce.compare(-2.9, -2.2, 0.1, 0.1)[2] == "reversed"
    # A model without seeds of its own spreads as its family's member in the study.
    assert reproduce.family_sd(spread, "2af") == pytest.approx(0.1)
    assert reproduce.family_sd(spread, "slvm_1af") is None
    assert reproduce.family_sd({"slvm": {"sd": 0.3}}, "slvm_1af") == 0.3


def test_the_within_frame_studies_pair_with_the_runs_of_the_seed_and_transform_studies(
    tmp_path: Path,
) -> None:
    from reproduction.report import format_tables
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    runs = {
        run.study.split("/")[1]: run for run in reproduce.study_experiments("within_frames", array)
    }
    seed0 = reproduce.study_experiments("seeds", array)[0]
    spline0 = reproduce.study_experiments("transform_seeds", array)[3]
    # Without the frame flow, its runs are those of the seed studies (trained once).
    assert (seed0.study, spline0.study) == ("seeds/seed0", "transform_seeds/spline_seed0")
    assert runs["affine"].overrides == seed0.overrides
    assert runs["spline"].overrides == spline0.overrides
    config = load_config(runs["spline_glow"].config, runs["spline_glow"].overrides)
    assert config.model.base == "glow" and config.model.glow_coupling == "spline"
    assert [t.type for t in config.model.transforms] == ["spline"]

    # Their findings use the tie rule with the seeds study's spread of the 1-AF.
    def run(score: float) -> dict:
        return {"model": "1-AF", "test": {"nats_per_dim_8bit": score}, "train_seconds": 60}

    scores = {"affine": -2.0, "spline": -1.9, "affine_glow": -1.5, "spline_glow": -1.85}
    summary = {
        "runs": {},
        "studies": {
            "seeds": {
                f"seed{seed}": {"1af": run(value)} for seed, value in enumerate([-2.0, -2.1, -2.2])
            },
            "within_frames": {name: {"1af": run(value)} for name, value in scores.items()},
        },
    }
    tables = format_tables(summary)
    band = f"{2 * math.sqrt(0.02):.3f}"
    assert f"improves the affine 1-AF | +0.500 | {band} | holds |" in tables
    assert f"improves the spline 1-AF | +0.050 | {band} | tie |" in tables
    assert f"beats the spline 1-AF | +0.400 | {band} | holds |" in tables


def test_a_finding_across_studies_takes_each_sides_own_spread() -> None:
    from reproduction.report import format_tables

    def run(score: float) -> dict:
        return {"model": "x", "test": {"nats_per_dim_8bit": score}, "train_seconds": 60}

    # 1-AF seeds spread with sd 0.1, SLVM w/ 1-AF seeds with sd 0.2.
    seeds = {
        f"seed{seed}": {"1af": run(-2.0 + 0.1 * step), "slvm_1af": run(-2.0 + 0.2 * step)}
        for seed, step in enumerate([-1, 0, 1])
    }
    summary = {
        "runs": {},
        "studies": {
            "seeds": seeds,
            "transform": {"spline": {"1af": run(-1.5)}},
            "spline_slvm": {"affine": {"slvm_1af": run(-2.0)}, "spline": {"slvm_1af": run(-1.2)}},
        },
    }
    tables = format_tables(summary)
    across = f"{2 * math.sqrt(0.1**2 + 0.2**2):.3f}"
    assert (
        f"beats the spline 1-AF (the latent on top of the spline flow) | +0.300 | {across} | tie |"
        in tables
    )
    assert (
        f"the spline improves the SLVM w/ 1-AF | +0.800 | {2 * math.sqrt(0.08):.3f} | holds |"
        in tables
    )
    # A finding whose runs are missing (no spline 2-AF yet) is left out, not guessed.
    assert "spline 2-AF" not in tables


def test_the_padding_study_compares_zero_and_replicate_padding(tmp_path: Path) -> None:
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    zeros, replicate = reproduce.study_experiments("padding", array)
    assert (zeros.study, replicate.study) == ("padding/zeros", "padding/replicate")
    assert zeros.model == replicate.model == "1af"
    # Zero padding is the paper's and the default: the main 1-AF run, trained once.
    assert _main_equivalent(zeros, array, []).name == "moving_mnist/1af"
    assert _main_equivalent(replicate, array, []) is None
    config = load_config(replicate.config, replicate.overrides)
    assert config.model.conditioner.padding == "replicate" and config.model.num_transforms == 1


def test_the_transform_study_compares_affine_and_spline_1afs(tmp_path: Path) -> None:
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    affine, spline = reproduce.study_experiments("transform", array)
    assert (affine.study, spline.study) == ("transform/affine", "transform/spline")
    # The affine variant is the main 1-AF run, trained once; the spline one is its own run.
    assert _main_equivalent(affine, array, []).name == "moving_mnist/1af"
    assert _main_equivalent(spline, array, []) is None
    config = load_config(spline.config, list(spline.overrides))
    assert config.model.kinds == ["spline"]


def test_the_transform_study_on_bouncing_balls_pairs_with_the_main_bouncing_balls_run(
    tmp_path: Path,
) -> None:
    from reproduction.run import _main_equivalent

    array = tmp_path / "moving_mnist.npy"
    affine, spline = reproduce.study_experiments("transform_balls", array)
    assert affine.dataset == spline.dataset == "bouncing_balls"
    assert affine.name == "studies/transform_balls/affine/bouncing_balls/1af"
    assert _main_equivalent(affine, array, []).name == "bouncing_balls/1af"
    assert _main_equivalent(spline, array, []) is None
    gaussian, flow = reproduce.study_experiments("prior_balls", array)
    assert _main_equivalent(gaussian, array, []).name == "bouncing_balls/slvm_1af"
    assert _main_equivalent(flow, array, []) is None and flow.dataset == "bouncing_balls"


def test_the_slvm_likelihood_study_pairs_the_main_run_with_the_frame_flow_likelihood(
    tmp_path: Path,
) -> None:
    from reproduction.report import format_tables
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    diagonal, glow = reproduce.study_experiments("slvm_likelihood_balls", array)
    assert diagonal.dataset == glow.dataset == "bouncing_balls"
    # The diagonal likelihood is the paper's and the default: the main run, trained once.
    assert _main_equivalent(diagonal, array, []).name == "bouncing_balls/slvm_1af"
    assert _main_equivalent(glow, array, []) is None
    config = load_config(glow.config, list(glow.overrides))
    assert config.model.latent.likelihood_base == "glow" and config.model.num_transforms == 1

    def run(score: float) -> dict:
        return {"model": "SLVM w/ 1-AF", "test": {"nats_per_dim_8bit": score}, "train_seconds": 60}

    studies = {"slvm_likelihood_balls": {"diagonal": {"slvm_1af": run(-2.6)}}}
    studies["slvm_likelihood_balls"]["glow"] = {"slvm_1af": run(-2.1)}
    tables = format_tables({"runs": {}, "studies": studies})
    assert "the frame flow as the SLVM's likelihood improves the SLVM w/ 1-AF | +0.500" in tables


def test_the_precision_study_trains_every_model_in_bf16_beside_the_float32_main_runs(
    tmp_path: Path,
) -> None:
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    runs = reproduce.study_experiments("precision", array)
    assert [(run.study, run.model) for run in runs] == [
        (f"precision/{variant}", model)
        for model in ("1af", "2af", "slvm", "slvm_1af")
        for variant in ("fp32", "bf16")
    ]
    for run in runs:
        main = _main_equivalent(run, array, [])
        precision = load_config(run.config, list(run.overrides)).train.precision
        if run.study == "precision/fp32":
            assert main.name == f"moving_mnist/{run.model}" and precision == "32"
        else:
            assert main is None and precision == "bf16-mixed"


def test_the_bf16_budget_study_gives_bf16_the_steps_its_speed_up_buys(tmp_path: Path) -> None:
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    runs = {
        run.study + "/" + run.model: run
        for run in reproduce.study_experiments("bf16_budget", array)
    }
    for model, main_steps in (("1af", 1500), ("slvm", 3000), ("slvm_1af", 1500)):
        fp32 = load_config(
            runs[f"bf16_budget/fp32/{model}"].config,
            list(runs[f"bf16_budget/fp32/{model}"].overrides),
        )
        bf16 = load_config(
            runs[f"bf16_budget/bf16/{model}"].config,
            list(runs[f"bf16_budget/bf16/{model}"].overrides),
        )
        # float32 is the main run, trained once; bf16 trains for about as long, more steps.
        assert (
            _main_equivalent(runs[f"bf16_budget/fp32/{model}"], array, []).name
            == f"moving_mnist/{model}"
        )
        assert (fp32.train.precision, bf16.train.precision) == ("32", "bf16-mixed")
        assert fp32.train.max_steps == main_steps
        factor = reproduce.BF16_SPEEDUP[model]
        assert abs(bf16.train.max_steps - main_steps * factor) <= 2
        assert bf16.train.val_every == bf16.train.max_steps // 6
    assert _main_equivalent(runs["bf16_budget/bf16/1af"], array, []) is None


def test_the_conditioning_study_trains_on_controlled_balls_with_and_without_actions(
    tmp_path: Path,
) -> None:
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config
    from seqflows.app.resolution import resolve_data

    array = tmp_path / "moving_mnist.npy"
    runs = reproduce.study_experiments("conditioning", array)
    assert [(run.study, run.model) for run in runs] == [
        (f"conditioning/{variant}", model)
        for model in ("1af", "slvm_1af")
        for variant in ("unconditioned", "conditioned")
    ]
    for run in runs:
        assert run.dataset == "controlled_balls" and _main_equivalent(run, array, []) is None
        config = load_config(run.config, list(run.overrides))
        conditioned = run.study.endswith("/conditioned")
        assert resolve_data(config, "test").condition_dim == (2 if conditioned else 0)
        assert config.data.conditions == (["action"] if conditioned else None)
        assert config.train.max_steps == 600 and config.evaluate.iwae_samples == 100


def test_the_conditioning_study_runs_end_to_end_and_reports_both_variants(tmp_path: Path) -> None:
    options = ("--models", "none", "--datasets", "controlled_balls", "--studies", "conditioning")
    assert _reproduce(tmp_path, *options, "data.size=16") == 0
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    study = summary["studies"]["conditioning"]
    assert set(study) == {"unconditioned", "conditioned"} and summary["runs"] == {}
    for variant in study.values():
        assert set(variant) == {"1af", "slvm_1af"}
        for run in variant.values():
            assert run["dataset"] == "controlled_balls"
            assert math.isfinite(run["test"]["nats_per_dim_8bit"])
    runs = tmp_path / "runs" / "studies" / "conditioning"
    stored = (runs / "conditioned" / "controlled_balls" / "1af" / "config.yaml").read_text()
    assert "condition_dim: 2" in stored
    tables = (tmp_path / "results" / "tables.md").read_text()
    assert "### Study `conditioning`" in tables and "Controlled balls" in tables


def test_the_prior_study_compares_the_gaussian_and_the_flow_prior(tmp_path: Path) -> None:
    from reproduction.run import _main_equivalent
    from seqflows.app.config import load_config

    array = tmp_path / "moving_mnist.npy"
    gaussian, flow = reproduce.study_experiments("prior", array)
    assert (gaussian.study, flow.study) == ("prior/gaussian", "prior/flow")
    assert gaussian.model == flow.model == "slvm_1af"
    # The Gaussian prior is the paper's: the main SLVM w/ 1-AF run, trained once.
    assert _main_equivalent(gaussian, array, []).name == "moving_mnist/slvm_1af"
    assert _main_equivalent(flow, array, []) is None
    config = load_config(flow.config, list(flow.overrides))
    assert config.model.prior.kinds == ["affine"]
    assert config.model.num_transforms == 1
    assert load_config(gaussian.config, list(gaussian.overrides)).model.prior is None


def test_the_series_study_scores_sampled_futures_as_scoringrules_does() -> None:
    # An ensemble of K copies of one forecast f: CRPS = |f - y| per value, the CRPS-sum that of
    # the sums, the energy score ||f - y|| per step (each ensemble term vanishes).
    from reproduction.series import future_scores

    observed = np.array([[[1.0, 2.0], [0.0, 0.0]]])  # (N=1, H=2, D=2)
    forecast = np.array([[[1.5, 2.0], [3.0, -4.0]]])
    futures = np.repeat(forecast[:, None], 5, axis=1)  # (N, K=5, H, D)
    scores = future_scores(observed, futures)
    assert scores["crps"] == pytest.approx(np.abs(forecast - observed).mean())
    assert scores["crps_sum"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["energy_score"] == pytest.approx((0.5 + 5.0) / 2)


def test_an_earlier_run_is_reused_only_for_the_same_configuration_and_overrides() -> None:
    from reproduction.run import _run_key, _study_results

    seeds = {
        run.model: run
        for run in reproduce.study_experiments("seeds", "mm.npy")
        if run.study == "seeds/seed0"
    }
    # The 1-AF and the 2-AF of a seed study share their overrides; they are not the same run.
    assert seeds["1af"].overrides == seeds["2af"].overrides
    stored = {"config": "configs/mmnist_1af.yaml", "overrides": list(seeds["1af"].overrides)}
    found = _study_results({"seeds": {"seed0": {"1af": stored}}})

    def key(run: reproduce.Experiment) -> tuple[str, ...]:
        return _run_key(run.config.relative_to(reproduce.CONFIGS.parent), run.overrides)

    assert found == {key(seeds["1af"]): stored} and key(seeds["2af"]) not in found


def test_an_interrupted_invocation_keeps_the_runs_it_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reproduction.run as run_module

    trained: list[str] = []
    interrupt = {"at": "spline"}

    def fake_train(experiment, run_dir, extra, progress):  # noqa: ANN001, ANN202
        if interrupt["at"] in experiment.name:
            raise KeyboardInterrupt
        trained.append(experiment.name)
        return {"seconds": 1.0}

    def fake_evaluate(experiment, run_dir, out, sequences, timing, evaluations):  # noqa: ANN001, ANN202
        score = {"nats_per_dim": 3.0, "nats_per_dim_8bit": -2.5}
        return {
            "model": experiment.label,
            "dataset": experiment.dataset,
            "config": str(experiment.config.relative_to(reproduce.CONFIGS.parent)),
            "overrides": list(experiment.overrides),
            "steps": 2,
            "train_seconds": timing["seconds"],
            **{name: dict(score) for name in evaluations},
        }

    monkeypatch.setattr(run_module, "_train", fake_train)
    monkeypatch.setattr(run_module, "_evaluate", fake_evaluate)
    out = tmp_path / "results"
    options = dict(
        out=out,
        runs=tmp_path / "runs",
        models=[],
        datasets=["bouncing_balls"],
        studies=["transform_balls"],
        motion=False,
    )
    with pytest.raises(KeyboardInterrupt):
        reproduce.reproduce(**options)
    # The affine run finished before the interruption: its result and tables are written.
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["studies"]["transform_balls"]) == {"affine"}
    assert "| affine | 1-AF |" in (out / "tables.md").read_text()
    # The next invocation takes that result as it is and trains only the other run.
    interrupt["at"] = "no run"
    reproduce.reproduce(**options)
    assert trained == [
        "studies/transform_balls/affine/bouncing_balls/1af",
        "studies/transform_balls/spline/bouncing_balls/1af",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["studies"]["transform_balls"]) == {"affine", "spline"}
    assert len(summary["invocations"]) == 2
