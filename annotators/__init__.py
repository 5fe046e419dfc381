"""Annotators, one module per modality, looked up by modality name through the modality records
(`openuni_builder.modalities`) and imported lazily: a build that runs only OpenCV flow never
imports transformers. Out-of-tree annotators come with their modality record (`OPENUNI_PLUGINS`).
"""

from __future__ import annotations

from annotators.base import Annotator, Resources
from openuni_builder import modalities


def get_annotator(name: str) -> type[Annotator]:
    """The annotator class of modality `name`."""
    return modalities.get(name).annotator_class()


__all__ = ["Annotator", "Resources", "get_annotator"]
