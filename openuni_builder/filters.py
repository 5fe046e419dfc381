"""Filters: small checks that decide whether a clip is worth keeping, each recording why.

Every filter has a `name` (its key in the pipeline YAML's `filters:` block), a `phase` saying
when it can run, and `check(clip) -> Verdict(keep, reason, values)`. Phases, cheapest first, so
no decode or GPU time is spent on a clip an earlier phase would drop:

- "listing":   the ClipRequest only (source scores, Panda's `desirable_filtering`); on the driver.
- "probe":     container metadata of the source video (`video_io.probe`), in the decode task
               before any frame is decoded.
- "content":   the decoded frames (black, frozen, scene cut, perceptual hash), in the decode task.
- "annotated": annotator outputs (motion from flow, person coverage from skeleton/DensePose), as
               soon as the annotators a filter needs have run (see `schedule`).

A drop is not a failure: `Clip.drop` records filter, reason and values, later stages skip the
clip and the driver writes it to `ledger/filtered.jsonl`. The values of every filter a kept clip
passed go to `Clip.filters` and from there to KEY.json and index.parquet (balancing and the card
read them). The person filter is the one exception to "drop the clip": a clip without (enough)
people keeps its other modalities and only its skeleton/DensePose outputs are blanked.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import cv2
import numpy as np

from openuni_builder.clip import Clip
from openuni_builder.video_io import probe

PHASES = ("listing", "probe", "content", "annotated")
HUMAN_MODALITIES = ("skeleton", "densepose")


class FilterConfigError(ValueError):
    """A `filters:` block that cannot be used; the message names the filter and key."""


class Verdict(NamedTuple):
    keep: bool
    reason: str | None
    values: dict[str, Any]


@dataclass(frozen=True)
class Bounds:
    """An inclusive [min, max] range; either side may be open."""

    min: float | None = None
    max: float | None = None

    @classmethod
    def parse(cls, where: str, block: Any) -> "Bounds":
        if block is None:
            return cls()
        if not isinstance(block, dict) or set(block) - {"min", "max"}:
            raise FilterConfigError(f"{where}: expected {{min: X, max: Y}} (either optional), got {block!r}")
        try:
            low, high = (None if block.get(k) is None else float(block[k]) for k in ("min", "max"))
        except (TypeError, ValueError) as exc:
            raise FilterConfigError(f"{where}: min/max must be numbers, got {block!r}") from exc
        if low is not None and high is not None and low > high:
            raise FilterConfigError(f"{where}: min {low:g} > max {high:g}")
        return cls(low, high)

    def violation(self, name: str, value: float) -> str | None:
        """Why `value` is out of range, or None when it is inside."""
        if self.min is not None and value < self.min:
            return f"{name} {value:.4g} < min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{name} {value:.4g} > max {self.max:g}"
        return None


class Filter:
    """Base class: parses its options (unknown keys are errors) and applies its verdict."""

    name: ClassVar[str]
    phase: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()  # annotators whose outputs it reads (any one is enough)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise FilterConfigError(f"filters.{self.name}: unknown keys {sorted(unknown)}; "
                                    f"allowed: {sorted(self.defaults)}")
        self.options = {**self.defaults, **options}

    @property
    def fingerprint(self) -> str:
        """Identifies the filter's settings, so a rerun knows whether an old drop still holds."""
        text = json.dumps({"name": self.name, "options": self.options}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def check(self, clip: Clip) -> Verdict:
        raise NotImplementedError

    def apply(self, clip: Clip) -> None:
        """Run the check; record the values; drop the clip when it fails."""
        verdict = self.check(clip)
        clip.filters[self.name] = verdict.values
        if not verdict.keep:
            clip.drop(self.name, verdict.reason or self.name, verdict.values)

    def _bounds(self, *names: str) -> dict[str, Bounds]:
        return {n: Bounds.parse(f"filters.{self.name}.{n}", self.options[n]) for n in names}


def _first_violation(bounds: dict[str, Bounds], values: dict[str, Any]) -> str | None:
    for name, bound in bounds.items():
        if values.get(name) is not None and (why := bound.violation(name, values[name])):
            return why
    return None


class ScoreFilter(Filter):
    """Thresholds on source columns: numeric ranges on `request.scores` (Koala's clarity,
    aesthetic, motion and VTSS scores, Panda's matching score) or accepted values of a column in
    `request.extra` (Panda's `desirable_filtering`).

        scores:
          clarity_score: {min: 0.5}
          desirable_filtering: {in: [desirable]}
          matching_score: {min: 0.3, missing: keep}   # a clip without the column is kept

    A clip whose source lacks a configured column is dropped unless the column says `missing: keep`.
    """

    name, phase = "scores", "listing"

    def __init__(self, **columns: Any) -> None:
        self.options = columns
        self.rules: dict[str, tuple[Bounds, list | None, bool]] = {}
        for column, rule in columns.items():
            rule = dict(rule or {})
            accepted = rule.pop("in", None)
            missing = rule.pop("missing", "drop")
            if missing not in ("drop", "keep"):
                raise FilterConfigError(f"filters.scores.{column}.missing must be drop or keep, got {missing!r}")
            if accepted is not None and not isinstance(accepted, list):
                accepted = [accepted]
            self.rules[column] = (Bounds.parse(f"filters.scores.{column}", rule), accepted, missing == "keep")

    def check(self, clip: Clip) -> Verdict:
        req = clip.request
        values = {c: req.scores.get(c, req.extra.get(c)) for c in self.rules}
        for column, (bounds, accepted, keep_missing) in self.rules.items():
            value = values[column]
            if value is None:
                if keep_missing:
                    continue
                return Verdict(False, f"{column} missing from the source", values)
            if accepted is not None and value not in accepted:
                return Verdict(False, f"{column} {value!r} not in {accepted}", values)
            if bounds != Bounds():
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    return Verdict(False, f"{column} {value!r} is not a number", values)
                if why := bounds.violation(column, float(value)):
                    return Verdict(False, why, values)
        return Verdict(True, None, values)


class MetadataFilter(Filter):
    """Ranges on the source video's container metadata, read without decoding: segment duration
    (seconds between the request's start and end, or the whole video), source fps, width,
    height, short side and aspect ratio (width / height)."""

    name, phase = "metadata", "probe"
    defaults = {k: None for k in ("duration", "fps", "width", "height", "short_side", "aspect")}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.bounds = self._bounds(*self.defaults)

    def check(self, clip: Clip) -> Verdict:
        req, info = clip.request, probe(clip.request.path)
        end = req.end if req.end is not None else info["duration"]
        values = {"duration": round(float(end - (req.start or 0.0)), 4), "fps": round(info["fps"], 4),
                  "width": int(info["width"]), "height": int(info["height"]),
                  "short_side": int(min(info["width"], info["height"])),
                  "aspect": round(info["width"] / info["height"], 4) if info["height"] else 0.0}
        why = _first_violation(self.bounds, values)
        return Verdict(why is None, why, values)


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


def frame_phash(frame: np.ndarray) -> bytes:
    """64-bit DCT perceptual hash of one RGB frame: grey 32x32, the 8x8 lowest DCT frequencies,
    one bit per coefficient above their median (the classic pHash)."""
    grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(grey.astype(np.float32))[:8, :8]
    return np.packbits(low > np.median(low)).tobytes()


def clip_phash(frames: np.ndarray, n: int) -> bytes:
    """Concatenated frame hashes of `n` evenly spaced frames (first and last included)."""
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return b"".join(frame_phash(frames[i]) for i in picks)


def phash_distance(a: bytes, b: bytes) -> int:
    """Largest Hamming distance between corresponding frame hashes of two clip hashes."""
    x = np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)).reshape(-1, 8)
    return int(np.unpackbits(x, axis=1).sum(axis=1).max())


class NearDuplicateFilter(Filter):
    """Measures a perceptual hash of `frames` sampled frames; the keep/drop decision needs every
    clip, so the driver makes it (`HashIndex`, in `screening`): two clips are near-duplicates when
    every pair of corresponding frame hashes differs in at most `max_distance` of 64 bits."""

    name, phase = "near_duplicate", "content"
    defaults = {"frames": 4, "max_distance": 6}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not 1 <= int(self.options["frames"]) <= 16:
            raise FilterConfigError(f"filters.near_duplicate.frames must be 1..16, got {self.options['frames']}")
        if not 0 <= int(self.options["max_distance"]) <= 7:
            # 8 bands of 8 bits: a pair within 7 bits always shares one band exactly (HashIndex).
            raise FilterConfigError("filters.near_duplicate.max_distance must be 0..7 bits of 64, "
                                    f"got {self.options['max_distance']}")

    def check(self, clip: Clip) -> Verdict:
        return Verdict(True, None, {"phash": clip_phash(clip.frames, int(self.options["frames"])).hex()})


class HashIndex:
    """Kept clip hashes, searchable for near-duplicates without comparing against every clip.

    Multi-index hashing: the first frame hash is split into its 8 bytes; two hashes within 7 bits
    share at least one byte at the same position (pigeonhole), so only clips sharing a band are
    compared in full.
    """

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self.hashes: dict[str, bytes] = {}
        self.bands: dict[tuple[int, int], list[str]] = defaultdict(list)

    def add(self, key: str, phash: bytes) -> None:
        self.hashes[key] = phash
        for band in range(8):
            self.bands[band, phash[band]].append(key)

    def nearest(self, phash: bytes) -> tuple[str, int] | None:
        """The closest kept clip within `max_distance` (ties: smallest key), or None."""
        candidates = {k for band in range(8) for k in self.bands.get((band, phash[band]), ())}
        close = sorted((phash_distance(phash, self.hashes[k]), k) for k in candidates
                       if len(self.hashes[k]) == len(phash))
        if close and close[0][0] <= self.max_distance:
            return close[0][1], close[0][0]
        return None


class MotionFilter(Filter):
    """Ranges on optical-flow magnitude (pixels per frame at the clip's size): `mean` over all
    pixels and frame pairs (too static below its min), and `peak`, the `percentile`-th percentile
    magnitude (too chaotic above its max)."""

    name, phase, needs = "motion", "annotated", ("flow",)
    defaults = {"mean": None, "peak": None, "percentile": 95.0}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.bounds = self._bounds("mean", "peak")

    def check(self, clip: Clip) -> Verdict:
        flow = clip.outputs["flow"].raw["flow"]
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        values = {"mean": round(float(magnitude.mean()), 4),
                  "peak": round(float(np.percentile(magnitude, self.options["percentile"])), 4),
                  "percentile": float(self.options["percentile"])}
        why = _first_violation(self.bounds, values)
        return Verdict(why is None, why, values)


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


# Run order inside a phase (cheap checks first); also the registry of names for the config.
FILTERS: dict[str, type[Filter]] = {cls.name: cls for cls in (
    ScoreFilter, MetadataFilter, BlackFilter, FrozenFilter, SceneCutFilter, NearDuplicateFilter,
    MotionFilter, PersonFilter)}


def parse_filters(block: dict[str, Any] | None) -> list[Filter]:
    """Filter objects for a `filters:` config block, in run order. `name: false` disables one."""
    block = dict(block or {})
    unknown = set(block) - set(FILTERS)
    if unknown:
        raise FilterConfigError(f"filters: unknown {sorted(unknown)}; known: {', '.join(FILTERS)}")
    filters = []
    for name, cls in FILTERS.items():
        if name in block and block[name] is not False:
            options = block[name] or {}
            if not isinstance(options, dict):
                raise FilterConfigError(f"filters.{name}: expected a mapping of options, got {options!r}")
            filters.append(cls(**options))
    return filters


def in_phase(filters: list[Filter], phase: str) -> tuple[Filter, ...]:
    if phase not in PHASES:
        raise ValueError(f"unknown filter phase {phase!r}; phases: {PHASES}")
    return tuple(f for f in filters if f.phase == phase)


def run_filters(clip: Clip, filters: tuple[Filter, ...]) -> Clip:
    """Apply filters in order until one drops the clip (the first reason is the one recorded)."""
    for f in filters:
        if not clip.ok:
            break
        f.apply(clip)
    return clip


def schedule(filters: list[Filter], annotators: list[str]) -> tuple[dict[int, tuple[Filter, ...]], list[str]]:
    """When each annotated-phase filter can run: {index of the annotator after which it runs:
    filters}, plus the names of filters none of whose annotators is in the build (inactive).

    A filter runs right after the last of its `needs` that the build runs, so a motion filter
    placed after a CPU flow annotator drops static clips before the GPU annotators see them.
    """
    after: dict[int, list[Filter]] = defaultdict(list)
    inactive = []
    for f in in_phase(filters, "annotated"):
        present = [i for i, name in enumerate(annotators) if name in f.needs]
        if present:
            after[max(present)].append(f)
        else:
            inactive.append(f.name)
    return {i: tuple(fs) for i, fs in after.items()}, inactive
