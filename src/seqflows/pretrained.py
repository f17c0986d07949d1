r"""``save_pretrained`` and ``from_pretrained`` for the models (:mod:`seqflows.saving`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .data.scaling import Preprocessing

__all__ = [
    "Pretrained",
]

Model = TypeVar("Model", bound="Pretrained")


class Pretrained:
    r"""Gives a model ``save_pretrained(folder)`` and ``from_pretrained(folder)``: a folder of
    ``config.json`` (its configuration) and ``model.safetensors`` (its weights), no pickle.

    ``preprocessing``: how raw frames become the model's input, when known (a model loaded by
    :func:`seqflows.load` or ``from_pretrained`` has the one it was saved with).
    """

    preprocessing: Preprocessing | None = None

    def save_pretrained(
        self, folder: str | Path, preprocessing: Preprocessing | None = None
    ) -> Path:
        """Writes the model into ``folder`` (:func:`seqflows.saving.save_pretrained`)."""
        from .saving import save_pretrained

        return save_pretrained(self, folder, preprocessing)

    @classmethod
    def from_pretrained(cls: type[Model], folder: str | Path, **_: Any) -> Model:
        """The model saved in ``folder``, in eval mode (:func:`seqflows.saving.load`)."""
        from .saving import from_pretrained

        return from_pretrained(folder, expected=cls)
