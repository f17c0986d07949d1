"""The version of seqflows."""

__version__ = "0.1.0"
