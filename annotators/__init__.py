"""Annotators, one module per modality, looked up by name (imported lazily: a build that runs
only OpenCV flow never imports transformers)."""

from __future__ import annotations

import importlib

from annotators.base import Annotator, Resources

REGISTRY: dict[str, str] = {
    "depth": "annotators.depth:DepthAnnotator",
    "flow": "annotators.flow:FlowAnnotator",
    "seg": "annotators.entity_seg:EntitySegAnnotator",
    "caption": "annotators.caption:CaptionAnnotator",
    "skeleton": "annotators.skeleton:SkeletonAnnotator",
    "densepose": "annotators.densepose:DensePoseAnnotator",
}


def get_annotator(name: str) -> type[Annotator]:
    """The annotator class registered under `name`."""
    try:
        module, cls = REGISTRY[name].split(":")
    except KeyError:
        raise KeyError(f"unknown annotator {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return getattr(importlib.import_module(module), cls)


__all__ = ["Annotator", "Resources", "REGISTRY", "get_annotator"]
