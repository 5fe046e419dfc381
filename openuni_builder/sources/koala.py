"""Koala-36M: one row per clip, `videoID = <youtube id>_<clip index>`, `timestamp = "['H:MM:SS.fff', 'H:MM:SS.fff']"`."""

from __future__ import annotations

from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import (BadRow, FieldError, SourceContext, SourceError, VideoIndex, download_url,
                                          numeric_scores, parse_literal, parse_timestamp, read_table, rows_or_bad,
                                          youtube_id)
from openuni_builder.sources.remote import fetch_metadata

SCORE_COLUMNS = ("clarity_score", "aesthetic_score", "motion_score", "video_training_suitability_score")
HUB_REPO = "Koala-36M/Koala-36M-v1"


class Koala36M:
    name = "koala36m"

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest | BadRow]:
        metadata = ctx.input or fetch_metadata(HUB_REPO, ctx.work_dir, self.name)
        videos = VideoIndex(ctx.video_root)
        return rows_or_bad(self.name, read_table(metadata), lambda row: [self._clip(row, videos, ctx)])

    def _clip(self, row: dict, videos: VideoIndex, ctx: SourceContext) -> ClipRequest:
        video_id = str(row.get("videoID") or "")
        if not video_id:
            raise FieldError("videoID", "Koala-36M row without videoID")
        name, _, index = video_id.rpartition("_")
        if not name or not index.isdigit():
            name, index = video_id, "0"
        name = youtube_id(name)
        try:
            start, end = (parse_timestamp(t) for t in parse_literal(row["timestamp"]))
        except (SourceError, ValueError, TypeError) as exc:
            raise FieldError("timestamp", f"timestamp {str(row.get('timestamp'))[:80]!r}: {exc}") from exc
        path = videos.find(name)
        return ClipRequest(
            source=self.name, video_id=name, path=str(path),
            start=start, end=end, caption=row.get("caption"),
            scores=numeric_scores(row, SCORE_COLUMNS),
            extra={"url": row.get("url"), "videoID": video_id, **download_url(ctx, path, row.get("url"))},
            clip_index=int(index))
