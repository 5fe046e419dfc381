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

This module holds the options; the segments, their selection and the per-clip facts are in
`annotators.entities` (shared with the models' module, which must not import this one); the models
(`annotators.mask2former_sam2`) are imported by `load()` and `device`/`dtype` stay option strings
until then, because the driver builds every annotator only to check its models and resources,
and that must not import torch and transformers (seconds and hundreds of MB on every build).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from annotators.base import Annotator, Resources
from annotators.entities import entity_meta, select_segments
from annotators.torch_device import pick_device, pick_dtype
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, model_dir

if TYPE_CHECKING:
    from annotators.mask2former_sam2 import PanopticSegmenter

@dataclass(frozen=True)
class EntitySegOptions:
    """`segmenter`: a registered panoptic model run on keyframes every `reseed_every` frames;
    `tracker`: the registered SAM2 video model that propagates its entities; `threshold`,
    `mask_threshold`, `overlap_mask_area_threshold`: the segmenter's post-processing."""

    segmenter: str = "mask2former-swin-t-coco-panoptic"
    tracker: str = "sam2.1-hiera-tiny"
    reseed_every: int = 16
    new_entity_max_coverage: float = 0.5
    min_area: float = 0.001
    max_segments: int = 64
    threshold: float = 0.8
    mask_threshold: float = 0.5
    overlap_mask_area_threshold: float = 0.8
    device: str = "auto"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.reseed_every < 1:
            raise ValueError(f"reseed_every must be >= 1, got {self.reseed_every}")
        if self.max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {self.max_segments}")


class EntitySegAnnotator(Annotator):
    """Stable entity ids per pixel: Mask2Former panoptic keyframes + SAM2 video propagation."""

    name: ClassVar[str] = "seg"
    Options: ClassVar[type] = EntitySegOptions
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.5, batch_size=1, concurrency=1)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._segmenter: PanopticSegmenter | None = None
        self._tracker = self._tracker_processor = None

    def models(self) -> tuple[str, ...]:
        return (self.options.segmenter, self.options.tracker)

    def load(self) -> None:
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        from annotators.mask2former_sam2 import PanopticSegmenter

        o = self.options
        self.device = pick_device(o.device)
        self.dtype = pick_dtype(o.dtype, self.device)
        self._segmenter = PanopticSegmenter(
            model_dir(o.segmenter), self.device, self.dtype, threshold=o.threshold,
            mask_threshold=o.mask_threshold,
            overlap_mask_area_threshold=o.overlap_mask_area_threshold)
        path = model_dir(o.tracker)
        self._tracker_processor = Sam2VideoProcessor.from_pretrained(path)
        self._tracker = Sam2VideoModel.from_pretrained(path, dtype=self.dtype).to(self.device).eval()

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        return [self._annotate_one(clip.frames) for clip in clips]

    def _annotate_one(self, frames: np.ndarray) -> ModalityOutput:
        from annotators.mask2former_sam2 import propagate_entities  # imported by load() already

        keyframes = list(range(0, len(frames), self.options.reseed_every))
        segments = self._segmenter(frames[keyframes])
        seeds = {k: select_segments(s, self.options.min_area, self.options.max_segments) for k, s in zip(keyframes, segments)}
        ids, labels = propagate_entities(
            self._tracker, self._tracker_processor, frames, seeds,
            new_entity_max_coverage=self.options.new_entity_max_coverage, device=self.device, dtype=self.dtype)
        return ModalityOutput(raw={"ids": ids}, meta=entity_meta(ids, labels))

    def provenance(self) -> dict[str, Any]:
        registry = load_registry()
        models = {role: {"name": n, "hub_id": registry[n].hub_id, "revision": registry[n].revision}
                  for role, n in (("segmenter", self.options.segmenter), ("tracker", self.options.tracker))}
        settings = {k: getattr(self.options, k) for k in ("reseed_every", "new_entity_max_coverage", "min_area",
                                                 "max_segments", "threshold", "mask_threshold",
                                                 "overlap_mask_area_threshold")}
        return {**models, **settings}
