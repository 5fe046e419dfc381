"""BlazePose full (Bazarevsky et al., 2020) without mediapipe: its two TFLite models run through
ai-edge-litert, with MediaPipe's pre- and post-processing redone in numpy/OpenCV.

The weights are the `pose_detection.tflite` and `pose_landmark_full.tflite` files of the
mediapipe 0.10.14 wheel, registered as model `blazepose-full` (manifests/models.toml, kind
"wheel": pinned wheel, sha256 per file) and loaded from the local model cache. mediapipe itself
is not needed: it pulls jax and opencv-contrib, which collides with opencv-python.

The pipeline is MediaPipe's pose graph in video mode, for one person:
1. Detector (224x224 letterboxed, RGB in [-1, 1]): 2254 SSD anchors, boxes and 4 keypoints
   decoded against them, sigmoid scores >= `min_detection_score`, weighted NMS (IoU 0.3); the
   best detection's keypoints 0 (hip centre) and 1 (a point on the body-enclosing circle) give
   the region of interest: centred on the hips, side twice that radius, rotated so the body
   points up, enlarged 1.25x.
2. Landmark model (256x256 crop of that rotated square, RGB in [0, 1]): 39 landmarks (33 body +
   2 alignment points + 4 unused) with sigmoid visibility, and a pose-presence score. Landmarks
   are projected back through the rotated crop into frame pixels.
3. Tracking: while presence >= `min_presence`, the next frame's region comes from this frame's
   alignment landmarks 33 -> 34 (as MediaPipe does), so the detector runs only to (re)acquire.
Landmarks are refined on the landmark model's heatmap as MediaPipe does; MediaPipe's temporal
smoothing filters are not applied, so each frame's landmarks are that frame's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

MODEL = "blazepose-full"
DETECTOR_FILE, LANDMARK_FILE = "pose_detection.tflite", "pose_landmark_full.tflite"
DETECTOR_SIZE, LANDMARK_SIZE = 224, 256
NUM_LANDMARKS = 33
# BlazePose-33 landmark index of each COCO-17 keypoint (nose, eyes, ears, shoulders, elbows,
# wrists, hips, knees, ankles).
COCO17_OF_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


@dataclass(frozen=True)
class Roi:
    """A rotated square in frame pixels: centre, side and rotation (radians, clockwise on screen)."""

    cx: float
    cy: float
    size: float
    angle: float

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) points in crop coordinates [0, 1]^2 -> frame pixels."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        d = (uv - 0.5) * self.size
        return np.stack([self.cx + c * d[:, 0] - s * d[:, 1], self.cy + s * d[:, 0] + c * d[:, 1]], axis=1)

    def crop(self, frame: np.ndarray, size: int) -> np.ndarray:
        """The square resampled to size x size (outside the frame: black), as MediaPipe's
        ImageToTensor with a rotated rect does."""
        corners = self.to_frame(np.array([[0, 0], [1, 0], [0, 1]], np.float64)).astype(np.float32)
        target = np.array([[0, 0], [size, 0], [0, size]], np.float32)
        return cv2.warpAffine(frame, cv2.getAffineTransform(corners, target), (size, size),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def roi_from_points(center: np.ndarray, edge: np.ndarray, scale: float = 1.25) -> Roi:
    """MediaPipe's AlignmentPointsRectsCalculator (target angle 90 degrees) followed by
    RectTransformationCalculator (square_long, scale 1.25): a square centred on `center` whose
    half-side is |edge - center|, turned so that center -> edge points up."""
    dx, dy = float(edge[0] - center[0]), float(edge[1] - center[1])
    angle = math.pi / 2 - math.atan2(-dy, dx)
    angle = (angle + math.pi) % (2 * math.pi) - math.pi
    return Roi(float(center[0]), float(center[1]), 2 * math.hypot(dx, dy) * scale, angle)


@lru_cache(maxsize=1)
def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in [0, 1] of the detector's SSD head: MediaPipe's
    SsdAnchorsCalculator with the pose detector's options (5 layers, strides 8/16/32/32/32,
    2 anchors per cell per layer, fixed anchor size, so boxes are offsets from centres only)."""
    strides = (8, 16, 32, 32, 32)
    centres = []
    layer = 0
    while layer < len(strides):
        # Consecutive layers of one stride share a feature map: 2 anchors each per cell.
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        cells = math.ceil(DETECTOR_SIZE / strides[layer])
        per_cell = 2 * (last - layer)
        y, x = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([x.ravel(), y.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """`frame` scaled to fit size x size, centred on black: (image, scale, pad_x, pad_y) with the
    pads in pixels of the square."""
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py:py + nh, px:px + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                                             else cv2.INTER_LINEAR)
    return out, scale, float(px), float(py)


@dataclass(frozen=True)
class Detection:
    score: float
    box: np.ndarray        # (4,) xmin, ymin, xmax, ymax in frame pixels
    keypoints: np.ndarray  # (4, 2) frame pixels: hip centre, body circle, shoulder centre, upper-body circle


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, min_score: float,
                      iou: float = 0.3) -> tuple[float, np.ndarray] | None:
    """The best detection of the SSD head as (score, (12,) box + keypoints in the detector's
    [0, 1] square), or None: MediaPipe's TensorsToDetections (x/y/w/h order, scale 224, sigmoid,
    scores clipped to +-100) and weighted non-max suppression, which averages the boxes that
    overlap the best one by IoU > `iou`, weighted by score."""
    scores = 1 / (1 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= min_score)
    if not len(keep):
        return None
    anchors = ssd_anchors()[keep]
    raw = raw_boxes.reshape(-1, 12)[keep] / DETECTOR_SIZE
    cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keypoints = raw[:, 4:].reshape(-1, 4, 2) + anchors[:, None, :]
    best = int(np.argmax(scores[keep]))
    overlap = _iou(boxes[best], boxes) > iou
    weights = scores[keep][overlap]
    values = np.concatenate([boxes, keypoints.reshape(-1, 8)], axis=1)[overlap]
    return float(scores[keep][best]), (values * weights[:, None]).sum(0) / weights.sum()


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


class BlazePose:
    """Single-person BlazePose full over a clip (see module docstring). Not thread-safe: one
    instance per actor."""

    def __init__(self, detector_path: str | Path, landmark_path: str | Path, min_detection_score: float = 0.5,
                 min_presence: float = 0.5, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.min_detection_score, self.min_presence = min_detection_score, min_presence
        self.detector = Interpreter(model_path=str(detector_path), num_threads=num_threads)
        self.landmarker = Interpreter(model_path=str(landmark_path), num_threads=num_threads)
        for model in (self.detector, self.landmarker):
            model.allocate_tensors()
        self._det_in = self.detector.get_input_details()[0]["index"]
        self._det_out = _outputs_by_size(self.detector, {"boxes": (1, 2254, 12), "scores": (1, 2254, 1)})
        self._lm_in = self.landmarker.get_input_details()[0]["index"]
        self._lm_out = _outputs_by_size(self.landmarker, {"landmarks": (1, 195), "presence": (1, 1),
                                                                "heatmap": (1, 64, 64, 39)})

    def detect(self, frame: np.ndarray) -> Detection | None:
        """The best person detection in an RGB uint8 frame, or None."""
        square, scale, px, py = letterbox(frame, DETECTOR_SIZE)
        self.detector.set_tensor(self._det_in, (square[None].astype(np.float32) / 127.5 - 1.0))
        self.detector.invoke()
        found = decode_detections(self.detector.get_tensor(self._det_out["boxes"]),
                                  self.detector.get_tensor(self._det_out["scores"]), self.min_detection_score)
        if found is None:
            return None
        score, values = found
        xy = (values.reshape(-1, 2) * DETECTOR_SIZE - [px, py]) / scale  # undo the letterbox
        return Detection(score, xy[:2].reshape(4), xy[2:])

    def landmarks(self, frame: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """(39, 3) landmarks (x, y in frame pixels, visibility) in `roi`, and the presence score."""
        crop = roi.crop(frame, LANDMARK_SIZE)
        self.landmarker.set_tensor(self._lm_in, crop[None].astype(np.float32) / 255.0)
        self.landmarker.invoke()
        raw = self.landmarker.get_tensor(self._lm_out["landmarks"]).reshape(-1, 5)
        presence = float(self.landmarker.get_tensor(self._lm_out["presence"]).reshape(-1)[0])
        heatmap = self.landmarker.get_tensor(self._lm_out["heatmap"])[0]
        xy = roi.to_frame(refine_from_heatmap(raw[:, :2] / LANDMARK_SIZE, heatmap))
        visibility = 1 / (1 + np.exp(-raw[:, 3].astype(np.float64)))
        return np.concatenate([xy, visibility[:, None]], axis=1).astype(np.float32), presence

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, 33, 3) landmarks (x, y pixels, visibility; zeros where absent) and (T,) presence
        scores (0 where no person) of RGB uint8 (T, H, W, 3) frames, in video mode."""
        out = np.zeros((len(frames), NUM_LANDMARKS, 3), np.float32)
        presence = np.zeros(len(frames), np.float32)
        roi: Roi | None = None
        for t, frame in enumerate(frames):
            if roi is None:
                found = self.detect(frame)
                if found is None:
                    continue
                roi = roi_from_points(found.keypoints[0], found.keypoints[1])
            landmarks, score = self.landmarks(frame, roi)
            if score < self.min_presence:
                roi = None  # lost: the next frame runs the detector
                continue
            out[t], presence[t] = landmarks[:NUM_LANDMARKS], score
            roi = roi_from_points(landmarks[33, :2], landmarks[34, :2])
        return out, presence


def refine_from_heatmap(uv: np.ndarray, heatmap: np.ndarray, kernel: int = 7,
                        min_confidence: float = 0.5) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator (kernel 7, min confidence 0.5, as the
    pose graph sets it): each landmark moves to the sigmoid-weighted mean cell of its heatmap
    channel in a 7x7 window around it, when that window's peak reaches `min_confidence`.
    `uv`: (N, 2) crop coordinates in [0, 1]; `heatmap`: (h, w, >= N) logits. Like MediaPipe,
    the mean is of cell indices (not cell centres) over the heatmap size."""
    h, w = heatmap.shape[:2]
    out = uv.copy()
    half = (kernel - 1) // 2
    for i, (u, v) in enumerate(uv[: heatmap.shape[2]]):
        col, row = int(u * w), int(v * h)
        if not (0 <= col < w and 0 <= row < h):
            continue
        r0, r1, c0, c1 = max(0, row - half), min(h, row + half + 1), max(0, col - half), min(w, col + half + 1)
        confidence = 1 / (1 + np.exp(-heatmap[r0:r1, c0:c1, i].astype(np.float64)))
        total = confidence.sum()
        if confidence.max() >= min_confidence and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i] = ((cols * confidence).sum() / total / w, (rows * confidence).sum() / total / h)
    return out


def coco17(landmarks: np.ndarray) -> np.ndarray:
    """(..., 33, 3) BlazePose landmarks -> (..., 17, 3) COCO-17 keypoints."""
    return landmarks[..., list(COCO17_OF_BLAZEPOSE), :]


def _outputs_by_size(interpreter, wanted: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Output tensor index by role, told apart by shape (the names are just Identity_N)."""
    by_shape = {tuple(int(n) for n in d["shape"]): d["index"] for d in interpreter.get_output_details()}
    missing = {role: shape for role, shape in wanted.items() if shape not in by_shape}
    if missing:
        raise ValueError(f"unexpected BlazePose model outputs: none of shape {missing}; has {sorted(by_shape)}")
    return {role: by_shape[shape] for role, shape in wanted.items()}
