"""`openuni-build --verify OUT`: check every shard against its manifest; `--repair` remakes exactly
the clips of the shards that fail.

A shard's manifest (written after the tar, as its commit record) lists every member of every
sample with its size and sha256. Verification reads each tar once, member by member: a shard that
is missing, truncated, has a member more or less, or a member whose bytes changed is reported
with what is wrong. Repair deletes those shards and their manifests and takes their keys out of
`ledger/done.jsonl` (rewritten atomically), so the next build of the same command redoes exactly
those clips and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from upath import UPath

from openuni_builder.ledger import Ledger
from openuni_builder.shards import MANIFEST_SUFFIX, open_shard


@dataclass
class Verdict:
    shard: str
    problems: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_shard(shards_dir: Path | UPath, manifest_name: str) -> Verdict:
    """Compare one shard's tar with its manifest."""
    manifest = json.loads((shards_dir / manifest_name).read_bytes())
    verdict = Verdict(manifest["shard"], keys=sorted(manifest["members"]))
    expected = {f"{key}.{ext}": info for key, members in manifest["members"].items() for ext, info in members.items()}
    seen: set[str] = set()
    try:
        with open_shard(shards_dir / manifest["shard"]) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                info = expected.get(member.name)
                if info is None:
                    verdict.problems.append(f"unexpected member {member.name}")
                    continue
                data = tar.extractfile(member).read()
                seen.add(member.name)
                if len(data) != info["bytes"] or hashlib.sha256(data).hexdigest() != info["sha256"]:
                    verdict.problems.append(f"{member.name}: bytes differ from the manifest")
    except FileNotFoundError:
        verdict.problems.append("shard missing")
    except (tarfile.TarError, OSError, EOFError) as exc:
        verdict.problems.append(f"unreadable: {type(exc).__name__}: {exc}")
    missing = sorted(set(expected) - seen)
    if missing and "shard missing" not in verdict.problems:
        verdict.problems.append(f"{len(missing)} members missing (first: {missing[0]})")
    return verdict


def verify(shards_dir: Path | UPath) -> list[Verdict]:
    """Every shard's verdict, in name order."""
    if not shards_dir.exists():
        return []
    names = sorted(p.name for p in shards_dir.iterdir() if p.name.endswith(MANIFEST_SUFFIX))
    return [verify_shard(shards_dir, name) for name in names]


def repair(out: Path, shards_dir: Path | UPath, broken: list[Verdict]) -> int:
    """Delete the broken shards and their manifests and forget their keys in the ledger; returns
    how many clips the next build will redo."""
    keys = {k for v in broken for k in v.keys}
    ledger = Ledger(out)
    kept = [line for line in _lines(ledger.done_path) if _key(line) not in keys]
    tmp = ledger.done_path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, ledger.done_path)
    for v in broken:
        for name in (v.shard, v.shard + MANIFEST_SUFFIX):
            path = shards_dir / name
            if path.exists():
                path.unlink()
    return len(keys)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.exists() else []


def _key(line: str) -> str | None:
    try:
        return json.loads(line).get("key")
    except json.JSONDecodeError:
        return None
