"""Size-bounded WebDataset shards that are never visible half-written.

The driver is the only writer: finished clips stream in, go into `shards/openuni-%06d.tar.tmp`,
and when a shard reaches its sample or byte limit (or the run ends) it is renamed to `.tar` and
only then are its keys written to the ledger. A kill leaves at most a `.tmp` file, which the next
run deletes (its clips were never marked done, so they are redone). A shard renamed but not yet
in the ledger (killed between the two steps) is recovered from its own JSON members.

Samples are written with the standard library's `tarfile` in the layout webdataset's own
`TarWriter` produces (USTAR, `KEY.EXT` members in sorted order, mode 0444), and read back with
webdataset in the tests. Why not `webdataset.TarWriter`: importing the webdataset package imports
torch, which cost the driver 1.4 s and ~250 MB at every build start for nothing but this loop.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from pathlib import Path
from typing import Any

from openuni_builder.ledger import Ledger

SHARD_PATTERN = "openuni-{:06d}.tar"
_SHARD_RE = re.compile(r"openuni-(\d{6})\.tar$")


def index_row(key: str, shard: str, members: dict[str, bytes], meta: dict[str, Any]) -> dict[str, Any]:
    """The index/ledger row of one sample, derived from its members and JSON alone (so it can be
    rebuilt from a shard)."""
    return {
        "key": key, "shard": shard, "source": meta.get("source"), "video_id": meta.get("video_id"),
        "clip_index": meta.get("clip_index"), "start": meta.get("start"), "end": meta.get("end"),
        "num_frames": meta.get("num_frames"), "fps": meta.get("fps"),
        "height": meta.get("height"), "width": meta.get("width"),
        "caption": meta.get("caption"), "modalities": sorted(meta.get("modalities", {})),
        "members": sorted(members), "member_bytes": {m: len(b) for m, b in members.items()},
        "bytes": sum(len(b) for b in members.values()), "scores": meta.get("scores", {}),
        "filters": meta.get("filters", {}), "dry_run": bool(meta.get("dry_run", False)),
        "duration": _segment_duration(meta), "facts": _facts(meta),
    }


def _segment_duration(meta: dict[str, Any]) -> float | None:
    """Seconds of the source segment the clip was cut from (the whole video without start/end)."""
    end = meta.get("end")
    if end is None:
        end = (meta.get("source_video") or {}).get("src_duration")
    return None if end is None else round(float(end) - float(meta.get("start") or 0.0), 4)


def _facts(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Numeric and boolean per-modality facts (person and entity counts, flags) for the index, so
    balancing and the dataset card need not reopen every sample."""
    sections = {**(meta.get("annotations") or {}), **(meta.get("modalities") or {})}
    return {name: {k: v for k, v in section.items() if isinstance(v, (bool, int, float))}
            for name, section in sections.items() if isinstance(section, dict)}


class ShardWriter:
    """Streams samples into bounded shards under `out_dir/shards` and commits them to the ledger."""

    def __init__(self, out_dir: Path, ledger: Ledger, max_samples: int, max_bytes: int) -> None:
        self.dir = Path(out_dir) / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ledger, self.max_samples, self.max_bytes = ledger, max_samples, max_bytes
        self._clean_and_recover()
        self._next = 1 + max((_shard_number(p) for p in self.dir.glob("openuni-*.tar")), default=-1)
        self._tar: tarfile.TarFile | None = None
        self._fh = None
        self._rows: list[dict[str, Any]] = []
        self._bytes = 0
        self.written = 0

    def add(self, key: str, members: dict[str, bytes], meta: dict[str, Any]) -> None:
        """Write one sample (members keyed by extension, e.g. "mp4", "flow.npz")."""
        size = sum(len(b) for b in members.values())
        if self._tar is not None and (len(self._rows) >= self.max_samples or self._bytes + size > self.max_bytes):
            self._commit()
        if self._tar is None:
            self._open()
        write_sample(self._tar, key, members)
        self._rows.append(index_row(key, self._name, members, meta))
        self._bytes += size

    def close(self) -> None:
        if self._tar is not None:
            self._commit()

    def _open(self) -> None:
        self._name = SHARD_PATTERN.format(self._next)
        self._next += 1
        self._fh = open(self.dir / (self._name + ".tmp"), "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)
        self._rows, self._bytes = [], 0

    def _commit(self) -> None:
        self._tar.close()
        self._fh.close()
        (self.dir / (self._name + ".tmp")).rename(self.dir / self._name)
        self.ledger.mark_done(self._rows)
        self.written += len(self._rows)
        self._tar, self._fh, self._rows = None, None, []

    def _clean_and_recover(self) -> None:
        for tmp in self.dir.glob("*.tar.tmp"):
            tmp.unlink()
        known = {row["shard"] for row in self.ledger.done().values()}
        for shard in sorted(self.dir.glob("openuni-*.tar")):
            if shard.name not in known:
                self.ledger.mark_done(read_shard_rows(shard))


def write_sample(tar: tarfile.TarFile, key: str, members: dict[str, bytes]) -> None:
    """One sample's members as `KEY.EXT` files, extensions sorted, read-only (webdataset's layout)."""
    now = time.time()
    for ext in sorted(members):
        data = members[ext]
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime, info.mode = len(data), now, 0o444
        tar.addfile(info, io.BytesIO(data))


def read_shard_rows(shard: Path) -> list[dict[str, Any]]:
    """Index rows of every sample in a complete shard (used to recover an unledgered shard)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.isfile():
                key, _, ext = member.name.partition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return [index_row(key, shard.name, members, json.loads(members["json"]))
            for key, members in samples.items()]


def _shard_number(path: Path) -> int:
    match = _SHARD_RE.search(path.name)
    return int(match.group(1)) if match else -1
