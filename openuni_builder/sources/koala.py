"""Koala-36M: one row per clip, `videoID = <youtube id>_<clip index>`, `timestamp = "['H:MM:SS.fff', 'H:MM:SS.fff']"`."""

from __future__ import annotations

from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import (SourceContext, SourceError, download_url, VideoIndex,
                                          numeric_scores, parse_literal, parse_timestamp, read_table)
from openuni_builder.sources.remote import fetch_metadata

SCORE_COLUMNS = ("clarity_score", "aesthetic_score", "motion_score", "video_training_suitability_score")
HUB_REPO = "Koala-36M/Koala-36M-v1"


class Koala36M:
    name = "koala36m"

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        metadata = ctx.input or fetch_metadata(HUB_REPO, ctx.work_dir, self.name)
        videos = VideoIndex(ctx.video_root)
        for row in read_table(metadata):
            video_id = str(row.get("videoID") or "")
            if not video_id:
                raise SourceError(f"Koala-36M row without videoID: {row}")
            youtube_id, _, index = video_id.rpartition("_")
            if not youtube_id:
                youtube_id, index = video_id, "0"
            start, end = (parse_timestamp(t) for t in parse_literal(row["timestamp"]))
            path = videos.find(youtube_id)
            yield ClipRequest(
                source=self.name, video_id=youtube_id, path=str(path),
                start=start, end=end, caption=row.get("caption"),
                scores=numeric_scores(row, SCORE_COLUMNS),
                extra={"url": row.get("url"), "videoID": video_id, **download_url(ctx, path, row.get("url"))},
                clip_index=int(index) if index.isdigit() else 0)
