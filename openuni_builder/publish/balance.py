"""Balancing: a subset of a finished build with quotas over buckets, so no source, content type or
motion level dominates (OpenUni was "balanced to prevent overfitting to a specific source or
modality").

A bucket is the combination of the configured keys (default source x content x motion):
- source:  the sample's source parser (koala36m, panda70m, ...);
- content: "human" / "non-human" from the person filter's verdict ("unknown" without it);
- motion:  the motion filter's mean flow magnitude cut at `motion.thresholds` into
           `motion.labels` ("unknown" without it).
Quotas are explicit per bucket label, or an even split of `target` where a bucket smaller than
its share gives the rest to the others (water-filling). Within a bucket the clips with the
smallest sha1(seed:key) are chosen: deterministic, independent of listing order, and stable when
other buckets change. Shards are written as clips stream in, so balancing runs after the build:
it copies the chosen samples' members byte for byte into `OUT/balanced/shards/` and reports the
distribution before and after in `OUT/balance.json`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from upath import UPath

from openuni_builder.config import BalanceConfig, BalanceError
from openuni_builder.shards import open_shard

#: The balanced subset's shards are written by this process alone, so they are simply numbered.
SHARD_PATTERN = "openuni-{:06d}.tar"

UNKNOWN = "unknown"


def bucket_of(row: dict[str, Any], cfg: BalanceConfig) -> str:
    """The bucket label of an index row, e.g. "koala36m/human/dynamic"."""
    filters = row.get("filters") or {}
    parts = []
    for key in cfg.keys:
        if key == "source":
            parts.append(str(row.get("source") or UNKNOWN))
        elif key == "content":
            human = (filters.get("person") or {}).get("human")
            parts.append(UNKNOWN if human is None else "human" if human else "non-human")
        else:
            mean = (filters.get("motion") or {}).get("mean")
            level = None if mean is None else sum(mean >= t for t in cfg.motion_thresholds)
            parts.append(UNKNOWN if level is None else cfg.motion_labels[level])
    return "/".join(parts)


def quotas(sizes: dict[str, int], cfg: BalanceConfig) -> dict[str, int]:
    """Each bucket's quota: the configured one, or its water-filled share of the target (buckets
    in order of size, then label; a remainder goes to the larger buckets)."""
    if cfg.quotas:
        return {b: cfg.quotas.get(b, 0) for b in sorted(set(sizes) | set(cfg.quotas))}
    out, remaining = {}, cfg.target
    ordered = sorted(sizes.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (bucket, size) in enumerate(ordered):
        share = remaining // (len(ordered) - i)
        out[bucket] = share
        remaining -= min(share, size)
    return dict(sorted(out.items()))


def rank(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def select(rows: list[dict[str, Any]], cfg: BalanceConfig) -> tuple[list[str], dict[str, Any]]:
    """Keys of the chosen samples (sorted) and the before/after report."""
    by_bucket: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_bucket[bucket_of(row, cfg)].append(row["key"])
    sizes = {b: len(keys) for b, keys in by_bucket.items()}
    quota = quotas(sizes, cfg)
    chosen = []
    for bucket, q in quota.items():
        chosen += sorted(by_bucket.get(bucket, []), key=lambda k: rank(k, cfg.seed))[:q]
    chosen_set = set(chosen)
    after = Counter(bucket_of(r, cfg) for r in rows if r["key"] in chosen_set)
    report = {
        "config": {**asdict(cfg), "keys": list(cfg.keys)},
        "buckets": {b: {"before": sizes.get(b, 0), "quota": quota[b], "after": after.get(b, 0)} for b in quota},
        "total": {"before": len(rows), "after": len(chosen)},
    }
    return sorted(chosen), report


def read_index(out: Path) -> list[dict[str, Any]]:
    """Rows of OUT/index.parquet with their JSON columns decoded."""
    path = Path(out) / "index.parquet"
    if not path.exists():
        raise BalanceError(f"{path} not found: balance a finished build (one with samples)")
    frame = pd.read_parquet(path)
    rows = frame.to_dict(orient="records")
    for row in rows:
        for col in ("member_bytes", "scores", "filters", "facts"):
            if isinstance(row.get(col), str):
                row[col] = json.loads(row[col])
    return rows


def balance(out: Path, cfg: BalanceConfig, max_samples: int = 256, shards: Path | UPath | None = None) -> dict[str, Any]:
    """Select, copy the chosen samples into OUT/balanced/shards, write OUT/balanced/index.parquet
    and OUT/balance.json; returns the report. The previous balanced subset is replaced whole.
    `shards`: where the build's shards are (default OUT/shards; a URI folder for a remote build)."""
    out = Path(out)
    rows = read_index(out)
    chosen, report = select(rows, cfg)
    tmp = out / "balanced.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    placed = copy_samples(out / "shards" if shards is None else shards, set(chosen), tmp / "shards", max_samples)
    subset = [{**r, "shard": placed[r["key"]]} for r in rows if r["key"] in placed]
    if subset:
        frame = pd.DataFrame(subset)
        for col in ("member_bytes", "scores", "filters", "facts"):
            if col in frame:
                frame[col] = frame[col].map(json.dumps)
        frame.to_parquet(tmp / "index.parquet", index=False)
    shutil.rmtree(out / "balanced", ignore_errors=True)
    tmp.rename(out / "balanced")
    report["shards"] = sorted(set(placed.values()))
    (out / "balance.json").write_text(json.dumps(report, indent=2))
    return report


def copy_samples(src: Path | UPath, keys: set[str], dst: Path, max_samples: int) -> dict[str, str]:
    """Copy every member of the samples in `keys` from the shards in `src`, unchanged, into new
    shards in `dst` (`max_samples` per shard, in source shard order); returns key -> new shard."""
    dst.mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    writer, count, shards, name = None, 0, 0, ""
    try:
        for shard in sorted(src.glob("*.tar")):
            with open_shard(shard) as tar:
                for info in tar:
                    key = info.name.rsplit("/", 1)[-1].partition(".")[0]
                    if not info.isfile() or key not in keys:
                        continue
                    if key not in placed:
                        if writer is None or count == max_samples:
                            if writer is not None:
                                writer.close()
                            name, shards = SHARD_PATTERN.format(shards), shards + 1
                            writer, count = tarfile.open(dst / name, "w"), 0
                        placed[key] = name
                        count += 1
                    writer.addfile(info, tar.extractfile(info))
    finally:
        if writer is not None:
            writer.close()
    return placed
