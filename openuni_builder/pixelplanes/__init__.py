"""Pixelplanes: every modality as an RGB video frame-aligned with the clip, plus raw sidecars.

Video models (UnityVideo, UDPDiff) put each modality through the same video VAE as RGB, so each
becomes a (T, H, W, 3) uint8 video with the clip's frames, size and fps. One codec per modality;
`encode` also returns the JSON-able params that `decode` needs (they go in the sample's JSON).
Conventions and constants: docs/PIXELPLANES.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openuni_builder import modalities
from openuni_builder.pixelplanes.base import Codec, NotInvertible
from openuni_builder.pixelplanes.skeleton import coco17_to_openpose18
from openuni_builder.pixelplanes.storage import (DEFAULT_PROFILE, PROFILES, STORAGES, get_profile, load_raw,
                                                 raw_layout, raw_member, sample_raw, save_raw, storage)

__all__ = ["Codec", "DEFAULT_PROFILE", "NotInvertible", "PROFILES", "STORAGES", "codec", "coco17_to_openpose18",
           "decode", "encode", "get_profile", "load_raw", "raw_layout", "raw_member", "sample_raw", "save_raw",
           "storage"]


def codec(modality: str) -> Codec:
    """The Pixelplanes codec of `modality` (its record names it)."""
    return modalities.get(modality).codec_instance()


def encode(modality: str, raw: dict[str, np.ndarray], num_frames: int,
           **options: Any) -> tuple[np.ndarray, dict]:
    """(T, H, W, 3) uint8 frames of `modality` and the JSON-able params needed to decode them.

    `options` go to the codec: the skeleton codec needs `size=(height, width)` (keypoints do
    not carry the frame size), every other codec checks its frames against `size` when given, so
    callers can pass the clip's size to all of them; the seg codec takes `seed`.
    """
    frames, params = codec(modality).encode(raw, num_frames, **options)
    if frames.shape[0] != num_frames or frames.dtype != np.uint8:
        raise RuntimeError(f"{modality} codec returned {frames.shape} {frames.dtype}")
    size = options.get("size")
    if size is not None and tuple(frames.shape[1:3]) != tuple(size):
        raise ValueError(f"{modality} raw is {frames.shape[2]}x{frames.shape[1]} but the clip is "
                         f"{size[1]}x{size[0]} (width x height)")
    return frames, params


def decode(modality: str, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
    """Raw arrays back from a Pixelplanes video; raises NotInvertible for the skeleton."""
    return codec(modality).decode(frames, params)
