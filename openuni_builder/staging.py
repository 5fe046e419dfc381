"""The driver's own files of a build whose location is a URI.

Workers write shards and their manifests straight to `OUT/shards` wherever OUT is. The driver's
files (identity, ledger, index, stats, card, plots, previews, the balanced subset) are appended
and rewritten through a run, which object stores cannot do in place, so for a URI the driver keeps
them in a local staging folder: pulled from OUT when a run starts, pushed back when it ends. The
shard manifests stay the truth of what is done: a driver killed before its push loses no sample,
the next run (on any machine) recovers the done keys from them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from upath import UPath

from openuni_builder.location import is_local, mirror_files

#: What the driver writes under OUT (everything but the shards the workers write).
DRIVER_FILES = ["build.json", "ledger", "index.parquet", "stats.json", "README.md", "plots", "previews",
                "balance.json", "balanced", "build.log"]
STAGING_ENV = "OPENUNI_STAGING"


def driver_dir(out: UPath | Path) -> Path:
    """OUT itself when it is local, else this machine's staging folder for that URI."""
    if is_local(out):
        return Path(out)
    root = Path(os.environ.get(STAGING_ENV) or Path.home() / ".cache" / "openuni" / "staging")
    slug = hashlib.sha1(str(out).encode()).hexdigest()[:16]
    return root / f"{Path(str(out)).name or 'build'}-{slug}"


def pull(out: UPath | Path) -> Path:
    """The driver folder for OUT, holding OUT's current driver files (a URI's are copied down,
    replacing whatever an earlier run on this machine left; the log is appended to, not replaced)."""
    local = driver_dir(out)
    local.mkdir(parents=True, exist_ok=True)
    if not is_local(out):
        names = [n for n in DRIVER_FILES if n != "build.log"]
        for name in names:
            path = local / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        mirror_files(out, UPath(local), names)
    return local


def push(local: Path, out: UPath | Path) -> None:
    """Copy the driver files back to OUT (nothing to do when OUT is local)."""
    if not is_local(out):
        mirror_files(UPath(local), out, DRIVER_FILES)
