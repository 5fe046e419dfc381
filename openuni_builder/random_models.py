"""Random-weight stand-ins of registered models, in two sizes, written where `openuni-models pull`
would put the real ones: "tiny" (tests, `openuni-build --dry-run`; `tiny_models`) and "full"
(published sizes, for GPU speed and memory figures without a hub; `full_models`).

What to write for an annotator comes from its one declaration, `Annotator.models()`, so the dry
run, the tests and bench/gpu.py never keep lists of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from openuni_builder import full_models, tiny_models
from openuni_builder.models import CACHE_ENV, cache_dir, load_registry

SIZES = {"tiny": tiny_models.WRITERS, "full": full_models.WRITERS}


def write_random_model(name: str, size: str = "tiny", seed: int = 0, cache: Path | None = None) -> Path:
    """Write a random-weight `name` of `size` into (cache or cache_dir())/name; returns that folder."""
    entry = load_registry()[name]
    writers = SIZES[size]
    if name not in writers:
        raise ValueError(f"no {size} random-weight stand-in for model {name!r} ({entry.hub_id}); "
                         f"{size} ones exist for {', '.join(sorted(writers))}")
    folder = (cache or cache_dir()) / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    writers[name](entry, folder, seed)
    return folder


def write_models_for(annotator, size: str = "tiny", cache: Path | None = None) -> list[str]:
    """Write `size` stand-ins of every model `annotator` (an Annotator instance) declares in
    `models()` and the cache lacks; returns the names written. With `cache`, it becomes this
    process's model cache first (the annotator then loads from it)."""
    if cache is not None:
        os.environ[CACHE_ENV] = str(cache)
    written = []
    for name in annotator.models():
        if not (cache_dir() / name).is_dir():
            write_random_model(name, size)
            written.append(name)
    reason = annotator.unavailable()
    if reason:
        raise RuntimeError(f"{type(annotator).__name__} is still unavailable after writing {written}: {reason}")
    return written
