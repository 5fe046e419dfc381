"""Filters that judge a clip by what is known before decoding any frame: the source's own
scores (listing phase, on the driver) and the video's container metadata (probe phase).

They come first because they cost nothing next to a decode: a clip dropped here never reaches
a decode task.
"""

from __future__ import annotations

from typing import Any

from openuni_builder.clip import Clip
from openuni_builder.filters.base import Bounds, Filter, FilterConfigError, Verdict, _first_violation
from openuni_builder.video_io import probe


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
