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

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from upath import UPath

from openuni_builder.location import location
from openuni_builder.shards import open_shard
from openuni_builder.staging import pull, push

#: The balanced subset's shards are written by this process alone, so they are simply numbered.
SHARD_PATTERN = "openuni-{:06d}.tar"

KEYS = ("source", "content", "motion")
UNKNOWN = "unknown"


class BalanceError(ValueError):
    """A balance config or build that cannot be balanced; the message says why."""


@dataclass(frozen=True)
class BalanceConfig:
    target: int | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    keys: tuple[str, ...] = KEYS
    motion_thresholds: tuple[float, ...] = (0.5, 2.0)
    motion_labels: tuple[str, ...] = ("static", "moderate", "dynamic")
    seed: int = 0

    @classmethod
    def from_dict(cls, block: dict[str, Any]) -> "BalanceConfig":
        """From the pipeline YAML's `balance:` block (target, quotas, keys, motion, seed)."""
        block = dict(block or {})
        unknown = set(block) - {"target", "quotas", "keys", "motion", "seed"}
        if unknown:
            raise BalanceError(f"balance: unknown keys {sorted(unknown)}; allowed: target, quotas, keys, motion, seed")
        motion = dict(block.get("motion") or {})
        if set(motion) - {"thresholds", "labels"}:
            raise BalanceError(f"balance.motion: allowed keys are thresholds, labels; got {sorted(motion)}")
        thresholds = tuple(float(t) for t in motion.get("thresholds", cls.motion_thresholds))
        labels = tuple(str(x) for x in motion.get(
            "labels", cls.motion_labels if "thresholds" not in motion else [f"motion{i}" for i in range(len(thresholds) + 1)]))
        cfg = cls(target=None if block.get("target") is None else int(block["target"]),
                  quotas={str(k): int(v) for k, v in (block.get("quotas") or {}).items()},
                  keys=tuple(block.get("keys", KEYS)), motion_thresholds=thresholds, motion_labels=labels,
                  seed=int(block.get("seed", 0)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if set(self.keys) - set(KEYS) or not self.keys:
            raise BalanceError(f"balance.keys must be a non-empty subset of {KEYS}, got {list(self.keys)}")
        if (self.target is None) == (not self.quotas):
            raise BalanceError("balance needs exactly one of `target` (split evenly over buckets) or `quotas`")
        if self.target is not None and self.target < 0 or any(q < 0 for q in self.quotas.values()):
            raise BalanceError("balance target and quotas must be >= 0")
        if list(self.motion_thresholds) != sorted(self.motion_thresholds):
            raise BalanceError(f"balance.motion.thresholds must increase, got {list(self.motion_thresholds)}")
        if len(self.motion_labels) != len(self.motion_thresholds) + 1:
            raise BalanceError("balance.motion.labels needs one label more than thresholds")


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="openuni-balance", description=__doc__.splitlines()[0])
    p.add_argument("out", help="a finished build: a directory or URI (with index.parquet and shards/)")
    p.add_argument("--target", type=int, help="total samples, split evenly over buckets")
    p.add_argument("--quotas", type=Path, help="JSON file {bucket label: count} instead of --target")
    p.add_argument("--keys", default=",".join(KEYS), help=f"bucket keys, comma-separated (default {','.join(KEYS)})")
    p.add_argument("--motion-thresholds", help="mean flow magnitudes between motion buckets, e.g. 0.5,2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-samples", type=int, default=256, help="samples per balanced shard")
    args = p.parse_args(argv)
    block: dict[str, Any] = {"keys": args.keys.split(","), "seed": args.seed, "target": args.target}
    if args.quotas:
        block["quotas"] = json.loads(args.quotas.read_text())
    if args.motion_thresholds:
        block["motion"] = {"thresholds": [float(t) for t in args.motion_thresholds.split(",")]}
    target = location(args.out)
    out = pull(target)  # a build at a URI is balanced in its local staging folder, then pushed
    try:
        report = balance(out, BalanceConfig.from_dict(block), args.max_samples, target / "shards")
    except BalanceError as exc:
        print(f"openuni-balance: error: {exc}", file=sys.stderr)
        return 2
    from openuni_builder.card import write_card

    write_card(out, target / "shards")
    push(out, target)
    print(f"openuni-balance: {report['total']['after']} of {report['total']['before']} samples in "
          f"{len(report['shards'])} shards under {args.out}/balanced/shards; report {args.out}/balance.json")
    for bucket, n in report["buckets"].items():
        print(f"  {bucket}: {n['before']} -> {n['after']} (quota {n['quota']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
