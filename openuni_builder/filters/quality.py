"""The annotation quality filter (annotated phase): ranges on the scores of
`openuni_builder.quality`, which judge each annotation against the clip's frames.

It runs once every annotator it can score has run (its `needs` are all of them, and `schedule`
places a filter after the last of its needs in the build), measures every score the clip's
modalities allow, records them all as its values and drops the clip on the first configured
score out of range.
"""

from __future__ import annotations

from typing import Any

from openuni_builder.clip import Clip
from openuni_builder.filters.base import Bounds, Filter, FilterConfigError, Verdict
from openuni_builder.quality import SCORES, Scores, quality_scores


def clip_quality(clip: Clip) -> Scores:
    """The quality scores of a clip in flight: the quality filter's values when it has measured
    them, else measured now from the clip's frames and annotator outputs (what the encode stage
    writes as `quality` in KEY.json, so a build without the filter still gets the scores)."""
    measured = clip.filters.get(QualityFilter.name)
    if measured is not None:
        return measured
    return quality_scores(clip.frames, {n: o.raw for n, o in clip.outputs.items()},
                          {n: o.meta for n, o in clip.outputs.items()})


class QualityFilter(Filter):
    """Ranges on annotation quality scores (names and meanings: docs/QUALITY.md):

        quality:
          flow_fb_inconsistent: {max: 0.2}
          depth_flicker: {max: 0.05}
          person_agreement: {min: 0.5, missing: drop}

    A score the clip cannot give (None: no entity, no person, a modality not in the build) is
    kept unless its rule says `missing: drop`: unlike a source column, a missing score means
    "nothing to judge", and dropping every clip without a person would empty a general build.
    """

    name, phase = "quality", "annotated"
    needs = ("flow", "depth", "seg", "skeleton", "densepose")

    def __init__(self, **rules: Any) -> None:
        unknown = set(rules) - set(SCORES)
        if unknown:
            raise FilterConfigError(f"filters.quality: unknown scores {sorted(unknown)}; known: {', '.join(SCORES)}")
        self.options = rules
        self.rules: dict[str, tuple[Bounds, bool]] = {}
        for score, rule in rules.items():
            rule = dict(rule or {})
            missing = rule.pop("missing", "keep")
            if missing not in ("drop", "keep"):
                raise FilterConfigError(f"filters.quality.{score}.missing must be drop or keep, got {missing!r}")
            self.rules[score] = (Bounds.parse(f"filters.quality.{score}", rule), missing == "drop")

    def check(self, clip: Clip) -> Verdict:
        scores = clip_quality(clip)
        for score, (bounds, drop_missing) in self.rules.items():
            value = scores.get(score)
            if value is None:
                if drop_missing:
                    return Verdict(False, f"{score} not available for this clip (missing: drop)", scores)
                continue
            if why := bounds.violation(score, value):
                return Verdict(False, why, scores)
        return Verdict(True, None, scores)
