"""Skeletons drawn OpenPose-style on black (the ControlNet-1.1 `draw_bodypose` look).

Keypoints are OpenPose-18 (order in OPENPOSE18); pose models that give COCO-17 go through
`coco17_to_openpose18` first. Each of the 17 limbs is a filled ellipse in its standard colour at
60% intensity, then each confident keypoint a filled circle in its full colour. Line width and
circle radius are 4 px at a 512 px short side and scale with the frame. The rendering drops
information (overlaps, scores), so it is not decoded: the raw keypoints are in the sidecar.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from openuni_builder.pixelplanes.base import Codec, check_count, require

OPENPOSE18 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
              "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
              "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
          "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
          "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
# Limbs as (from, to) OpenPose-18 indices, in drawing order; limb i has colour COLORS[i].
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
         (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
# Standard OpenPose colours, RGB; keypoint k is drawn in COLORS[k].
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
          (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
          (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
LIMB_INTENSITY = 0.6
MIN_SCORE = 0.3
WIDTH_AT_512 = 4


def coco17_to_openpose18(kps: np.ndarray, min_score: float = MIN_SCORE) -> np.ndarray:
    """(..., 17, 3) COCO keypoints -> (..., 18, 3) OpenPose-18 (x, y, score).

    The neck is the midpoint of the shoulders with the lower of their two scores, present only
    when both shoulders score at least `min_score` (else all zero, i.e. absent).
    """
    kps = np.asarray(kps)
    if kps.shape[-2:] != (17, 3):
        raise ValueError(f"COCO-17 keypoints must be (..., 17, 3), got {kps.shape}")
    out = np.zeros(kps.shape[:-2] + (18, 3), kps.dtype if kps.dtype.kind == "f" else np.float32)
    for op_index, part in enumerate(OPENPOSE18):
        if part != "neck":
            out[..., op_index, :] = kps[..., COCO17.index(part), :]
    left, right = kps[..., COCO17.index("left_shoulder"), :], kps[..., COCO17.index("right_shoulder"), :]
    both = (left[..., 2] >= min_score) & (right[..., 2] >= min_score)
    neck = np.concatenate([(left[..., :2] + right[..., :2]) / 2,
                           np.minimum(left[..., 2:], right[..., 2:])], axis=-1)
    out[..., 1, :] = np.where(both[..., None], neck, 0)
    return out


def draw_pose(canvas: np.ndarray, people: np.ndarray, min_score: float = MIN_SCORE) -> np.ndarray:
    """Draw (P, 18, 3) keypoints onto an (H, W, 3) RGB uint8 canvas in place; returns it."""
    width = max(1, round(WIDTH_AT_512 * min(canvas.shape[:2]) / 512))
    seen = people[..., 2] >= min_score
    for limb, (a, b) in enumerate(LIMBS):
        colour = tuple(int(c * LIMB_INTENSITY) for c in COLORS[limb])
        for person, ok in zip(people, seen):
            if not (ok[a] and ok[b]):
                continue
            (xa, ya), (xb, yb) = person[a, :2], person[b, :2]
            length = math.hypot(xa - xb, ya - yb)
            angle = math.degrees(math.atan2(ya - yb, xa - xb))
            poly = cv2.ellipse2Poly((int(round((xa + xb) / 2)), int(round((ya + yb) / 2))),
                                    (int(length / 2), width), int(round(angle)), 0, 360, 1)
            cv2.fillConvexPoly(canvas, poly, colour)
    for person, ok in zip(people, seen):
        for k in np.flatnonzero(ok):
            x, y = person[k, :2]
            cv2.circle(canvas, (int(round(x)), int(round(y))), width, COLORS[k], thickness=-1)
    return canvas


class SkeletonCodec(Codec):
    """Keypoints (T, P, 18, 3) -> OpenPose renderings; needs `size=(height, width)`."""

    name = "skeleton"
    invertible = False

    def encode(self, raw: dict[str, np.ndarray], num_frames: int,
               size: tuple[int, int] | None = None, min_score: float = MIN_SCORE,
               **options: Any) -> tuple[np.ndarray, dict]:
        kps = require(raw, "keypoints", self.name, 4)
        if kps.shape[-2:] != (18, 3):
            raise ValueError(f"skeleton keypoints must be (T, P, 18, 3), got {kps.shape}")
        check_count(len(kps), num_frames, "skeleton")
        if size is None:
            raise ValueError("skeleton encode needs size=(height, width): keypoints do not carry "
                             "the frame size")
        height, width = (int(s) for s in size)
        frames = np.zeros((num_frames, height, width, 3), np.uint8)
        for canvas, people in zip(frames, kps.astype(np.float64)):
            draw_pose(canvas, people, min_score)
        return frames, {"min_score": min_score, "keypoint_order": "openpose18"}
