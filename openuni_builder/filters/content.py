"""Filters on the decoded frames themselves (content phase, inside the decode task): clips that
are mostly black, that stand still, or that cut to another shot.

They run before any annotator, so a clip with nothing worth annotating costs one decode and no
GPU time. All three work on cheap per-frame statistics in OpenCV, no model.
"""

from __future__ import annotations

import cv2
import numpy as np

from openuni_builder.clip import Clip
from openuni_builder.filters.base import Filter, Verdict


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


def content_scores(frames: np.ndarray) -> np.ndarray:
    """Per consecutive frame pair, the mean absolute difference of hue, saturation and value
    (0..255 scale, averaged over the three): PySceneDetect's ContentDetector score with its
    default weights, so its documented threshold (27) carries over."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames]).astype(np.float32)
    return np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2)).mean(axis=1)


class SceneCutFilter(Filter):
    """Drops clips with a shot change inside: any consecutive frame pair whose content score
    (see `content_scores`) reaches `threshold`."""

    name, phase = "scene_cut", "content"
    defaults = {"threshold": 27.0}

    def check(self, clip: Clip) -> Verdict:
        scores = content_scores(clip.frames)
        cuts = np.flatnonzero(scores >= self.options["threshold"])
        values = {"max_score": round(float(scores.max(initial=0.0)), 3), "cuts": int(len(cuts))}
        if len(cuts):
            return Verdict(False, f"scene cut between frames {cuts[0]} and {cuts[0] + 1} (content score "
                                  f"{scores[cuts[0]]:.1f} >= {self.options['threshold']:g})", values)
        return Verdict(True, None, values)
