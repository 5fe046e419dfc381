"""What every source parser shares: reading metadata tables, timestamps and list literals.

A source turns metadata into `ClipRequest`s and never decodes video: unreadable or missing videos
are found by the decode stage and land in the ledger with their reason.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import pandas as pd
from upath import UPath

from openuni_builder.clip import ClipRequest, ClipSpec
from openuni_builder.location import StorageOptions, is_uri

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")


class SourceError(ValueError):
    """Metadata that cannot be read at all (as opposed to one bad row, which becomes a `BadRow`)."""


class FieldError(SourceError):
    """One field of one row is wrong; `column` names it."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class BadRow:
    """A metadata row that yields no clip: which row (1-based, header not counted), which column
    when known, and why. The build ledgers it at stage `listing` and lists the other rows."""

    source: str
    row: int
    reason: str
    column: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}-row{self.row}"


#: YouTube video ids (Koala-36M, Panda-70M): 11 characters; nothing that could name another path.
YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")


def youtube_id(value: str, column: str = "videoID") -> str:
    if not YOUTUBE_ID.fullmatch(value):
        raise FieldError(column, f"{column} {value[:80]!r} is not a YouTube video id (11 characters of A-Z a-z 0-9 _ -)")
    return value


def rows_or_bad(source: str, rows: Iterable[dict[str, Any]],
                parse: Callable[[dict[str, Any]], list[ClipRequest]]) -> Iterator[ClipRequest | BadRow]:
    """Every row through `parse`; a row it cannot parse (a malformed literal, a missing column, a
    NaN where a number belongs, ...) becomes a BadRow and the listing goes on."""
    for number, row in enumerate(rows, start=1):
        if UNREADABLE in row:
            yield BadRow(source, number, row[UNREADABLE])
            continue
        try:
            clips = parse(row)
        except FieldError as exc:
            yield BadRow(source, number, str(exc), exc.column)
            continue
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError) as exc:
            column = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
            yield BadRow(source, number, f"{type(exc).__name__}: {exc}", str(column) if column else None)
            continue
        yield from clips


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
    shot_detector: str | None = None  # the folder source's detector (shots.get_detector; None: its default)

    @property
    def output(self) -> Path | UPath:
        return self.work_dir if self.out is None else self.out


class Source(Protocol):
    name: str

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]: ...


#: Rows per batch when reading metadata: bounds the listing's memory whatever the table's size.
BATCH_ROWS = 50_000


def read_table(path: Path | UPath) -> Iterator[dict[str, Any]]:
    """Rows of a CSV, TSV, parquet or JSON-lines file (or every such file in a directory), local or
    at a URI, streamed in batches of BATCH_ROWS: a 36M-row table never sits in memory, and a
    consumer that stops early (`--limit`) stops the reading too."""
    path = path if isinstance(path, UPath) else Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".csv", ".tsv", ".parquet", ".jsonl"})
        if not files:
            raise SourceError(f"no .csv/.tsv/.parquet/.jsonl metadata files in {path}")
        for f in files:
            yield from read_table(f)
        return
    if not path.exists():
        raise SourceError(f"metadata file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in {".parquet", ".jsonl", ".csv", ".tsv"}:
        raise SourceError(f"unsupported metadata format {suffix!r} ({path}); use csv, tsv, parquet or jsonl")
    try:
        with path.open("rb") as fh:
            if suffix == ".jsonl":  # line by line: a malformed line is one bad row, big ints stay exact
                yield from _jsonl_rows(fh)
                return
            for frame in _batches(fh, suffix):
                for row in frame.to_dict(orient="records"):
                    yield {k: _clean(v) for k, v in row.items()}
    except (ValueError, OSError) as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"cannot read metadata {path}: {exc}") from exc


def _batches(fh, suffix: str) -> Iterator[pd.DataFrame]:
    """DataFrames of at most BATCH_ROWS rows (CSV, TSV, parquet). CSV batches come from pandas' chunked reader, whose
    column types are inferred per batch (a stray value in row 30M changes that batch only, where a
    schema fixed from the first block would stop the whole read)."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(fh).iter_batches(batch_size=BATCH_ROWS):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(fh, sep="\t" if suffix == ".tsv" else ",", chunksize=BATCH_ROWS)


#: The key of a row that could not be read at all (a JSON line cut short, say): rows_or_bad makes it a BadRow.
UNREADABLE = "__unreadable__"


def _jsonl_rows(fh) -> Iterator[dict[str, Any]]:
    for line in fh:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            yield {UNREADABLE: f"not a JSON object: {exc}"}
            continue
        yield {k: _clean(v) for k, v in row.items()} if isinstance(row, dict) else {UNREADABLE: "not a JSON object"}


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


class VideoIndex:
    """Finds `VIDEO_ID.<ext>` under a video root, local or at a URI.

    A local root is asked directly first (one stat for the common flat layout); the first miss
    walks the tree once into a stem -> path map that answers every later id alone, so a nested layout
    or a missing id costs a dict lookup instead of a recursive search per id (38 ms per id in a
    10k-file tree before). A URI root is listed once up front (one stat per id would be a request
    per id).
    """

    def __init__(self, root: Path | UPath | None) -> None:
        self.root = root if root is not None else Path(".")
        self._index: dict[str, Path | UPath] | None = None
        self._local = isinstance(self.root, Path) and not is_uri(str(self.root))

    def find(self, video_id: str) -> Path | UPath:
        """The video's path; when none exists, the expected `.mp4` path, so the decode stage
        records "file not found" with the path the user should have provided."""
        if self._local and self._index is None:  # after the walk, the index answers alone
            for ext in VIDEO_EXTENSIONS:
                candidate = self.root / f"{video_id}{ext}"
                if candidate.exists():
                    return candidate
        return self._walk().get(video_id) or self.root / f"{video_id}.mp4"

    def _walk(self) -> dict[str, Path | UPath]:
        if self._index is None:
            self._index = {}
            if self.root.is_dir():
                rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
                found = sorted((p for p in self.root.rglob("*") if p.suffix.lower() in rank),
                               key=lambda p: (len(p.parts), rank[p.suffix.lower()], str(p)))
                for p in found:
                    self._index.setdefault(p.stem, p)
        return self._index
