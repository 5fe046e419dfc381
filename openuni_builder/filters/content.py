"""Filters on the decoded frames themselves (content phase, inside the decode task): clips that
are mostly black, that stand still, or that cut to another shot.

They run before any annotator, so a clip with nothing worth annotating costs one decode and no
GPU time. Black and frozen work on cheap per-frame statistics in OpenCV; scene cuts use a shot
detector (TransNetV2, a small CPU network, or PySceneDetect's content score).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from openuni_builder.clip import Clip
from openuni_builder.filters.base import Filter, FilterConfigError, Verdict
from openuni_builder.shots import content_scores, get_detector  # noqa: F401 (content_scores: re-exported)


def luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) float32 BT.601 luma of RGB frames."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)


def distinct_frames(clip: Clip) -> np.ndarray:
    """Indices of frames that show a new source frame (a clip resampled above its source fps
    repeats frames; those repeats are not "frozen" video)."""
    times = clip.source_info.get("frame_times") or list(range(len(clip.frames)))
    return np.array([0] + [i for i in range(1, len(times)) if times[i] != times[i - 1]])


class BlackFilter(Filter):
    """Drops clips with too many black frames (fades, black screens): a frame is black when its
    mean luma is at most `max_luma` (0..255); the clip is dropped when more than `max_fraction` of
    its frames are."""

    name, phase = "black", "content"
    defaults = {"max_luma": 12.0, "max_fraction": 0.2}

    def check(self, clip: Clip) -> Verdict:
        means = luma(clip.frames).mean(axis=(1, 2))
        fraction = float((means <= self.options["max_luma"]).mean())
        values = {"black_fraction": round(fraction, 4), "min_luma": round(float(means.min()), 3),
                  "mean_luma": round(float(means.mean()), 3)}
        if fraction > self.options["max_fraction"]:
            return Verdict(False, f"{fraction:.0%} of frames are black (mean luma <= {self.options['max_luma']:g}; "
                                  f"max {self.options['max_fraction']:.0%})", values)
        return Verdict(True, None, values)


class FrozenFilter(Filter):
    """Drops clips that stand still: consecutive distinct source frames whose mean absolute luma
    difference is below `max_diff` are frozen; the clip is dropped when more than `max_fraction`
    of its transitions are (a clip from a single source frame is entirely frozen)."""

    name, phase = "frozen", "content"
    defaults = {"max_diff": 0.5, "max_fraction": 0.5}

    def check(self, clip: Clip) -> Verdict:
        y = luma(clip.frames[distinct_frames(clip)])
        diffs = np.abs(np.diff(y, axis=0)).mean(axis=(1, 2)) if len(y) > 1 else np.zeros(0)
        fraction = float((diffs < self.options["max_diff"]).mean()) if len(diffs) else 1.0
        values = {"frozen_fraction": round(fraction, 4), "distinct_frames": int(len(y)),
                  "mean_diff": round(float(diffs.mean()), 4) if len(diffs) else 0.0}
        if fraction > self.options["max_fraction"]:
            return Verdict(False, f"{fraction:.0%} of frame transitions are frozen (luma diff < "
                                  f"{self.options['max_diff']:g}; max {self.options['max_fraction']:.0%})", values)
        return Verdict(True, None, values)


class SceneCutFilter(Filter):
    """Drops clips with a shot change inside: any consecutive frame pair whose boundary score
    reaches `threshold`, by the shot detector `detector` (openuni_builder/shots.py): "transnetv2"
    (learned, also catches dissolves and fades; per-frame transition probability, threshold 0.5)
    or "content" (PySceneDetect's content score, hard cuts only, threshold 27). Unset, the
    detector is transnetv2 where installed, and the threshold that detector's default; both are
    resolved here so the fingerprint says which one judged the clip."""

    name, phase = "scene_cut", "content"
    defaults = {"detector": None, "threshold": None}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        try:
            self.detector = get_detector(self.options["detector"], self.options["threshold"])
        except ValueError as exc:
            raise FilterConfigError(f"filters.{self.name}: {exc}") from exc
        self.options.update(detector=self.detector.name, threshold=self.detector.threshold)

    def check(self, clip: Clip) -> Verdict:
        scores = self.detector.pair_scores(clip.frames) if len(clip.frames) > 1 else np.zeros(0, np.float32)
        cuts = np.flatnonzero(scores >= self.detector.threshold)
        values = {"max_score": round(float(scores.max(initial=0.0)), 3), "cuts": int(len(cuts)),
                  "detector": self.detector.name}
        if len(cuts):
            return Verdict(False, f"scene cut between frames {cuts[0]} and {cuts[0] + 1} ({self.detector.name} "
                                  f"score {scores[cuts[0]]:.3g} >= {self.detector.threshold:g})", values)
        return Verdict(True, None, values)
