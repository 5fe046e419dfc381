"""The three records every stage speaks: what to cut, how to normalise it, and the clip in flight.

A `ClipRequest` comes out of a source parser (one row of Koala-36M, one clip of a Panda-70M row,
one manifest line, one detected shot of a folder video). A `ClipSpec` says what every clip of a
build must look like. A `Clip` is a request after decoding: its frames plus the annotations the
annotators have added so far. Only `Clip` travels through Ray, as pickled bytes in one column, so
stages never fight Arrow over ragged per-modality arrays.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ClipSpec:
    """Shape every output clip is normalised to.

    `num_frames` is 4k+1 because causal video VAEs (and UnityVideo) compress time as 1 + 4k.
    Frames are resampled to `fps`, resized so the short side covers (height, width), then
    centre-cropped: no letterboxing, no aspect distortion.
    """

    num_frames: int = 49
    fps: float = 16.0
    height: int = 256
    width: int = 256

    def __post_init__(self) -> None:
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, ... 49), got {self.num_frames}")
        if self.fps <= 0 or self.height < 8 or self.width < 8:
            raise ValueError(f"invalid clip spec {self}")

    @property
    def duration(self) -> float:
        """Seconds of source video one clip covers."""
        return self.num_frames / self.fps


@dataclass
class ClipRequest:
    """One clip to cut: where the video is, which time range, and what the source says about it.

    `start`/`end` are seconds in the source video (None = from the beginning / to the end).
    `scores` holds the numeric quality columns of the source (Koala's clarity, Panda's matching
    score, ...) so filters and the card can use them without knowing the source.
    """

    source: str
    video_id: str
    path: str
    start: float | None = None
    end: float | None = None
    caption: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    clip_index: int = 0

    @property
    def key(self) -> str:
        """Stable, dot-free sample key: readable prefix plus a hash of the clip's identity.

        WebDataset splits a key at its first dot, so keys hold only [A-Za-z0-9_-]. The hash covers
        source, video id, clip index and time range, so two clips never share a key and the same
        clip gets the same key on every rerun.
        """
        ident = f"{self.source}|{self.video_id}|{self.clip_index}|{self.start}|{self.end}"
        digest = hashlib.sha1(ident.encode()).hexdigest()[:10]
        slug = _UNSAFE.sub("_", f"{self.video_id}_{self.clip_index}").strip("_")[:48]
        return f"{self.source}-{slug}-{digest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "video_id": self.video_id,
            "path": self.path,
            "start": self.start,
            "end": self.end,
            "caption": self.caption,
            "scores": dict(self.scores),
            "extra": dict(self.extra),
            "clip_index": self.clip_index,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClipRequest":
        return cls(**d)


@dataclass
class ModalityOutput:
    """What an annotator adds for one clip.

    `raw` holds lossless arrays (written as `KEY.<modality>.npz`; a Pixelplanes codec turns them
    into the RGB video `KEY.<modality>.mp4`). `meta` is JSON-able and lands in `KEY.json` under
    `modalities.<name>` (counts, flags, model ids). Captions have `meta` only.
    """

    raw: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Clip:
    """A decoded clip in flight: frames (T, H, W, 3) uint8 RGB plus annotations so far.

    `error`/`failed_stage` are set by the first stage that fails; later stages pass the clip
    through untouched so the driver can write the failure to the ledger. `dropped` is set by the
    filter that rejects a clip (filter, reason, values): not a failure, but later stages skip it
    the same way and the driver records it in `ledger/filtered.jsonl`.
    """

    request: ClipRequest
    spec: ClipSpec
    frames: np.ndarray | None = None
    source_info: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, ModalityOutput] = field(default_factory=dict)
    filters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failed_stage: str | None = None
    members: dict[str, bytes] = field(default_factory=dict)
    dropped: dict[str, Any] | None = None
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> (start, end) wall clock
    nodes: dict[str, str] = field(default_factory=dict)  # stage -> Ray node id that ran it
    shard: str | None = None  # `--add`/`--refresh`: the committed shard the clip was read from

    @property
    def key(self) -> str:
        return self.request.key

    @property
    def ok(self) -> bool:
        return self.error is None and self.dropped is None

    def fail(self, stage: str, exc: BaseException | str) -> "Clip":
        """Mark the clip failed at `stage` and drop its heavy payload (nothing downstream needs it)."""
        reason = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.error, self.failed_stage = reason, stage
        self.frames, self.outputs, self.members = None, {}, {}
        return self

    def drop(self, filter_name: str, reason: str, values: dict[str, Any]) -> "Clip":
        """Mark the clip rejected by a filter and drop its heavy payload."""
        self.dropped = {"filter": filter_name, "reason": reason, "values": values}
        self.frames, self.outputs, self.members = None, {}, {}
        return self

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=5)

    @staticmethod
    def from_bytes(blob: bytes) -> "Clip":
        return pickle.loads(blob)
