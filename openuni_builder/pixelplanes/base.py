"""What every Pixelplanes codec shares: the interface, input checks, and nearest-colour decoding.

A codec turns one modality's raw arrays into an RGB video with exactly the clip's frames, and
returns the JSON-able parameters its `decode` needs to get the raw arrays back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy.spatial import cKDTree


class NotInvertible(ValueError):
    """The encoding drops information (skeleton renderings): read the raw sidecar instead."""


class Codec(ABC):
    """One modality's invertible (where possible) RGB encoding."""

    name: ClassVar[str]
    invertible: ClassVar[bool] = True

    @abstractmethod
    def encode(self, raw: dict[str, np.ndarray], num_frames: int,
               **options: Any) -> tuple[np.ndarray, dict]:
        """(T, H, W, 3) uint8 RGB frames and the JSON-able params that `decode` needs."""

    def decode(self, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
        """Raw arrays back from (possibly video-compressed) frames."""
        raise NotInvertible(f"the {self.name} Pixelplanes video is a rendering and cannot be "
                            f"decoded; load the raw arrays from the {self.name}.npz sidecar")


def require(raw: dict[str, np.ndarray], key: str, modality: str, ndim: int) -> np.ndarray:
    """The array `raw[key]`, checked for presence, rank and finiteness, with a message naming it."""
    if key not in raw:
        raise ValueError(f"{modality} raw needs key {key!r}, got keys {sorted(raw)}")
    arr = np.asarray(raw[key])
    if arr.ndim != ndim:
        raise ValueError(f"{modality} raw[{key!r}] must have {ndim} dims, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{modality} raw[{key!r}] has NaN or infinite values")
    return arr


def check_frames(frames: np.ndarray, modality: str) -> np.ndarray:
    """Frames must be (T, H, W, 3) uint8, as `decode_mp4` returns them."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{modality} decode expects (T, H, W, 3) uint8 frames, "
                         f"got {frames.shape} {frames.dtype}")
    return frames


def check_count(have: int, want: int, what: str) -> None:
    if have != want:
        raise ValueError(f"{what}: got {have} frames, the clip has {want}")


def nearest_colour(frames: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour (Euclidean RGB) for every pixel of (..., 3) uint8 frames.

    Queries each distinct colour once (a lossless video has at most len(palette) of them, a
    compressed one a few thousand), so cost follows the colours, not the pixels.
    """
    packed = (frames[..., 0].astype(np.int32) << 16) | (frames[..., 1].astype(np.int32) << 8) \
        | frames[..., 2].astype(np.int32)
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=-1)
    _, index = cKDTree(np.asarray(palette, np.float64)).query(rgb.astype(np.float64))
    return index[inverse].reshape(frames.shape[:-1])
