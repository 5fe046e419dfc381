"""What the dataset card and its plots need from a build's index, read in one streaming pass.

The index has a row per sample (1.3M for OpenUni); the card needs counts, mean member sizes and,
for its histograms, a few numbers per clip. Reading index.parquet a batch at a time into those
aggregates keeps the card's memory at ~8 bytes per clip and plotted number (`array('d')`)
instead of a dict per row (a 1.3M-row index read whole took ~1.5 GB).
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from openuni_builder.quality import SCORES

#: Plotted numbers per clip: name -> how to find it in an index row.
SERIES = {
    "duration": lambda r: r.get("duration"),
    "motion.mean": lambda r: ((r.get("filters") or {}).get("motion") or {}).get("mean"),
    "motion.peak": lambda r: ((r.get("filters") or {}).get("motion") or {}).get("peak"),
    "persons": lambda r: _person_count(r),
    "entities": lambda r: ((r.get("facts") or {}).get("seg") or {}).get("num_entities"),
    # Annotation quality scores (docs/QUALITY.md), each its own histogram in the card.
    **{f"quality.{name}": (lambda r, name=name: ((r.get("facts") or {}).get("quality") or {}).get(name))
       for name in SCORES},
}


def _person_count(row: dict[str, Any]) -> Any:
    facts = row.get("facts") or {}
    for name in ("skeleton", "densepose"):
        if "person_count" in (facts.get(name) or {}):
            return facts[name]["person_count"]
    return ((row.get("filters") or {}).get("person") or {}).get("person_count")


def member_modality(member: str) -> str:
    """The modality a shard member belongs to: "mp4" -> "rgb", "json"/"txt" -> "meta",
    "<m>.<ext...>" -> m."""
    if member == "mp4":
        return "rgb"
    if member in ("json", "txt"):
        return "meta"
    return member.split(".", 1)[0]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class IndexSummary:
    samples: int = 0
    per_source: Counter = field(default_factory=Counter)
    member_bytes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # sum, count
    series: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))
    scores: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))

    def add(self, row: dict[str, Any]) -> None:
        self.samples += 1
        self.per_source[row.get("source")] += 1
        for member, size in (row.get("member_bytes") or {}).items():
            self.member_bytes[member][0] += size
            self.member_bytes[member][1] += 1
        for name, get in SERIES.items():
            value = get(row)
            if _number(value):
                self.series[name].append(float(value))
        for column, value in (row.get("scores") or {}).items():
            if _number(value):
                self.scores[column].append(float(value))

    def mean_bytes(self, member: str) -> float | None:
        total, count = self.member_bytes.get(member, (0, 0))
        return total / count if count else None

    def bytes_per_sample(self, projected_clips: int | None = None) -> dict[str, Any]:
        """Mean bytes per sample of each modality and in all, for stats.json and the card, with
        the size of `projected_clips` such samples (e.g. the 1.3M clips of a full OpenUni build).

        A modality's bytes are all its members' (`flow` = flow.mp4 + flow.npz or flow.raw.mkv),
        `rgb` is KEY.mp4 and `meta` KEY.json + KEY.txt; means are over all samples, so a modality
        some samples lack counts as 0 bytes for them."""
        per_modality: dict[str, int] = defaultdict(int)
        for member, (total, _) in self.member_bytes.items():
            per_modality[member_modality(member)] += total
        n = max(self.samples, 1)
        report: dict[str, Any] = {"samples": self.samples,
                                  "per_modality": {m: per_modality[m] / n for m in sorted(per_modality)},
                                  "total": sum(per_modality.values()) / n}
        if projected_clips is not None:
            report["projected"] = {"clips": projected_clips, "bytes": report["total"] * projected_clips}
        return report

    @classmethod
    def of_rows(cls, rows: Iterable[dict[str, Any]]) -> "IndexSummary":
        summary = cls()
        for row in rows:
            summary.add(row)
        return summary

    @classmethod
    def read(cls, path: Path, batch: int = 10_000) -> "IndexSummary":
        """One pass over OUT/index.parquet, a batch of rows at a time (empty when it is missing)."""
        summary = cls()
        if not Path(path).exists():
            return summary
        import pyarrow.parquet as pq

        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch):
            for row in record_batch.to_pylist():
                for col in ("member_bytes", "scores", "filters", "facts"):
                    if isinstance(row.get(col), str):
                        row[col] = json.loads(row[col])
                summary.add(row)
        return summary
