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
            # d + 1 bands per frame hash: a pair within d bits always shares one band (HashIndex);
            # past 7, bands get too short to narrow the search.
            raise FilterConfigError("filters.near_duplicate.max_distance must be 0..7 bits of 64, "
                                    f"got {self.options['max_distance']}")

    def check(self, clip: Clip) -> Verdict:
        return Verdict(True, None, {"phash": clip_phash(clip.frames, int(self.options["frames"])).hex()})


class HashIndex:
    """Kept clip hashes, searchable for near-duplicates in about constant time per query.

    Multi-index hashing over two frames. Two clips are near-duplicates when every pair of frame
    hashes is within `max_distance` (d) bits, so by pigeonhole each frame hash, cut into d + 1
    bands, matches the other's in at least one band exactly. A clip is filed under every pair
    (band of its first frame hash, band of its second): (d + 1)^2 keys of about 2 * 64 / (d + 1)
    bits each, and a query compares in full only the clips sharing one of its keys. One-byte bands
    of one frame (before) left ~N/32 candidates per query, so a screen of N clips cost N^2/32
    distance checks: 10k/20k/40k hashes took 15.8/44.5/195 s (bench/driver_scale.py has the new
    figures).
    """

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self.hashes: dict[str, bytes] = {}
        self.keys: list[str] = []
        # bucket -> indices into self.keys; buckets are hashes of the band tuples (a collision only
        # adds a candidate, which the full comparison then rejects): ~5x less memory than tuples.
        self.buckets: dict[int, list[int]] = defaultdict(list)
        n = max_distance + 1
        self._bands = [(64 * j // n, 64 * (j + 1) // n) for j in range(n)]

    def _buckets(self, phash: bytes) -> list[int]:
        frames = [int.from_bytes(phash[i:i + 8], "big") for i in range(0, min(len(phash), 16), 8)]
        per_frame = [[(j, (x >> (64 - end)) & ((1 << (end - start)) - 1))
                      for j, (start, end) in enumerate(self._bands)] for x in frames]
        if len(per_frame) == 1:
            return [hash((len(phash), *band)) for band in per_frame[0]]
        return [hash((len(phash), *a, *b)) for a in per_frame[0] for b in per_frame[1]]

    def add(self, key: str, phash: bytes) -> None:
        self.hashes[key] = phash
        index = len(self.keys)  # one int object, referenced from each of its buckets
        self.keys.append(key)
        for bucket in self._buckets(phash):
            self.buckets[bucket].append(index)

    def nearest(self, phash: bytes) -> tuple[str, int] | None:
        """The closest kept clip within `max_distance` (ties: smallest key), or None."""
        candidates = sorted({self.keys[i] for bucket in self._buckets(phash) for i in self.buckets.get(bucket, ())
                             if len(self.hashes[self.keys[i]]) == len(phash)})
        if not candidates:
            return None
        # All candidates at once: XOR against the query, bits per 8-byte frame hash, worst frame.
        stacked = np.frombuffer(b"".join(self.hashes[k] for k in candidates), np.uint64).reshape(len(candidates), -1)
        query = np.frombuffer(phash, np.uint64)
        distance = np.bitwise_count(stacked ^ query).max(axis=1)
        best = int(np.argmin(distance))  # first minimum: the smallest key among the closest
        return (candidates[best], int(distance[best])) if distance[best] <= self.max_distance else None
