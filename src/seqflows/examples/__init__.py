r"""Runnable examples. ``motion``: the motivating example of Sec. 3.1."""
