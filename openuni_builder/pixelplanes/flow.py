"""Optical flow as the Middlebury colour wheel (Baker et al., "A Database and Evaluation
Methodology for Optical Flow", 2011), normalised by the clip's largest flow vector.

Colour = direction (hue on the 55-entry wheel), saturation = magnitude / max_rad: zero flow is
white, the clip's largest vector is a fully saturated wheel colour. Because max_rad is the clip's
maximum, no vector falls outside the unit disc, so the 0.75 darkening the reference applies there
never happens and every colour decodes back to (u, v).

Time alignment: the clip has T frames and T-1 flow pairs; video frame t shows the flow of pair
(t, t+1), and the last frame repeats pair (T-2, T-1) so the video has exactly T frames. `decode`
returns only the T-1 real pairs.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cv2
import numpy as np

from openuni_builder.pixelplanes.base import Codec, check_count, check_frames, require

# Number of hues per segment of the Middlebury wheel: red-yellow, yellow-green, green-cyan,
# cyan-blue, blue-magenta, magenta-red (55 in all).
RY, YG, GC, CB, BM, MR = 15, 6, 4, 11, 13, 6


def colorwheel() -> np.ndarray:
    """The (55, 3) Middlebury wheel, RGB 0..255, exactly as the reference `makeColorwheel`."""
    rows = []
    for n, (r, g, b) in ((RY, (1, "up", 0)), (YG, ("down", 1, 0)), (GC, (0, 1, "up")),
                         (CB, (0, "down", 1)), (BM, ("up", 0, 1)), (MR, (1, 0, "down"))):
        ramp = np.floor(255 * np.arange(n) / n)
        rows.append(np.stack([_channel(c, ramp) for c in (r, g, b)], axis=1))
    return np.concatenate(rows)


def _channel(spec: int | str, ramp: np.ndarray) -> np.ndarray:
    if spec == "up":
        return ramp
    if spec == "down":
        return 255 - ramp
    return np.full_like(ramp, 255 * spec)


WHEEL = colorwheel()
NCOLS = len(WHEEL)
WHEEL32 = WHEEL.astype(np.float32)
# HSV hue (degrees) of each wheel entry: it rises monotonically from 0 (red) to ~350 (entry 54),
# and is linear between neighbouring entries (they lie on one edge of the RGB hue hexagon), so
# interpolating it inverts the wheel exactly.
WHEEL_HUE = cv2.cvtColor((WHEEL / 255).astype(np.float32)[None], cv2.COLOR_RGB2HSV)[0, :, 0]


def flow_to_rgb(flow: np.ndarray, max_rad: float) -> np.ndarray:
    """(..., 2) flow in pixels -> (..., 3) uint8 RGB, radius divided by `max_rad` (must bound it).

    Same arithmetic as the reference `computeColor`, except colours are rounded, not floored,
    to halve the quantisation error.
    """
    return np.rint(wheel_colour(flow, max_rad)).astype(np.uint8)


def wheel_colour(flow: np.ndarray, max_rad: float) -> np.ndarray:
    """The unrounded float32 colour of `flow_to_rgb` (float32: 2.5x faster than float64 on a
    49-frame 256² clip, and the colour is quantised to 8 bits anyway)."""
    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    rad = np.hypot(u, v) / np.float32(max_rad) if max_rad > 0 else np.zeros_like(u)
    fk = (np.arctan2(-v, -u) / np.float32(np.pi) + 1) * np.float32((NCOLS - 1) / 2)
    k0 = fk.astype(np.int32)  # fk >= 0, so truncation is floor
    f = (fk - k0)[..., None]
    col = (1 - f) * WHEEL32[k0] + f * WHEEL32[(k0 + 1) % NCOLS]
    return 255 - np.minimum(rad, 1)[..., None] * (255 - col)


# Side of the table `flow_to_rgb_lut` interpolates: odd, so the centre texel is exactly zero
# flow. The table holds unrounded float colours, so the lookup rounds once, as the formula does.
# Measured on a real DIS flow (bikes.mp4, 49 frames at 256²): 3.7% of pixels move by 1 level in
# some channel, 0.26% by more (the wheel's seam, below), and the round-trip endpoint error is the
# formula's (0.6929 vs 0.6933 px); a 513 table doubles the 1-level moves, a uint8 table of any
# size rounds twice and adds ~5% endpoint error. 12.6 MB, built once per process in ~0.1 s.
LUT_SIZE = 1025


@cache
def wheel_lut() -> np.ndarray:
    """(LUT_SIZE, LUT_SIZE, 3) float32: `wheel_colour` of the grid [-1, 1]^2, u along columns."""
    centre = (LUT_SIZE - 1) / 2
    axis = (np.arange(LUT_SIZE, dtype=np.float32) - centre) / centre
    u, v = np.meshgrid(axis, axis)
    return wheel_colour(np.stack([u, v], axis=-1), 1.0)


def flow_to_rgb_lut(flow: np.ndarray, max_rad: float) -> np.ndarray:
    """`flow_to_rgb` of a (T, H, W, 2) flow (H, W < 32767) by bilinear lookup in `wheel_lut`.

    Why: the arithmetic of `flow_to_rgb` costs ~0.3-0.6 s per 49-frame 256² clip, more than the
    DIS flow itself; the lookup (cv2.remap, then one rounding) takes ~15 ms. The one place it
    differs by more than a level is the reference wheel's own seam (flow pointing right, where
    entry 54 meets entry 0): there it blends the two entries, and both decode to direction +-pi.
    """
    centre = np.float32((LUT_SIZE - 1) / 2)
    scale = centre / np.float32(max_rad) if max_rad > 0 else np.float32(0)
    lut = wheel_lut()
    out = np.empty(flow.shape[:-1] + (3,), np.uint8)
    for t, pair in enumerate(flow):  # per frame: remap refuses images of 32767+ rows
        colour = cv2.remap(lut, pair.astype(np.float32) * scale + centre, None, cv2.INTER_LINEAR)
        cv2.convertScaleAbs(colour, dst=out[t])  # rounds to nearest and saturates to uint8
    return out


def rgb_to_flow(rgb: np.ndarray, max_rad: float) -> np.ndarray:
    """Invert `flow_to_rgb`: chroma (max - min channel) is the radius, HSV hue gives the angle.

    Chroma and hue are unchanged by the white blend `1 - rad * (1 - wheel)`, which is what makes
    the wheel invertible. Hues in the wheel's gap (entry 54 to red) mean direction +-pi either way.
    """
    shape = rgb.shape[:-1]
    hsv = cv2.cvtColor((rgb.reshape(-1, 1, 3) / 255).astype(np.float32), cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[:, 0, 0], hsv[:, 0, 1], hsv[:, 0, 2]
    rad = (sat * val).astype(np.float64) * max_rad
    fk = np.interp(hue, WHEEL_HUE, np.arange(NCOLS))
    theta = (fk / (NCOLS - 1) * 2 - 1) * np.pi
    flow = np.stack([-rad * np.cos(theta), -rad * np.sin(theta)], axis=-1)
    return flow.reshape(*shape, 2).astype(np.float32)


class FlowCodec(Codec):
    """Forward flow (T-1, H, W, 2) <-> T Middlebury-wheel frames; params: {"max_rad": pixels}."""

    name = "flow"

    def encode(self, raw: dict[str, np.ndarray], num_frames: int,
               **options: Any) -> tuple[np.ndarray, dict]:
        flow = require(raw, "flow", self.name, 4)
        if flow.shape[-1] != 2:
            raise ValueError(f"flow raw must be (T-1, H, W, 2), got {flow.shape}")
        check_count(len(flow) + 1, num_frames, "flow has one pair fewer than frames")
        if num_frames < 2:
            raise ValueError("flow needs a clip of at least 2 frames")
        max_rad = float(np.hypot(flow[..., 0], flow[..., 1]).max())
        frames = flow_to_rgb_lut(flow, max_rad)
        frames = np.concatenate([frames, frames[-1:]])
        return frames, {"max_rad": max_rad}

    def decode(self, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
        frames = check_frames(frames, self.name)
        if len(frames) < 2:
            raise ValueError("a flow video has at least 2 frames")
        return {"flow": rgb_to_flow(frames[:-1], float(params["max_rad"]))}
