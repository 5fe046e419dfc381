"""Entity segmentation as flat colours: one random, well-separated colour per entity id.

The palette is a function of the seed only, indexed by entity id, so an entity keeps its colour
over the whole clip (and across clips built with the same seed). Colours are drawn from a seeded
pool of random RGB colours by farthest-point selection starting from black: each next colour is
the pool colour farthest from black and from all colours chosen before, which keeps them far
apart in RGB and away from the black background, so they survive video compression. Decoding maps
each pixel to the id of the nearest palette colour.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from openuni_builder.pixelplanes.base import (Codec, check_count, check_frames, nearest_colour,
                                              require)

DEFAULT_SEED = 0
POOL_SIZE = 4096
MAX_ID = 1023


@lru_cache(maxsize=8)
def palette(seed: int = DEFAULT_SEED, size: int = MAX_ID + 1) -> np.ndarray:
    """(size, 3) uint8: row 0 is black (background), row k the colour of entity id k.

    Farthest-point selection is greedy, so the palette for a smaller `size` is a prefix of the
    one for a larger size: an id's colour does not depend on how many entities a clip has.
    """
    if not 1 <= size <= MAX_ID + 1:
        raise ValueError(f"palette size must be 1..{MAX_ID + 1}, got {size}")
    pool = np.random.default_rng(seed).integers(0, 256, (POOL_SIZE, 3)).astype(np.float64)
    chosen = [np.zeros(3)]
    dist = np.linalg.norm(pool, axis=1)
    for _ in range(size - 1):
        best = int(np.argmax(dist))
        chosen.append(pool[best])
        dist = np.minimum(dist, np.linalg.norm(pool - pool[best], axis=1))
    return np.stack(chosen).astype(np.uint8)


class SegCodec(Codec):
    """Entity ids (T, H, W) <-> flat-colour frames; params: seed and the palette used."""

    name = "seg"

    def encode(self, raw: dict[str, np.ndarray], num_frames: int, seed: int = DEFAULT_SEED,
               **options: Any) -> tuple[np.ndarray, dict]:
        ids = require(raw, "ids", self.name, 3)
        check_count(len(ids), num_frames, "seg")
        if ids.dtype.kind not in "ui":
            raise ValueError(f"seg ids must be integers, got {ids.dtype}")
        top = int(ids.max()) if ids.size else 0
        if (ids.size and ids.min() < 0) or top > MAX_ID:
            raise ValueError(f"seg ids must lie in 0..{MAX_ID}, got {ids.min()}..{top}")
        colours = palette(seed, top + 1)
        return colours[ids], {"seed": seed, "palette": colours.tolist()}

    def decode(self, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
        frames = check_frames(frames, self.name)
        colours = np.asarray(params["palette"], np.uint8)
        return {"ids": nearest_colour(frames, colours).astype(np.uint16)}
