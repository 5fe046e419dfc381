"""What every source parser shares: reading metadata tables, timestamps and list literals.

A source turns metadata into `ClipRequest`s and never decodes video: unreadable or missing videos
are found by the decode stage and land in the ledger with their reason.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import pandas as pd
from upath import UPath

from openuni_builder.clip import ClipRequest, ClipSpec
from openuni_builder.location import StorageOptions

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


class SourceError(ValueError):
    """Metadata that cannot be read at all (as opposed to one bad row, which becomes a request
    whose decode fails with a reason)."""


@dataclass(frozen=True)
class SourceContext:
    """Everything a parser may need besides its own metadata.

    `input` and `video_root` may be object-store locations (`location.location`); `work_dir` is
    the driver's local folder (downloaded metadata), `out` the build's location, where the bundled
    samples are copied so every worker of a cluster can read them.
    """

    input: Path | UPath | None
    work_dir: Path
    spec: ClipSpec
    video_root: Path | UPath | None = None
    download: bool = False
    out: Path | UPath | None = None
    options: StorageOptions = field(default_factory=dict)

    @property
    def output(self) -> Path | UPath:
        return self.work_dir if self.out is None else self.out


class Source(Protocol):
    name: str

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]: ...


def read_table(path: Path | UPath) -> list[dict[str, Any]]:
    """Rows of a CSV, TSV, parquet or JSON-lines file (or every such file in a directory), local or
    at a URI."""
    path = path if isinstance(path, UPath) else Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".csv", ".tsv", ".parquet", ".jsonl"})
        if not files:
            raise SourceError(f"no .csv/.tsv/.parquet/.jsonl metadata files in {path}")
        return [row for f in files for row in read_table(f)]
    if not path.exists():
        raise SourceError(f"metadata file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in {".parquet", ".jsonl", ".csv", ".tsv"}:
        raise SourceError(f"unsupported metadata format {suffix!r} ({path}); use csv, tsv, parquet or jsonl")
    try:
        with path.open("rb") as fh:
            if suffix == ".parquet":
                frame = pd.read_parquet(fh)
            elif suffix == ".jsonl":
                frame = pd.read_json(fh, lines=True, precise_float=True)
            else:
                frame = pd.read_csv(fh, sep="\t" if suffix == ".tsv" else ",")
    except (ValueError, OSError) as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"cannot read metadata {path}: {exc}") from exc
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _clean(value: Any) -> Any:
    """pandas gives NaN for empty cells; sources want None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def parse_timestamp(value: str | float | int | None) -> float | None:
    """Seconds from 'H:MM:SS.fff' (also 'MM:SS.fff' or plain seconds)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    seconds = 0.0
    for part in str(value).strip().split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def parse_literal(value: Any) -> Any:
    """A Python/JSON list literal as stored in Koala-36M and Panda-70M CSVs ("['0:00:01.0', ...]")."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError) as exc:
            raise SourceError(f"cannot parse list literal {value[:80]!r}: {exc}") from exc
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def numeric_scores(row: dict[str, Any], columns: tuple[str, ...]) -> dict[str, float]:
    """The given columns of `row` that hold numbers, as floats."""
    out = {}
    for col in columns:
        value = row.get(col)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value is not None:
            out[col] = float(value)
    return out


def download_url(ctx: SourceContext, path: Path, url: str | None) -> dict[str, str]:
    """`{"download_url": url}` when --download is on and the video is not on disk yet, else {}."""
    return {"download_url": url} if ctx.download and url and not path.exists() else {}


def find_video(root: Path | UPath | None, video_id: str) -> Path | UPath:
    """The video named `video_id.<ext>` under `root` (searched recursively once per id).

    When none exists the expected `.mp4` path is returned, so the decode stage records
    "file not found" with the path the user should have provided.
    """
    base = root if root is not None else Path(".")
    for ext in VIDEO_EXTENSIONS:
        candidate = base / f"{video_id}{ext}"
        if candidate.exists():
            return candidate
    for ext in VIDEO_EXTENSIONS:
        found = next(iter(base.rglob(f"{video_id}{ext}")), None) if base.is_dir() else None
        if found:
            return found
    return base / f"{video_id}.mp4"
