"""Near-duplicate clips, found by perceptual hash.

Unlike every other filter, the decision is not the clip's own: whether a clip is a duplicate
depends on the clips kept before it. So the filter only measures (a hash per clip, in the decode
task) and the driver decides (`HashIndex`, used by `screening`), which is why the hash and the
index live together here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import cv2
import numpy as np

from openuni_builder.clip import Clip
from openuni_builder.filters.base import Filter, FilterConfigError, Verdict


def frame_phash(frame: np.ndarray) -> bytes:
    """64-bit DCT perceptual hash of one RGB frame: grey 32x32, the 8x8 lowest DCT frequencies,
    one bit per coefficient above their median (the classic pHash)."""
    grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(grey.astype(np.float32))[:8, :8]
    return np.packbits(low > np.median(low)).tobytes()


def clip_phash(frames: np.ndarray, n: int) -> bytes:
    """Concatenated frame hashes of `n` evenly spaced frames (first and last included)."""
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return b"".join(frame_phash(frames[i]) for i in picks)


def phash_distance(a: bytes, b: bytes) -> int:
    """Largest Hamming distance between corresponding frame hashes of two clip hashes."""
    x = np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).reshape(-1, 8)
    return int(np.unpackbits(x, axis=1).sum(axis=1).max())


class NearDuplicateFilter(Filter):
    """Measures a perceptual hash of `frames` sampled frames; the keep/drop decision needs every
    clip, so the driver makes it (`HashIndex`, in `screening`): two clips are near-duplicates when
    every pair of corresponding frame hashes differs in at most `max_distance` of 64 bits."""

    name, phase = "near_duplicate", "content"
    defaults = {"frames": 4, "max_distance": 6}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 1 <= int(self.options["frames"]) <= 16:
            raise FilterConfigError(f"filters.near_duplicate.frames must be 1..16, got {self.options['frames']}")
        if not 0 <= int(self.options["max_distance"]) <= 7:
            # 8 bands of 8 bits: a pair within 7 bits always shares one band exactly (HashIndex).
            raise FilterConfigError("filters.near_duplicate.max_distance must be 0..7 bits of 64, "
                                    f"got {self.options['max_distance']}")

    def check(self, clip: Clip) -> Verdict:
        return Verdict(True, None, {"phash": clip_phash(clip.frames, int(self.options["frames"])).hex()})


class HashIndex:
    """Kept clip hashes, searchable for near-duplicates without comparing against every clip.

    Multi-index hashing: the first frame hash is split into its 8 bytes; two hashes within 7 bits
    share at least one byte at the same position (pigeonhole), so only clips sharing a band are
    compared in full.
    """

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self.hashes: dict[str, bytes] = {}
        self.bands: dict[tuple[int, int], list[str]] = defaultdict(list)

    def add(self, key: str, phash: bytes) -> None:
        self.hashes[key] = phash
        for band in range(8):
            self.bands[band, phash[band]].append(key)

    def nearest(self, phash: bytes) -> tuple[str, int] | None:
        """The closest kept clip within `max_distance` (ties: smallest key), or None."""
        candidates = {k for band in range(8) for k in self.bands.get((band, phash[band]), ())}
        close = sorted((phash_distance(phash, self.hashes[k]), k) for k in candidates
                       if len(self.hashes[k]) == len(phash))
        if close and close[0][0] <= self.max_distance:
            return close[0][1], close[0][0]
        return None
