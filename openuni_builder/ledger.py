"""The resume ledger: which keys are finished (and in which shard), which failed (and why) and
which a filter dropped (which filter, why, with what values).

Append-only JSON lines, flushed per record, so a killed run loses at most the record being
written. A key is done only once its shard and manifest were committed; `failed.jsonl` keeps every
failure, and a key counts as failed while it is not done. `filtered.jsonl` records drops with the
fingerprint of the filter's settings, so a rerun with the same settings skips them and a rerun
with changed settings gives them another chance.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable


class Ledger:
    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir) / "ledger"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.done_path = self.dir / "done.jsonl"
        self.failed_path = self.dir / "failed.jsonl"
        self.filtered_path = self.dir / "filtered.jsonl"

    def done(self) -> dict[str, dict[str, Any]]:
        """Index rows of finished samples by key."""
        return {r["key"]: r for r in _read(self.done_path)}

    def failed(self) -> dict[str, dict[str, Any]]:
        """Latest failure of each key that is not done."""
        done = self.done()
        return {r["key"]: r for r in _read(self.failed_path) if r["key"] not in done}

    def filtered(self, fingerprints: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Latest drop of each key that is not done; with `fingerprints` (filter name -> settings
        fingerprint), only drops made by a filter with those same settings."""
        done = self.done()
        return {r["key"]: r for r in _read(self.filtered_path) if r["key"] not in done
                and (fingerprints is None or fingerprints.get(r["filter"]) == r.get("fingerprint"))}

    def mark_done(self, rows: Iterable[dict[str, Any]]) -> None:
        _append(self.done_path, rows)

    def mark_failed(self, key: str, stage: str, reason: str, **context: Any) -> None:
        _append(self.failed_path, [{"key": key, "stage": stage, "reason": reason,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **context}])


    def mark_filtered(self, key: str, filter_name: str, reason: str, values: dict[str, Any],
                      fingerprint: str, **context: Any) -> None:
        _append(self.filtered_path, [{"key": key, "filter": filter_name, "reason": reason, "values": values,
                                      "fingerprint": fingerprint, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      **context}])


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: its record was never committed
    return rows


def _append(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    torn = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with open(path, "a") as fh:
        if torn:
            fh.write("\n")  # end a line a kill cut short, so the next record starts clean
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
