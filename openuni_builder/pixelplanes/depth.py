"""Relative disparity as a spectral colormap, normalised once per clip.

One range per clip (per-frame normalisation makes the colours flicker as objects enter and
leave). The range is robust: the 2nd and 98th percentiles of the clip's disparity, so a few
outlier pixels do not wash the colours out; values outside it saturate. Disparity is quantised to
256 levels and coloured with matplotlib's "Spectral_r": near (large disparity) = red, far = blue,
as in the Depth Anything and Marigold visualisations. Decoding looks up the nearest of the 256
colormap colours.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np

from openuni_builder.pixelplanes.base import (Codec, check_count, check_frames, nearest_colour,
                                              require)

COLORMAP = "Spectral_r"
LEVELS = 256
PERCENTILES = (2.0, 98.0)
LUT = np.round(255 * matplotlib.colormaps[COLORMAP].resampled(LEVELS)(np.arange(LEVELS))[:, :3]
               ).astype(np.uint8)


class DepthCodec(Codec):
    """Disparity (T, H, W) <-> colormap frames; params: lo/hi (disparity at level 0 and 255)."""

    name = "depth"

    def encode(self, raw: dict[str, np.ndarray], num_frames: int,
               **options: Any) -> tuple[np.ndarray, dict]:
        disp = require(raw, "disparity", self.name, 3).astype(np.float64)
        check_count(len(disp), num_frames, "depth")
        lo, hi = (float(p) for p in np.percentile(disp, PERCENTILES))
        scale = (LEVELS - 1) / (hi - lo) if hi > lo else 0.0
        level = np.clip(np.round((disp - lo) * scale), 0, LEVELS - 1).astype(np.intp)
        return LUT[level], {"lo": lo, "hi": hi, "percentiles": list(PERCENTILES),
                            "colormap": COLORMAP, "levels": LEVELS}

    def decode(self, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
        frames = check_frames(frames, self.name)
        level = nearest_colour(frames, LUT)
        lo, hi = float(params["lo"]), float(params["hi"])
        return {"disparity": (lo + level * (hi - lo) / (LEVELS - 1)).astype(np.float32)}
