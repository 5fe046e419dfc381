"""A small deterministic clip for the human-annotator tests (the tiny person detector, ViTPose
and DensePose checkpoints come from openuni_builder.tiny_models)."""

from __future__ import annotations

import numpy as np


def person_clip(frames: int = 5, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A small moving-blob clip (uint8 RGB); content only has to be deterministic."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(frames)])
