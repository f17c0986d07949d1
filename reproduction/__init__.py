r"""The paper's reproduction: its findings at a scale a 2-core CPU runs in a few hours.

This folder belongs to the repository, not to the installed package (``pip install seqflows``
gives the library and the ``seqflows`` command only). It is a plain package, run from the
repository root, where Python finds it: ``python -m reproduction reproduce`` (``make
reproduce``), ``python -m reproduction motion`` (``make motion``, the motivating example of
Sec. 3.1) and ``python -m reproduction what_if CHECKPOINT --out DIR``; ``--help`` lists the
options. It uses seqflows only through public names (``tests/test_architecture.py`` checks):
the library, :mod:`seqflows.data`, and the application's functions (``seqflows.app``).

What it does, in order (docs/results.md reads the results):

1. **Data.** Renders a fixed Moving MNIST set at half resolution (:func:`render_moving_mnist`):
   14 x 14 MNIST digits in 32 x 32 frames, 20 frames per sequence; training and validation
   sequences from digits 0-7999, test sequences from digits 8000-9999 of the MNIST test file.
   Bouncing balls are rendered on the fly.
2. **Training.** Each experiment of :func:`experiments` is the paper's full-size configuration
   (``configs/mmnist_*.yaml``, ``configs/bouncing_balls_1af.yaml``) with the overrides of
   :data:`MOVING_MNIST_SCALE` or :data:`BOUNCING_BALLS_SCALE`: a narrower network, fewer steps
   in the paper's proportions (:func:`budget`: the SLVM baseline twice the others', as
   Appendix B's 200k against 100k), at the paper's batch sizes. Each runs as its own
   ``seqflows train ... --resume`` process, so an interrupted reproduction continues.
3. **Evaluation.** The checkpoint of each run with the best validation score, on the test
   sequences (Table 1) with the paper's protocol and with one protocol for every model
   (:data:`SAME_FRAMES`: crops of 16, the last 10 scored), and on fixed crops of training
   sequences (Table 3): exact log-likelihood for flows, ELBO and IWAE bound for SLVMs, on [0, 1]
   and on the paper's 0-255 scale, and the temporal correlations of x and of the noise y
   (Table 4).
4. **Studies** (:data:`STUDIES`): BatchNorm statistics pooled or per time step (1-AF),
   PyTorch's or the authors' initialisation (SLVM), float32 or bf16 (same steps, and same
   training time), and the seed-to-seed spread of every model
   at a third of the budget, which decides which differences are ties.
5. **Figures.** Fig. 4 / Fig. 9 rows, samples (Fig. 10 / 11), training curves, corr_y during
   training (Fig. 7); parameter counts at the paper's full size reconciled with Table 2
   (:func:`parameter_counts`); the motivating example of Sec. 3.1.

Everything lands in ``--out`` (``results/``): one JSON per evaluation, ``summary.json`` with every
table, ``tables.md`` and the figures. Runs (checkpoints, logs) go to ``--runs``.
"""

from .experiments import (
    BF16_SPEEDUP,
    CONFIGS,
    LABELS,
    PAPER,
    STUDIES,
    Experiment,
    Study,
    budget,
    experiments,
    parameter_counts,
    render_moving_mnist,
    study_experiments,
    unused_parameters,
)
from .report import compare, family_sd, format_tables, seed_spread
from .run import DATASETS, DEFAULT_MODELS, reproduce, validation_progress

__all__ = [
    "BF16_SPEEDUP",
    "CONFIGS",
    "DATASETS",
    "DEFAULT_MODELS",
    "LABELS",
    "PAPER",
    "STUDIES",
    "Experiment",
    "Study",
    "budget",
    "compare",
    "family_sd",
    "experiments",
    "format_tables",
    "parameter_counts",
    "render_moving_mnist",
    "reproduce",
    "seed_spread",
    "study_experiments",
    "unused_parameters",
    "validation_progress",
]
