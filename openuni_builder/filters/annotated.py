"""Filters on annotator outputs (annotated phase): motion from optical flow, people from the
skeleton/DensePose tracks.

They cannot run before the annotators they read, so `schedule` places each right after the last
of its `needs` in the build; a cheap CPU annotator placed early (flow) lets the motion filter drop
static clips before the GPU annotators see them.

The person filter is the one exception to "drop the clip": a clip without (enough) people keeps
its other modalities and only its skeleton/DensePose outputs are blanked.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openuni_builder.clip import Clip
from openuni_builder.filters.base import HUMAN_MODALITIES, Filter, Verdict, _first_violation


class MotionFilter(Filter):
    """Ranges on optical-flow magnitude (pixels per frame at the clip's size), from `motion_values`:
    `moving`, the fraction of pixels (over all frame pairs) moving at least `moving_px` (too static
    below its min), `mean` over all pixels, and `peak`, the `percentile`-th percentile magnitude
    (too chaotic above its max).

    The default "too static" test is on `moving`, not `mean`: a static camera on a few small
    walking people has a tiny mean (3 figures on 1.2 % of the frame: 0.035 px/frame) while a still
    scene with sensor noise moves no pixel by `moving_px` (docs/FILTERS.md has the measurements).
    """

    name, phase, needs = "motion", "annotated", ("flow",)
    defaults = {"mean": None, "peak": None, "moving": None, "percentile": 95.0, "moving_px": 1.0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.bounds = self._bounds("moving", "mean", "peak")

    def check(self, clip: Clip) -> Verdict:
        values = motion_values(clip.outputs["flow"].raw["flow"], self.options["percentile"], self.options["moving_px"])
        why = _first_violation(self.bounds, values)
        return Verdict(why is None, why, values)


def motion_values(flow: np.ndarray, percentile: float = 95.0, moving_px: float = 1.0) -> dict[str, float]:
    """Motion measures of a flow field (..., 2) in px/frame: `mean`, `peak` (the `percentile`-th
    percentile magnitude), `moving` (fraction of magnitudes >= `moving_px`), and the two options.
    `mean` keeps its meaning: the balancer's motion buckets read it."""
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    return {"mean": round(float(magnitude.mean()), 4),
            "peak": round(float(np.percentile(magnitude, percentile)), 4),
            "moving": round(float(np.count_nonzero(magnitude >= moving_px) / magnitude.size), 6),
            "percentile": float(percentile), "moving_px": float(moving_px)}


class PersonFilter(Filter):
    """Person coverage for the modalities that need people, from the skeleton/DensePose meta
    (the RT-DETR tracks): a clip is human when `person_count >= min_people`, people are in at
    least `min_frame_fraction` of its frames and their mean box covers `min_area` of the frame.

    A clip that is not human keeps its other modalities: its skeleton/DensePose outputs are
    blanked (zeros, so their videos are black) and marked `no_person`, so every sample keeps the
    same members. With `drop_clip: true` such clips are dropped instead (human-only datasets).
    """

    name, phase, needs = "person", "annotated", HUMAN_MODALITIES
    defaults = {"min_people": 1, "min_frame_fraction": 0.5, "min_area": 0.0, "drop_clip": False}

    def check(self, clip: Clip) -> Verdict:
        source = next((m for m in self.needs if m in clip.outputs), None)
        if source is None:
            raise ValueError(f"person filter: clip {clip.key} has none of {self.needs} outputs")
        meta = clip.outputs[source].meta
        values = {"from": source, "person_count": int(meta.get("person_count", 0)),
                  "person_frame_fraction": float(meta.get("person_frame_fraction", 0.0)),
                  "mean_box_area_fraction": float(meta.get("mean_box_area_fraction", 0.0)),
                  "max_people_per_frame": int(meta.get("max_people_per_frame", 0))}
        opts = self.options
        why = None
        if values["person_count"] < opts["min_people"]:
            why = f"{values['person_count']} people < min {opts['min_people']}"
        elif values["person_frame_fraction"] < opts["min_frame_fraction"]:
            why = f"people in {values['person_frame_fraction']:.0%} of frames < min {opts['min_frame_fraction']:.0%}"
        elif values["mean_box_area_fraction"] < opts["min_area"]:
            why = f"person boxes cover {values['mean_box_area_fraction']:.2%} < min {opts['min_area']:.2%}"
        values.update(human=why is None, no_person=why is not None, reason=why)
        return Verdict(why is None, why, values)

    def apply(self, clip: Clip) -> None:
        verdict = self.check(clip)
        clip.filters[self.name] = verdict.values
        if verdict.keep:
            return
        if self.options["drop_clip"]:
            clip.drop(self.name, verdict.reason, verdict.values)
            return
        for name in HUMAN_MODALITIES:
            if name in clip.outputs:
                output = clip.outputs[name]
                output.raw = {k: np.zeros_like(v) for k, v in output.raw.items()}
                output.meta.update(no_person=True, blanked=f"person filter: {verdict.reason}")
