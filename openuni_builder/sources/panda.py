"""Panda-70M: one row per source video; per-clip values are list literals in the same order."""

from __future__ import annotations

from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import (BadRow, FieldError, SourceContext, SourceError, VideoIndex, download_url,
                                          parse_literal, parse_timestamp, read_table, rows_or_bad, youtube_id)

DOWNLOAD_PAGE = "https://snap-research.github.io/Panda-70M/"


class Panda70M:
    name = "panda70m"

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest | BadRow]:
        if ctx.input is None:
            raise SourceError(
                "Panda-70M metadata is distributed as CSV files from its project page "
                f"({DOWNLOAD_PAGE}), not from a hub; download e.g. panda70m_training_2m.csv and "
                "pass it with --input PATH (and the videos with --video-root DIR)")
        videos = VideoIndex(ctx.video_root)
        return rows_or_bad(self.name, read_table(ctx.input), lambda row: self._clips(row, videos, ctx))

    def _clips(self, row: dict, videos: VideoIndex, ctx: SourceContext) -> list[ClipRequest]:
        video_id = youtube_id(str(row.get("videoID") or ""))
        try:
            stamps = [(parse_timestamp(a), parse_timestamp(b)) for a, b in parse_literal(row["timestamp"])]
        except (SourceError, ValueError, TypeError) as exc:
            raise FieldError("timestamp", f"timestamp {str(row.get('timestamp'))[:80]!r}: {exc}") from exc
        captions = _per_clip(row.get("caption"), len(stamps), video_id, "caption")
        matching = _per_clip(row.get("matching_score"), len(stamps), video_id, "matching_score")
        desirable = _per_clip(row.get("desirable_filtering"), len(stamps), video_id, "desirable_filtering")
        shots = _per_clip(row.get("shot_boundary_detection"), len(stamps), video_id, "shot_boundary_detection")
        path = videos.find(video_id)
        fetch = download_url(ctx, path, row.get("url"))
        return [ClipRequest(source=self.name, video_id=video_id, path=str(path), start=start, end=end,
                            caption=captions[i],
                            scores={"matching_score": float(matching[i])} if matching[i] is not None else {},
                            extra={"url": row.get("url"), "desirable_filtering": desirable[i],
                                   "shot_boundary_detection": shots[i], **fetch},
                            clip_index=i)
                for i, (start, end) in enumerate(stamps)]


def _per_clip(value, n: int, video_id: str, column: str) -> list:
    """The column's list literal, checked to have one entry per clip (None entries if absent)."""
    if value is None:
        return [None] * n
    try:
        values = parse_literal(value)
    except SourceError as exc:
        raise FieldError(column, str(exc)) from exc
    if not isinstance(values, (list, tuple)) or len(values) != n:
        count = len(values) if isinstance(values, (list, tuple)) else "no list of"
        raise FieldError(column, f"Panda-70M row {video_id}: {column} has {count} entries for {n} clips")
    return list(values)
