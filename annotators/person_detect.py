"""Person boxes for the human annotators: RT-DETR detections per frame, linked into tracks.

Not an annotator itself: the skeleton and DensePose annotators each own a `PersonDetector` (one
per Ray actor; RT-DETR R50 is small next to ViTPose or DensePose R-CNN). Detection is the
transformers RT-DETR pipeline unchanged (image processor, model, `post_process_object_detection`)
filtered to the COCO "person" class. `IouTracker` then gives each person one id through the clip,
so skeleton arrays can be indexed by track and the per-clip person statistics
(`PersonTracks.meta()`) count people rather than detections; the balancing step reads those as
"human-centric" signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from annotators.base import check_frames
from openuni_builder.models import load_registry, model_dir, missing


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class IouTracker:
    """Links per-frame boxes into tracks by IoU with each track's last box.

    Matching is one-to-one (Hungarian on IoU, pairs below `iou_threshold` rejected). A track not
    matched for more than `max_gap` frames is retired, so a person leaving and re-entering much
    later gets a new id; unmatched boxes start new tracks with the next free id (0, 1, 2, ...).
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: int = 4) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold, self.max_gap = iou_threshold, max_gap
        self._last: dict[int, np.ndarray] = {}  # track id -> last box
        self._missed: dict[int, int] = {}  # track id -> frames since last match
        self._next_id = 0

    def update(self, boxes: np.ndarray) -> list[int]:
        """Track ids for this frame's boxes (N, 4) xyxy, in the order given."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        active = list(self._last)
        ids = [-1] * len(boxes)
        if active and len(boxes):
            iou = box_iou(np.stack([self._last[t] for t in active]), boxes)
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= self.iou_threshold:
                    ids[c] = active[r]
        for c, box in enumerate(boxes):
            if ids[c] < 0:
                ids[c], self._next_id = self._next_id, self._next_id + 1
            self._last[ids[c]], self._missed[ids[c]] = box, 0
        for t in active:
            if t not in ids:
                self._missed[t] += 1
                if self._missed[t] > self.max_gap:
                    del self._last[t], self._missed[t]
        return ids


@dataclass
class PersonTracks:
    """People of one clip: `boxes` (T, P, 4) xyxy pixels and `scores` (T, P), valid where
    `present` (T, P) is True (zeros elsewhere); track p keeps index p in every frame."""

    boxes: np.ndarray
    scores: np.ndarray
    present: np.ndarray
    height: int
    width: int

    @property
    def num_tracks(self) -> int:
        return self.boxes.shape[1]

    @classmethod
    def from_frames(cls, detections: list[tuple[np.ndarray, np.ndarray]], height: int, width: int,
                    tracker: IouTracker, max_people: int | None = None) -> "PersonTracks":
        """Track per-frame (boxes (N,4), scores (N,)) detections. With `max_people`, only the
        tracks seen in the most frames are kept (ties: earlier id), renumbered in id order."""
        per_frame = [(tracker.update(b), b, s) for b, s in detections]
        seen = np.zeros(max([max(ids, default=-1) for ids, _, _ in per_frame], default=-1) + 1, int)
        for ids, _, _ in per_frame:
            seen[ids] += 1
        keep = np.arange(len(seen))
        if max_people is not None and len(keep) > max_people:
            keep = np.sort(np.argsort(-seen, kind="stable")[:max_people])
        index = {int(t): p for p, t in enumerate(keep)}
        T, P = len(detections), len(keep)
        boxes, scores = np.zeros((T, P, 4), np.float32), np.zeros((T, P), np.float32)
        present = np.zeros((T, P), bool)
        for t, (ids, b, s) in enumerate(per_frame):
            for i, track in enumerate(ids):
                if track in index:
                    p = index[track]
                    boxes[t, p], scores[t, p], present[t, p] = b[i], s[i], True
        return cls(boxes, scores, present, height, width)

    def meta(self) -> dict[str, Any]:
        """Per-clip person facts for ModalityOutput.meta (JSON-able).

        `person_count`: tracks; `person_frame_fraction`: frames with at least one person;
        `mean_box_area_fraction`: mean box area / frame area over all person boxes;
        `max_people_per_frame`; `no_person`: no box in any frame.
        """
        wh = np.clip(self.boxes[..., 2:] - self.boxes[..., :2], 0, None)
        areas = (wh[..., 0] * wh[..., 1])[self.present] / float(self.height * self.width)
        frames = len(self.present)
        return {
            "person_count": int(self.present.any(axis=0).sum()),
            "person_frame_fraction": float(self.present.any(axis=1).mean()) if frames else 0.0,
            "mean_box_area_fraction": float(areas.mean()) if areas.size else 0.0,
            "max_people_per_frame": int(self.present.sum(axis=1).max(initial=0)),
            "no_person": not bool(self.present.any()),
        }


class PersonDetector:
    """RT-DETR person boxes from the local model cache, tracked over a clip.

    `threshold` is the score a box needs (post_process_object_detection's `threshold`);
    `batch_size` frames go through the model at once.
    """

    def __init__(self, model: str = "rtdetr-r50", threshold: float = 0.5, batch_size: int = 8,
                 iou_threshold: float = 0.3, max_gap: int = 4, max_people: int | None = 8,
                 device: str | None = None) -> None:
        if model not in load_registry():
            raise KeyError(f"person detector {model!r} is not in manifests/models.toml")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name, self.threshold, self.batch_size = model, threshold, batch_size
        self.iou_threshold, self.max_gap, self.max_people = iou_threshold, max_gap, max_people
        self.device = device
        self.model = self.processor = None
        self.person_label: int | None = None

    def unavailable(self) -> str | None:
        return missing(self.model_name)

    def load(self) -> None:
        from transformers import RTDetrForObjectDetection, RTDetrImageProcessor

        path = model_dir(self.model_name)
        from annotators.torch_device import pick_device  # torch only once a model loads

        self.device = pick_device(self.device or "auto")
        self.processor = RTDetrImageProcessor.from_pretrained(path)
        self.model = RTDetrForObjectDetection.from_pretrained(path).eval().to(self.device)
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        if "person" not in labels:
            raise ValueError(f"detector {self.model_name!r} has no 'person' class in its id2label")
        self.person_label = labels["person"]

    def detect(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Person (boxes (N, 4) xyxy pixels float32, scores (N,) float32) for each RGB frame."""
        import torch

        if self.model is None:
            raise RuntimeError("PersonDetector.load() must run before detect()")
        frames = check_frames(frames)
        size = frames.shape[1:3]
        found = []
        for start in range(0, len(frames), self.batch_size):
            chunk = list(frames[start:start + self.batch_size])
            inputs = self.processor(images=chunk, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self.model(**inputs)
            results = self.processor.post_process_object_detection(
                outputs, threshold=self.threshold, target_sizes=[size] * len(chunk))
            for r in results:
                person = r["labels"] == self.person_label
                found.append((r["boxes"][person].float().cpu().numpy(),
                              r["scores"][person].float().cpu().numpy()))
        return found

    def track(self, frames: np.ndarray) -> PersonTracks:
        """Detect and track the people of one clip."""
        tracker = IouTracker(self.iou_threshold, self.max_gap)
        return PersonTracks.from_frames(self.detect(frames), frames.shape[1], frames.shape[2],
                                        tracker, self.max_people)

    def provenance(self) -> dict[str, Any]:
        entry = load_registry()[self.model_name]
        return {"detector": entry.hub_id, "detector_revision": entry.revision,
                "detector_threshold": self.threshold, "tracker_iou": self.iou_threshold}
