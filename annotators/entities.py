"""Entities of a segmentation: keyframe segments, which of them become tracks, and per-clip facts.

Shared by the annotator (`entity_seg`, which the driver imports without torch) and its models
(`mask2former_sam2`, imported on the workers only), so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ID = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class Segment:
    """One keyframe segment: a boolean (H, W) mask and its class label when the segmenter has one."""

    mask: np.ndarray
    label: str | None = None


def select_segments(segments: list[Segment], min_area: float, max_count: int) -> list[Segment]:
    """Drop segments smaller than `min_area` (fraction of the frame), keep the `max_count` largest.

    Specks are not worth a SAM2 track, and every track costs a decoder pass per frame, so a
    keyframe contributes at most `max_count` segments (the option `max_segments`).
    """
    kept = [s for s in segments if s.mask.mean() >= min_area]
    return sorted(kept, key=lambda s: -int(s.mask.sum()))[:max_count]


def entity_meta(ids: np.ndarray, labels: dict[int, str | None]) -> dict[str, Any]:
    """Per-clip facts: entity count, and each entity's label, mean area fraction, first frame."""
    counts = np.bincount(ids.ravel(), minlength=MAX_ID + 1)
    present = [int(i) for i in np.flatnonzero(counts) if i]
    entities = [{"id": i, "label": labels.get(i), "area": round(float(counts[i]) / ids.size, 6),
                 "first_frame": int(np.argmax((ids == i).any(axis=(1, 2))))} for i in present]
    return {"num_entities": len(entities), "entities": entities}
