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
read them). The person filter is the one exception to "drop the clip" (see `annotated`).

One module per kind: `base` (what all share), `scores` (listing and probe: source scores and
container metadata), `content` (black, frozen, scene cut), `duplicates` (perceptual hash and the
driver's index), `annotated` (motion, person) and `quality` (ranges on the annotation quality
scores of `openuni_builder.quality`). This package holds the registry and the
functions that run filters by phase; every name is re-exported here, so importers need not know
which module a kind lives in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from openuni_builder.clip import Clip
from openuni_builder.filters.annotated import MotionFilter, PersonFilter
from openuni_builder.filters.base import HUMAN_MODALITIES, PHASES, Bounds, Filter, FilterConfigError, Verdict
from openuni_builder.filters.content import (BlackFilter, FrozenFilter, SceneCutFilter, content_scores,
                                             distinct_frames, luma)
from openuni_builder.filters.duplicates import (HashIndex, NearDuplicateFilter, clip_phash, frame_phash,
                                                phash_distance)
from openuni_builder.filters.quality import QualityFilter, clip_quality
from openuni_builder.filters.scores import MetadataFilter, ScoreFilter

__all__ = [
    "FILTERS", "HUMAN_MODALITIES", "PHASES", "BlackFilter", "Bounds", "Filter", "FilterConfigError",
    "FrozenFilter", "HashIndex", "MetadataFilter", "MotionFilter", "NearDuplicateFilter", "PersonFilter",
    "QualityFilter", "SceneCutFilter", "ScoreFilter", "Verdict", "clip_phash", "clip_quality", "content_scores",
    "distinct_frames", "frame_phash", "in_phase", "luma", "parse_filters", "phash_distance", "run_filters",
    "schedule",
]

# Run order inside a phase (cheap checks first); also the registry of names for the config.
FILTERS: dict[str, type[Filter]] = {cls.name: cls for cls in (
    ScoreFilter, MetadataFilter, BlackFilter, FrozenFilter, SceneCutFilter, NearDuplicateFilter,
    MotionFilter, PersonFilter, QualityFilter)}


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
