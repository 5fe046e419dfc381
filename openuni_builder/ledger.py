"""The resume ledger: which keys are finished (and in which shard), which failed (and why) and
which a filter dropped (which filter, why, with what values).

Append-only JSON lines, flushed per record, so a killed run loses at most the record being
written. A key is done only once its shard and manifest were committed; `failed.jsonl` keeps every
failure, and a key counts as failed while it is not done. `filtered.jsonl` records drops with the
fingerprint of the filter's settings, so a rerun with the same settings skips them and a rerun
with changed settings gives them another chance.

Nothing here grows worse than linearly with the records: the done keys (and their shards) are
read once per Ledger and kept up to date by `mark_done`, by a regex on the start of each line
rather than a JSON parse (index rows begin with `{"key": ..., "shard": ...}`); an append never
re-reads its file (a torn last line is found by reading one byte); and the done rows themselves
are only ever streamed (`iter_done`), never held.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Iterator


class Ledger:
    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir) / "ledger"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.done_path = self.dir / "done.jsonl"
        self.failed_path = self.dir / "failed.jsonl"
        self.filtered_path = self.dir / "filtered.jsonl"
        self._done: dict[str, str] | None = None  # key -> shard
        self._checked: set[Path] = set()  # files whose last line is known to be whole

    def done_keys(self) -> dict[str, str]:
        """Shard of every finished key (read once, then kept current by `mark_done`)."""
        if self._done is None:
            self._done = {}
            for line in _lines(self.done_path):
                match = _KEY_SHARD.match(line) if line.endswith("}\n") else None
                if match:
                    self._done[match[1]] = match[2]
                else:
                    row = _parse(line)
                    if row is not None:
                        self._done[row["key"]] = row["shard"]
        return self._done

    def last_shard(self) -> str | None:
        """The shard named by the last line of done.jsonl, whole or torn: the only shard whose
        rows a kill can have left half-written (rows go in one shard at a time)."""
        if not self.done_path.exists() or not self.done_path.stat().st_size:
            return None
        with open(self.done_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 65536))
            tail = fh.read().decode(errors="replace").rstrip("\n").rsplit("\n", 1)[-1]
        match = _KEY_SHARD.match(tail)
        return match[2] if match else None

    def iter_done(self) -> Iterator[dict[str, Any]]:
        """Index rows of finished samples, streamed, each key once."""
        seen: set[str] = set()
        for line in _lines(self.done_path):
            row = _parse(line)
            if row is not None and row["key"] not in seen:
                seen.add(row["key"])
                yield row

    def failed(self) -> dict[str, dict[str, Any]]:
        """Latest failure of each key that is not done."""
        done = self.done_keys()
        return {r["key"]: r for r in _read(self.failed_path) if r["key"] not in done}

    def filtered(self, fingerprints: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Latest drop of each key that is not done; with `fingerprints` (filter name -> settings
        fingerprint), only drops made by a filter with those same settings."""
        done = self.done_keys()
        return {r["key"]: r for r in _read(self.filtered_path) if r["key"] not in done
                and (fingerprints is None or fingerprints.get(r["filter"]) == r.get("fingerprint"))}

    def mark_done(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        self._append(self.done_path, rows)
        if self._done is not None:
            self._done.update((r["key"], r["shard"]) for r in rows)

    def mark_failed(self, key: str, stage: str, reason: str, **context: Any) -> None:
        self._append(self.failed_path, [{"key": key, "stage": stage, "reason": reason,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **context}])


    def mark_filtered(self, key: str, filter_name: str, reason: str, values: dict[str, Any],
                      fingerprint: str, **context: Any) -> None:
        self._append(self.filtered_path, [{"key": key, "filter": filter_name, "reason": reason, "values": values,
                                      "fingerprint": fingerprint, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      **context}])


    def _append(self, path: Path, rows: list[dict[str, Any]]) -> None:
        torn = False
        if path not in self._checked:  # a kill may have cut the last line short: one byte tells
            if path.exists() and path.stat().st_size:
                with open(path, "rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    torn = fh.read(1) != b"\n"
            self._checked.add(path)
        with open(path, "a") as fh:
            if torn:
                # End the torn line so the next record starts clean; the NUL keeps it from ever
                # reading as a whole record, even when it was cut right after a closing brace.
                fh.write("\x00\n")
            for row in rows:
                fh.write(json.dumps(row, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


_KEY_SHARD = re.compile(r'\{"key": "([A-Za-z0-9_-]+)", "shard": "([^"\\]+)"')


def _lines(path: Path) -> Iterator[str]:
    if path.exists():
        with open(path) as fh:
            yield from fh


def _parse(line: str) -> dict[str, Any] | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None  # a line cut short by a kill: its record was never committed


def _read(path: Path) -> Iterator[dict[str, Any]]:
    for line in _lines(path):
        row = _parse(line)
        if row is not None:
            yield row
