"""Body keypoints for every tracked person of a clip, in OpenPose-18 order.

Backend "vitpose" (default) is top-down: RT-DETR person boxes tracked over the clip
(`person_detect`), then ViTPose (transformers `VitPoseForPoseEstimation`, COCO-17) on every box of
the clip in batches, keypoints decoded by the processor's own `post_process_pose_estimation`.
Backend "blazepose" is BlazePose full (`annotators/blazepose.py`: MediaPipe's TFLite models from
the mediapipe 0.10.14 wheel, registered as model `blazepose-full`, run by ai-edge-litert without
mediapipe or torch); it is single-person.

Output `raw["keypoints"]` is float32 (T, P, 18, 3): (x, y, score) in pixels of the clip's frames,
score 0 = absent, indexed by track id (P = tracks, at least 1, so a clip with no person is an
all-zero (T, 1, 18, 3) array and `meta["no_person"]` is true). Scores are the heatmap maxima
(ViTPose) or landmark visibilities (BlazePose), kept unthresholded; only the derived neck needs a
confidence decision (`keypoint_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from importlib.util import find_spec
from typing import Any, ClassVar

import numpy as np

from annotators.base import Annotator, Resources, clip_frames
from annotators.person_detect import PersonDetector, PersonTracks
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.pixelplanes.skeleton import coco17_to_openpose18
from openuni_builder.models import load_registry, model_dir, model_file

_DEFAULT_MODEL = {"vitpose": "vitpose-base", "blazepose": "blazepose-full"}


@dataclass(frozen=True)
class SkeletonOptions:
    """`backend`: vitpose (top-down on tracked RT-DETR boxes) or blazepose (one person);
    `model`: the registered pose model (default per backend: _DEFAULT_MODEL);
    `keypoint_threshold`: the confidence the derived neck needs; `pose_batch_size`: person crops
    per ViTPose forward pass."""

    backend: str = "vitpose"
    model: str | None = None
    detector: str = "rtdetr-r50"
    detection_threshold: float = 0.5
    keypoint_threshold: float = 0.3
    pose_batch_size: int = 64
    max_people: int = 8
    device: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in _DEFAULT_MODEL:
            raise ValueError(f"unknown skeleton backend {self.backend!r}; known: {', '.join(_DEFAULT_MODEL)}")
        if self.pose_batch_size < 1:
            raise ValueError(f"pose_batch_size must be >= 1, got {self.pose_batch_size}")


class SkeletonAnnotator(Annotator):
    """OpenPose-18 keypoints of every tracked person (see module docstring)."""

    name: ClassVar[str] = "skeleton"
    Options: ClassVar[type] = SkeletonOptions
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.25, batch_size=4)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        self.backend, self.device = o.backend, o.device
        self.model_name = o.model or _DEFAULT_MODEL[o.backend]
        self.detector = (PersonDetector(o.detector, o.detection_threshold, max_people=o.max_people, device=o.device)
                         if o.backend == "vitpose" else None)
        self.model = self.processor = None
        self._blazepose = None

    def models(self) -> tuple[str, ...]:
        return (self.model_name, self.options.detector) if self.backend == "vitpose" else (self.model_name,)

    def unavailable(self) -> str | None:
        if self.backend == "blazepose" and not find_spec("ai_edge_litert"):
            return _LITERT_MISSING
        return super().unavailable()

    def load(self) -> None:
        if self.backend == "blazepose":
            if not find_spec("ai_edge_litert"):
                raise ImportError(_LITERT_MISSING)
            from annotators.blazepose import DETECTOR_FILE, LANDMARK_FILE, BlazePose

            self._blazepose = BlazePose(model_file(self.model_name, DETECTOR_FILE),
                                        model_file(self.model_name, LANDMARK_FILE))
            return
        from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

        path = model_dir(self.model_name)
        from annotators.torch_device import pick_device  # torch only once a model loads

        self.device = pick_device(self.device or "auto")
        self.processor = VitPoseImageProcessor.from_pretrained(path)
        self.model = VitPoseForPoseEstimation.from_pretrained(path).eval().to(self.device)
        if self.model.config.num_labels != 17:
            raise ValueError(f"{self.model_name!r} predicts {self.model.config.num_labels} keypoints, "
                             "expected the 17 COCO keypoints")
        self.detector.load()

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        run = self._blazepose_clip if self.backend == "blazepose" else self._vitpose
        outputs = []
        for clip in clips:
            coco, tracks = run(clip_frames(clip))
            keypoints = coco17_to_openpose18(coco, self.options.keypoint_threshold)
            if keypoints.shape[1] == 0:
                keypoints = np.zeros((len(clip.frames), 1, 18, 3), np.float32)
            outputs.append(ModalityOutput(raw={"keypoints": keypoints}, meta=tracks.meta()))
        return outputs

    def _vitpose(self, frames: np.ndarray) -> tuple[np.ndarray, PersonTracks]:
        """COCO-17 keypoints (T, P, 17, 3) for the tracked people of one clip.

        Frames are taken in groups of at most `pose_batch_size` boxes (one frame at least), so
        the crops of a long, crowded clip never sit in memory all at once.
        """
        tracks = self.detector.track(frames)
        coco = np.zeros((len(frames), tracks.num_tracks, 17, 3), np.float32)
        group: list[int] = []
        for t in [t for t in range(len(frames)) if tracks.present[t].any()]:
            if group and tracks.present[group + [t]].sum() > self.options.pose_batch_size:
                self._vitpose_frames(frames, tracks, group, coco)
                group = []
            group.append(t)
        if group:
            self._vitpose_frames(frames, tracks, group, coco)
        return coco, tracks

    def _vitpose_frames(self, frames: np.ndarray, tracks: PersonTracks, frame_ids: list[int],
                        coco: np.ndarray) -> None:
        """ViTPose on every tracked box of `frame_ids`, written into `coco[t, track]`."""
        import torch
        from transformers.models.vitpose.modeling_vitpose import VitPoseEstimatorOutput

        people = [np.flatnonzero(tracks.present[t]) for t in frame_ids]
        boxes = [[_xyxy_to_xywh(tracks.boxes[t, p]) for p in ps] for t, ps in zip(frame_ids, people)]
        inputs = self.processor(images=list(frames[frame_ids]), boxes=boxes, return_tensors="pt")
        with torch.inference_mode():
            heatmaps = self.model(pixel_values=inputs["pixel_values"].to(self.device)).heatmaps.float().cpu()
        poses = self.processor.post_process_pose_estimation(VitPoseEstimatorOutput(heatmaps=heatmaps), boxes=boxes)
        for t, ps, frame_poses in zip(frame_ids, people, poses):
            for p, pose in zip(ps, frame_poses):
                coco[t, p] = _keypoint_rows(pose["keypoints"].numpy(), pose["scores"].numpy())

    def _blazepose_clip(self, frames: np.ndarray) -> tuple[np.ndarray, PersonTracks]:
        """BlazePose full (video mode, one person): COCO-17 keypoints (T, 1, 17, 3)."""
        from annotators.blazepose import coco17

        T, H, W = frames.shape[:3]
        landmarks, presence = self._blazepose.track(frames)
        present = (presence > 0)[:, None]
        xy = np.clip(landmarks[..., :2], 0, [W, H])  # the landmark extent stands in for a person box
        boxes = np.concatenate([xy.min(1), xy.max(1)], axis=1)[:, None] * present[..., None]
        return coco17(landmarks)[:, None], PersonTracks(boxes.astype(np.float32), presence[:, None], present, H, W)

    def provenance(self) -> dict[str, Any]:
        entry = load_registry()[self.model_name]
        if self.backend == "blazepose":
            return {"backend": "blazepose-full", "model": entry.hub_id, "revision": entry.revision,
                    "runtime": f"ai-edge-litert {version('ai-edge-litert')}", "layout": "openpose18"}
        return {"backend": "vitpose", "model": entry.hub_id, "revision": entry.revision,
                "keypoint_threshold": self.options.keypoint_threshold, "layout": "openpose18",
                **self.detector.provenance()}


_LITERT_MISSING = ("skeleton backend 'blazepose' runs BlazePose's TFLite models with ai-edge-litert: "
                   "`pip install ai-edge-litert==2.3.0`, or use backend 'vitpose'")


def _xyxy_to_xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _keypoint_rows(xy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(17, 3) rows (x, y, score); a non-positive heatmap maximum means absent (all zeros)."""
    rows = np.concatenate([xy.reshape(-1, 2), scores.reshape(-1, 1)], axis=1).astype(np.float32)
    rows[rows[:, 2] <= 0] = 0.0
    return rows
