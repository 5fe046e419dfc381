"""A user manifest (CSV / parquet / jsonl): `path` (or `url`), optional `start`, `end`, `caption`;
every other numeric column is kept as a score the filters can threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import SourceContext, SourceError, parse_timestamp, read_table

RESERVED = {"path", "url", "start", "end", "caption", "id"}


class Manifest:
    name = "manifest"

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        if ctx.input is None:
            raise SourceError("--source manifest needs --input PATH (a .csv, .parquet or .jsonl with a `path` column)")
        base = ctx.input.parent if ctx.input.is_file() else ctx.input
        seen: dict[str, int] = {}
        for row in read_table(ctx.input):
            location = row.get("path") or row.get("url")
            if not location:
                raise SourceError(f"manifest row has neither `path` nor `url`: {row}")
            location = str(location)
            path = location if "://" in location or Path(location).is_absolute() else str(base / location)
            video_id = str(row.get("id") or Path(location).stem)
            index = seen[video_id] = seen.get(video_id, -1) + 1
            scores = {k: float(v) for k, v in row.items()
                      if k not in RESERVED and isinstance(v, (int, float)) and not isinstance(v, bool)}
            yield ClipRequest(source=self.name, video_id=video_id, path=path,
                              start=parse_timestamp(row.get("start")), end=parse_timestamp(row.get("end")),
                              caption=row.get("caption"), scores=scores, clip_index=index)
