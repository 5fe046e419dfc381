"""Annotators, one module per modality, looked up by name (imported lazily: a build that runs
only OpenCV flow never imports transformers).

Out-of-tree annotators register through the environment, so every Ray worker sees them too:
`OPENUNI_ANNOTATORS="name=package.module:Class,other=..."` (set it where the workers start, e.g.
`env_vars` in runtime_env.yaml).
"""

from __future__ import annotations

import importlib
import os

from annotators.base import Annotator, Resources

REGISTRY: dict[str, str] = {
    "depth": "annotators.depth:DepthAnnotator",
    "flow": "annotators.flow:FlowAnnotator",
    "seg": "annotators.entity_seg:EntitySegAnnotator",
    "caption": "annotators.caption:CaptionAnnotator",
    "skeleton": "annotators.skeleton:SkeletonAnnotator",
    "densepose": "annotators.densepose:DensePoseAnnotator",
}
PLUGINS_ENV = "OPENUNI_ANNOTATORS"
REGISTRY.update(dict(item.split("=", 1) for item in os.environ.get(PLUGINS_ENV, "").split(",") if "=" in item))


def get_annotator(name: str) -> type[Annotator]:
    """The annotator class registered under `name`."""
    try:
        module, cls = REGISTRY[name].split(":")
    except KeyError:
        raise KeyError(f"unknown annotator {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    return getattr(importlib.import_module(module), cls)


__all__ = ["Annotator", "Resources", "REGISTRY", "get_annotator"]
