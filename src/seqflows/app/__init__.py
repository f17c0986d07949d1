r"""The application layer: configuration, Lightning training, evaluation, sampling and figures.

The core (flows, metrics, data) never imports this package; this package imports the core.
"""
