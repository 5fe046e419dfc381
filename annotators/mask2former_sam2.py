"""The torch side of entity segmentation: Mask2Former keyframe segments and their SAM2 propagation.

In its own module, imported by `EntitySegAnnotator.load()`, so the driver, which builds the
annotator only to check its models, never imports torch and transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from annotators.entities import MAX_ID, Segment


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
