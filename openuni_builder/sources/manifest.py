"""A user manifest (CSV / parquet / jsonl): `path` (or `url`), optional `start`, `end`, `caption`;
every other numeric column is kept as a score the filters can threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import (BadRow, FieldError, SourceContext, SourceError, parse_timestamp, read_table,
                                          rows_or_bad)

RESERVED = {"path", "url", "start", "end", "caption", "id"}


class Manifest:
    name = "manifest"

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest | BadRow]:
        if ctx.input is None:
            raise SourceError("--source manifest needs --input PATH (a .csv, .parquet or .jsonl with a `path` column)")
        base = ctx.input.parent if ctx.input.is_file() else ctx.input
        seen: dict[str, int] = {}

        def clip(row: dict) -> list[ClipRequest]:
            location = row.get("path") or row.get("url")
            if not location:
                raise FieldError("path", "manifest row has neither `path` nor `url`")
            location = str(location)
            path = location if "://" in location or Path(location).is_absolute() else str(base / location)
            video_id = str(row.get("id") or Path(location).stem)
            start, end = _time(row, "start"), _time(row, "end")
            index = seen[video_id] = seen.get(video_id, -1) + 1
            scores = {k: float(v) for k, v in row.items()
                      if k not in RESERVED and isinstance(v, (int, float)) and not isinstance(v, bool)}
            return [ClipRequest(source=self.name, video_id=video_id, path=path, start=start, end=end,
                                caption=row.get("caption"), scores=scores, clip_index=index)]

        return rows_or_bad(self.name, read_table(ctx.input), clip)


def _time(row: dict, column: str) -> float | None:
    try:
        return parse_timestamp(row.get(column))
    except (ValueError, TypeError) as exc:
        raise FieldError(column, f"{column} {str(row.get(column))[:80]!r} is not a time: {exc}") from exc
