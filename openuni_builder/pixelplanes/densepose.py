"""DensePose IUV as an RGB image: R = part index I scaled to 0..255, G = U, B = V.

I (0 background, 1..24 body parts) becomes round(I * 255 / 24), so neighbouring parts are ~10.6
levels apart and decode back by rounding even after mild compression. U and V are already 0..255
and are zeroed on the background, which is therefore black. Channel order is R, G, B = I, U, V;
DensePose's own tools wrote the same array through OpenCV, i.e. as B, G, R on disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openuni_builder.pixelplanes.base import Codec, check_count, check_frames, require

NUM_PARTS = 24
I_SCALE = 255 / NUM_PARTS


class DensePoseCodec(Codec):
    """IUV (T, H, W, 3) uint8 <-> frames; exact when stored losslessly. No params needed."""

    name = "densepose"

    def encode(self, raw: dict[str, np.ndarray], num_frames: int,
               **options: Any) -> tuple[np.ndarray, dict]:
        iuv = require(raw, "iuv", self.name, 4)
        if iuv.shape[-1] != 3 or iuv.dtype != np.uint8:
            raise ValueError(f"densepose iuv must be (T, H, W, 3) uint8, got {iuv.shape} {iuv.dtype}")
        check_count(len(iuv), num_frames, "densepose")
        part = iuv[..., 0]
        if part.max(initial=0) > NUM_PARTS:
            raise ValueError(f"densepose part index must be 0..{NUM_PARTS}, got {part.max()}")
        frames = iuv.copy()
        frames[..., 0] = np.round(part * I_SCALE).astype(np.uint8)
        frames[part == 0] = 0
        return frames, {"channels": "I,U,V", "i_scale": I_SCALE}

    def decode(self, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
        frames = check_frames(frames, self.name)
        iuv = frames.copy()
        iuv[..., 0] = np.clip(np.round(frames[..., 0] / I_SCALE), 0, NUM_PARTS).astype(np.uint8)
        iuv[iuv[..., 0] == 0] = 0
        return {"iuv": iuv}
