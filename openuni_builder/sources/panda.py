"""Panda-70M: one row per source video; per-clip values are list literals in the same order."""

from __future__ import annotations

from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import (SourceContext, SourceError, download_url, VideoIndex,
                                          parse_literal, parse_timestamp, read_table)

DOWNLOAD_PAGE = "https://snap-research.github.io/Panda-70M/"


class Panda70M:
    name = "panda70m"

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        if ctx.input is None:
            raise SourceError(
                "Panda-70M metadata is distributed as CSV files from its project page "
                f"({DOWNLOAD_PAGE}), not from a hub; download e.g. panda70m_training_2m.csv and "
                "pass it with --input PATH (and the videos with --video-root DIR)")
        videos = VideoIndex(ctx.video_root)
        for row in read_table(ctx.input):
            video_id = str(row["videoID"])
            stamps = parse_literal(row["timestamp"])
            captions = _per_clip(row.get("caption"), len(stamps), video_id, "caption")
            matching = _per_clip(row.get("matching_score"), len(stamps), video_id, "matching_score")
            desirable = _per_clip(row.get("desirable_filtering"), len(stamps), video_id, "desirable_filtering")
            shots = _per_clip(row.get("shot_boundary_detection"), len(stamps), video_id, "shot_boundary_detection")
            path = videos.find(video_id)
            fetch = download_url(ctx, path, row.get("url"))
            for i, (start, end) in enumerate(stamps):
                scores = {"matching_score": float(matching[i])} if matching[i] is not None else {}
                yield ClipRequest(
                    source=self.name, video_id=video_id, path=str(path),
                    start=parse_timestamp(start), end=parse_timestamp(end), caption=captions[i],
                    scores=scores,
                    extra={"url": row.get("url"), "desirable_filtering": desirable[i],
                           "shot_boundary_detection": shots[i], **fetch},
                    clip_index=i)


def _per_clip(value, n: int, video_id: str, column: str) -> list:
    """The column's list literal, checked to have one entry per clip (None entries if absent)."""
    if value is None:
        return [None] * n
    values = parse_literal(value)
    if len(values) != n:
        raise SourceError(f"Panda-70M row {video_id}: {column} has {len(values)} entries for {n} clips")
    return list(values)
