"""Entity segmentation: panoptic keyframe masks propagated through the clip with SAM2.

Every panoptic segment of a keyframe (things and stuff alike) is an entity. Frame 0 seeds the
tracks; SAM2's video model carries them through the clip with its memory. Every `reseed_every`
frames the panoptic segmenter runs again and a segment becomes a new entity when the tracks
already cover less than `new_entity_max_coverage` of its area (so a person walking in gets an
id, while a tracked car re-detected at the keyframe does not get a second one). A new entity
is prompted at its keyframe and tracked from there on; it is 0 (absent) in earlier frames.

Where masks overlap, the entity with the highest SAM2 mask logit takes the pixel; a pixel no
entity claims (every logit <= 0) is background 0. Ids are assigned once, in order of
appearance, and never renumbered: raw `{"ids": uint16 (T, H, W)}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from annotators.base import Annotator, Resources
from annotators.torch_device import pick_device, pick_dtype
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, model_dir, missing

MAX_ID = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class Segment:
    """One keyframe segment: a boolean (H, W) mask and its class label when the segmenter has one."""

    mask: np.ndarray
    label: str | None = None


class PanopticSegmenter:
    """Mask2Former panoptic segmentation of a batch of frames into per-frame `Segment` lists."""

    def __init__(self, path: Path, device: torch.device, dtype: torch.dtype, threshold: float = 0.8,
                 mask_threshold: float = 0.5, overlap_mask_area_threshold: float = 0.8) -> None:
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

        self.processor = Mask2FormerImageProcessor.from_pretrained(path)
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(path, dtype=dtype).to(device).eval()
        self.device, self.dtype = device, dtype
        self.threshold, self.mask_threshold = threshold, mask_threshold
        self.overlap_mask_area_threshold = overlap_mask_area_threshold

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> list[list[Segment]]:
        height, width = frames.shape[1:3]
        inputs = self.processor(images=list(frames), return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        outputs = self.model(pixel_values=pixel_values, pixel_mask=inputs["pixel_mask"].to(self.device))
        # The processor pads frames to a multiple of 32 and post-processing ignores the padding,
        # so segment in padded-input coordinates, crop the valid area, then resize to the frame.
        padded = tuple(pixel_values.shape[-2:])
        results = self.processor.post_process_panoptic_segmentation(
            outputs, threshold=self.threshold, mask_threshold=self.mask_threshold,
            overlap_mask_area_threshold=self.overlap_mask_area_threshold, label_ids_to_fuse=set(),
            target_sizes=[padded] * len(frames))
        id2label = self.model.config.id2label
        per_frame = []
        for result, valid in zip(results, inputs["pixel_mask"]):
            rows, cols = int(valid.any(1).sum()), int(valid.any(0).sum())
            seg = result["segmentation"].cpu().numpy().astype(np.int32)[:rows, :cols]
            seg = cv2.resize(seg, (width, height), interpolation=cv2.INTER_NEAREST)
            per_frame.append([Segment(seg == info["id"], id2label.get(info["label_id"]))
                              for info in result["segments_info"]])
        return per_frame


def select_segments(segments: list[Segment], min_area: float, max_count: int) -> list[Segment]:
    """Drop segments smaller than `min_area` (fraction of the frame), keep the `max_count` largest.

    Specks are not worth a SAM2 track, and every track costs a decoder pass per frame, so a
    keyframe contributes at most `max_count` segments (the option `max_segments`).
    """
    kept = [s for s in segments if s.mask.mean() >= min_area]
    return sorted(kept, key=lambda s: -int(s.mask.sum()))[:max_count]


def propagate_entities(model: Any, processor: Any, frames: np.ndarray,
                       keyframe_segments: dict[int, list[Segment]], *,
                       first_frame_ids: np.ndarray | None = None,
                       new_entity_max_coverage: float = 0.5,
                       device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                       ) -> tuple[np.ndarray, dict[int, str | None]]:
    """Track entities through `frames` (T, H, W, 3) uint8 with a `Sam2VideoModel`.

    `keyframe_segments` maps a frame index to that frame's segments. `first_frame_ids`, an
    integer (H, W) id map, gives frame 0's entities directly (its nonzero ids are kept as they
    are, and later new entities number on from its maximum) instead of `keyframe_segments[0]`.
    A keyframe segment becomes a new entity when the tracks cover less than
    `new_entity_max_coverage` of it. Returns ids uint16 (T, H, W) and {id: label or None}.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    num_frames, height, width = frames.shape[:3]
    if any(not 0 <= k < num_frames for k in keyframe_segments):
        raise ValueError(f"keyframes {sorted(keyframe_segments)} outside the clip's {num_frames} frames")
    ids = np.zeros((num_frames, height, width), np.uint16)
    labels: dict[int, str | None] = {}
    seeds = dict(keyframe_segments)
    if first_frame_ids is not None:
        first = _check_id_map(first_frame_ids, (height, width))
        seeds[0] = [Segment(first == i) for i in np.unique(first) if i]
        fixed_ids = [int(i) for i in np.unique(first) if i]
    else:
        fixed_ids = []
    next_id = max(fixed_ids, default=0) + 1

    session = processor.init_video_session(video=frames, inference_device=device, dtype=dtype)
    keyframes = sorted(seeds)
    for j, key in enumerate(keyframes):
        if key == 0 and fixed_ids:
            new, new_ids = seeds[0], fixed_ids
        else:
            tracked = ids[key] > 0
            new = [s for s in seeds[key] if _coverage(s.mask, tracked) < new_entity_max_coverage]
            if next_id + len(new) - 1 > MAX_ID:
                raise ValueError(f"more than {MAX_ID} entities in one clip")
            new_ids = list(range(next_id, next_id + len(new)))
            next_id += len(new)
        for entity_id, segment in zip(new_ids, new):
            labels[entity_id] = segment.label
        if new:
            processor.add_inputs_to_inference_session(
                session, frame_idx=key, obj_ids=new_ids, input_masks=[s.mask for s in new])
        # Track up to and including the next keyframe, whose tracked masks decide what is new
        # there; a keyframe that adds entities is recomputed with them as its prompts.
        start = key if new else key + 1
        end = keyframes[j + 1] if j + 1 < len(keyframes) else num_frames - 1
        if session.get_obj_num() == 0 or start > end:
            continue
        with torch.inference_mode():
            for out in model.propagate_in_video_iterator(session, start_frame_idx=start,
                                                         max_frame_num_to_track=end - start):
                ids[out.frame_idx] = _compose(processor, out, (height, width))
    return ids, labels


def _check_id_map(id_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    id_map = np.asarray(id_map)
    if id_map.shape != shape or not np.issubdtype(id_map.dtype, np.integer):
        raise ValueError(f"first_frame_ids must be an integer {shape} id map, got {id_map.dtype} {id_map.shape}")
    if id_map.min() < 0 or id_map.max() > MAX_ID:
        raise ValueError(f"first_frame_ids must lie in 0..{MAX_ID}")
    return id_map


def _coverage(mask: np.ndarray, tracked: np.ndarray) -> float:
    """Fraction of `mask` that existing tracks already claim."""
    area = mask.sum()
    return float((mask & tracked).sum() / area) if area else 1.0


def _compose(processor: Any, out: Any, size: tuple[int, int]) -> np.ndarray:
    """One frame's id map: upsample every object's mask logits, the highest positive logit wins."""
    logits = processor.post_process_masks([out.pred_masks], original_sizes=[list(size)], binarize=False)[0][:, 0]
    best, index = logits.float().max(0)
    obj_ids = torch.as_tensor(out.object_ids, device=index.device)
    return torch.where(best > 0, obj_ids[index], 0).cpu().numpy().astype(np.uint16)


def entity_meta(ids: np.ndarray, labels: dict[int, str | None]) -> dict[str, Any]:
    """Per-clip facts: entity count, and each entity's label, mean area fraction, first frame."""
    counts = np.bincount(ids.ravel(), minlength=MAX_ID + 1)
    present = [int(i) for i in np.flatnonzero(counts) if i]
    entities = [{"id": i, "label": labels.get(i), "area": round(float(counts[i]) / ids.size, 6),
                 "first_frame": int(np.argmax((ids == i).any(axis=(1, 2))))} for i in present]
    return {"num_entities": len(entities), "entities": entities}


class EntitySegAnnotator(Annotator):
    """Stable entity ids per pixel: Mask2Former panoptic keyframes + SAM2 video propagation."""

    name: ClassVar[str] = "seg"
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.5, batch_size=1, concurrency=1)

    def __init__(self, segmenter: str = "mask2former-swin-t-coco-panoptic", tracker: str = "sam2.1-hiera-tiny",
                 reseed_every: int = 16, new_entity_max_coverage: float = 0.5, min_area: float = 0.001,
                 max_segments: int = 64, threshold: float = 0.8, mask_threshold: float = 0.5,
                 overlap_mask_area_threshold: float = 0.8, device: str = "auto", dtype: str = "float32",
                 **options: Any) -> None:
        super().__init__(segmenter=segmenter, tracker=tracker, reseed_every=reseed_every,
                         new_entity_max_coverage=new_entity_max_coverage, min_area=min_area,
                         max_segments=max_segments, threshold=threshold, mask_threshold=mask_threshold,
                         overlap_mask_area_threshold=overlap_mask_area_threshold, device=device, dtype=dtype,
                         **options)
        if reseed_every < 1:
            raise ValueError(f"reseed_every must be >= 1, got {reseed_every}")
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {max_segments}")
        self.segmenter_name, self.tracker_name = segmenter, tracker
        self.reseed_every, self.new_entity_max_coverage = reseed_every, new_entity_max_coverage
        self.min_area, self.max_segments = min_area, max_segments
        self._segmenter: PanopticSegmenter | None = None
        self._tracker = self._tracker_processor = None

    def unavailable(self) -> str | None:
        return missing(self.segmenter_name, self.tracker_name)

    def load(self) -> None:
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        self.device = pick_device(self.options["device"])
        self.dtype = pick_dtype(self.options["dtype"], self.device)
        self._segmenter = PanopticSegmenter(
            model_dir(self.segmenter_name), self.device, self.dtype, threshold=self.options["threshold"],
            mask_threshold=self.options["mask_threshold"],
            overlap_mask_area_threshold=self.options["overlap_mask_area_threshold"])
        path = model_dir(self.tracker_name)
        self._tracker_processor = Sam2VideoProcessor.from_pretrained(path)
        self._tracker = Sam2VideoModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        return [self._annotate_one(clip.frames) for clip in clips]

    def _annotate_one(self, frames: np.ndarray) -> ModalityOutput:
        keyframes = list(range(0, len(frames), self.reseed_every))
        segments = self._segmenter(frames[keyframes])
        seeds = {k: select_segments(s, self.min_area, self.max_segments) for k, s in zip(keyframes, segments)}
        ids, labels = propagate_entities(
            self._tracker, self._tracker_processor, frames, seeds,
            new_entity_max_coverage=self.new_entity_max_coverage, device=self.device, dtype=self.dtype)
        return ModalityOutput(raw={"ids": ids}, meta=entity_meta(ids, labels))

    def provenance(self) -> dict[str, Any]:
        registry = load_registry()
        models = {role: {"name": n, "hub_id": registry[n].hub_id, "revision": registry[n].revision}
                  for role, n in (("segmenter", self.segmenter_name), ("tracker", self.tracker_name))}
        settings = {k: self.options[k] for k in ("reseed_every", "new_entity_max_coverage", "min_area",
                                                 "max_segments", "threshold", "mask_threshold",
                                                 "overlap_mask_area_threshold")}
        return {**models, **settings}
