"""A two-squares clip with exact entity ids: what the seg and caption tests feed the real models
(the tiny models themselves come from openuni_builder.tiny_models)."""

from __future__ import annotations

import numpy as np


def two_squares_clip(num_frames: int = 5, size: int = 64, ids: tuple[int, int] = (3, 7)
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a red square moving right and a blue one moving down.

    Returns frames uint8 (T, size, size, 3) and the exact entity id map uint16 (T, size, size).
    """
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    truth = np.zeros((num_frames, size, size), np.uint16)
    side = size // 4
    for t in range(num_frames):
        for entity_id, (y, x), colour in ((ids[0], (size // 8, size // 8 + 2 * t), (220, 30, 30)),
                                          (ids[1], (size // 2 + 2 * t, size // 2), (30, 30, 220))):
            frames[t, y:y + side, x:x + side] = colour
            truth[t, y:y + side, x:x + side] = entity_id
    return frames, truth
