"""Size-bounded WebDataset shards, written by the Ray workers straight to the build's location
and never visible half-written.

The last stage of the graph (`write_shards`, a Ray Data task over a batch of finished clips)
packs its clips into shards of at most `max_samples` samples and `max_bytes` bytes, commits each
one atomically for its filesystem (`location.write_atomic`: rename, or one completed upload) and
then commits its manifest beside it (`NAME.tar.manifest.json`: keys, members with their sizes and
sha256, the tar's size, the node that wrote it, and the samples' index rows). The manifest is the
commit record: the driver receives only a small record per clip (< 10 KB, tests/test_data_plane.py)
and marks keys done from them; a kill between a shard and its ledger entry is recovered from the
manifest on the next run, and a tar without a manifest is deleted (its clips were never done, so
they are redone).

A shard is named after the sha1 of its keys, so a write task that Ray reruns (its worker died
after the upload) rewrites the same name with the same bytes (tar mtimes are the build's start
time, not the clock): a key never lands in two shards.

Samples are written with the standard library's `tarfile` in the layout webdataset's own
`TarWriter` produces (USTAR, `KEY.EXT` members in sorted order, mode 0444), and read back with
webdataset in the tests. Why not `webdataset.TarWriter`: importing the webdataset package imports
torch, which cost every writer process 1.4 s and ~250 MB for nothing but this loop.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
from upath import UPath

from openuni_builder.clip import Clip
from openuni_builder.ledger import Ledger
from openuni_builder.location import StorageOptions, location, write_atomic, write_bytes_atomic

MANIFEST_SUFFIX = ".manifest.json"


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


#: index.parquet's columns; the dict-valued ones are stored as JSON text (`balance.read_index` decodes them).
INDEX_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()), ("video_id", pa.string()),
    ("clip_index", pa.int64()), ("start", pa.float64()), ("end", pa.float64()), ("num_frames", pa.int64()),
    ("fps", pa.float64()), ("height", pa.int64()), ("width", pa.int64()), ("caption", pa.string()),
    ("modalities", pa.list_(pa.string())), ("members", pa.list_(pa.string())), ("member_bytes", pa.string()),
    ("bytes", pa.int64()), ("scores", pa.string()), ("filters", pa.string()), ("dry_run", pa.bool_()),
    ("duration", pa.float64()), ("facts", pa.string()),
])
_JSON_COLUMNS = ("member_bytes", "scores", "filters", "facts")


def write_index(rows: Iterable[dict[str, Any]], path: Path, batch: int = 10_000) -> dict[str, int]:
    """Stream index rows into `path` (parquet, INDEX_SCHEMA) a batch at a time; returns the
    totals the stats need (samples, shards, bytes). Memory: one batch, plus the shard names."""
    import pyarrow.parquet as pq

    samples, total, shards = 0, 0, set()
    writer = None
    try:
        for chunk in chunks(rows, batch):
            for row in chunk:
                for col in _JSON_COLUMNS:
                    row[col] = json.dumps(row.get(col) if isinstance(row.get(col), dict) else {})
                shards.add(row["shard"])
                total += int(row.get("bytes") or 0)
            samples += len(chunk)
            table = pa.Table.from_pylist([{name: row.get(name) for name in INDEX_SCHEMA.names} for row in chunk],
                                         schema=INDEX_SCHEMA)
            if writer is None:
                writer = pq.ParquetWriter(str(path) + ".tmp", INDEX_SCHEMA)
            writer.write_table(table)
        if writer is not None:
            writer.close()  # the footer: on a full disk this is what fails
            Path(str(path) + ".tmp").replace(path)
    except BaseException:
        if writer is not None:
            with suppress(OSError):
                writer.close()
        Path(str(path) + ".tmp").unlink(missing_ok=True)  # a half-written index never stays beside the real one
        raise
    return {"samples": samples, "shards": len(shards), "bytes": total}


def chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _segment_duration(meta: dict[str, Any]) -> float | None:
    """Seconds of the source segment the clip was cut from (the whole video without start/end)."""
    end = meta.get("end")
    if end is None:
        end = (meta.get("source_video") or {}).get("src_duration")
    return None if end is None else round(float(end) - float(meta.get("start") or 0.0), 4)


def _facts(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Numeric and boolean per-modality facts (person and entity counts, flags) and the
    annotation quality scores (section `quality`) for the index, so balancing and the dataset
    card need not reopen every sample."""
    sections = {**(meta.get("annotations") or {}), **(meta.get("modalities") or {})}
    if meta.get("quality"):
        sections["quality"] = meta["quality"]
    return {name: {k: v for k, v in section.items() if isinstance(v, (bool, int, float))}
            for name, section in sections.items() if isinstance(section, dict)}


def write_shards(batch: dict[str, np.ndarray], out: str, options: StorageOptions | None, max_samples: int,
                 max_bytes: int, mtime: float) -> dict[str, list]:
    """Ray Data stage: write the batch's finished clips into shards under `out/shards`; return one
    small JSON record per clip (done with its index row, or failed / filtered with the reason)."""
    started = time.time()
    clips = [Clip.from_bytes(b) for b in batch["clip"]]
    records: dict[str, dict[str, Any]] = {c.key: rejection(c) for c in clips if not c.ok}
    shards_dir = location(out, options) / "shards"
    node = writer_node()
    for group in _groups([c for c in clips if c.ok], max_samples, max_bytes):
        samples = [(c.key, c.members, json.loads(c.members["json"])) for c in group]
        name, rows = write_shard(shards_dir, samples, mtime, node)
        for clip, row in zip(group, rows):
            records[clip.key] = {"status": "done", "shard": name, "row": row}
    share = (time.time() - started) / max(1, len(clips))
    out_keys, out_records = [], []
    here = node_id()
    for i, clip in enumerate(clips):
        timings = {**clip.timings, "write": (started + i * share, started + (i + 1) * share)}
        out_keys.append(clip.key)
        out_records.append(json.dumps({**records[clip.key], "key": clip.key, "timings": timings,
                                       "nodes": {**clip.nodes, "write": here}}, default=str))
    return {"key": out_keys, "record": out_records}


def rejection(clip: Clip) -> dict[str, Any]:
    """The ledger record of a failed or filtered clip: what went wrong, and where the clip came from."""
    req = clip.request
    context = {"source": req.source, "video_id": req.video_id, "path": req.path, "start": req.start, "end": req.end}
    if clip.dropped is not None:
        return {"status": "filtered", "key": clip.key, **clip.dropped, "context": context}
    return {"status": "failed", "key": clip.key, "stage": clip.failed_stage, "reason": clip.error, "context": context}


def _groups(clips: list[Clip], max_samples: int, max_bytes: int) -> Iterator[list[Clip]]:
    """Consecutive runs of clips within the shard limits (a clip larger than max_bytes alone)."""
    group: list[Clip] = []
    size = 0
    for clip in clips:
        bytes_ = sum(len(b) for b in clip.members.values())
        if group and (len(group) >= max_samples or size + bytes_ > max_bytes):
            yield group
            group, size = [], 0
        group.append(clip)
        size += bytes_
    if group:
        yield group


def shard_name(keys: list[str]) -> str:
    return f"openuni-{hashlib.sha1(chr(10).join(sorted(keys)).encode()).hexdigest()[:16]}.tar"


def write_shard(shards_dir, samples: Iterable[tuple[str, dict[str, bytes], dict[str, Any]]], mtime: float,
                node: str, name: str | None = None, extra: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Commit one shard, then its manifest; returns the shard's name and its samples' index rows.

    Named after its keys unless `name` is given; with a name, `samples` may be a generator, read
    one sample at a time while the tar streams out (`--add` rewrites a shard under its old name
    without holding it: incremental.py). `extra` goes into the manifest as well."""
    if name is None:
        samples = list(samples)
        name = shard_name([key for key, _, _ in samples])
    size = 0
    digests: dict[str, dict[str, dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []

    def write(fh: IO[bytes]) -> None:
        nonlocal size
        digests.clear()
        rows.clear()
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members, meta in samples:
                write_sample(tar, key, members, mtime)
                # Per-member digests, not one of the whole tar: a check then names the corrupt samples,
                # and the bytes are hashed once (a second pass over the tar cost 20% of the write task).
                digests[key] = {ext: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                                for ext, b in sorted(members.items())}
                rows.append(index_row(key, name, members, meta))
        size = fh.tell()  # after close: the end-of-archive blocks and record padding included

    write_atomic(shards_dir / name, write)
    manifest = {"shard": name, "bytes": size, "samples": len(rows), "node": node, "members": digests, "rows": rows,
                **(extra or {})}
    try:
        write_bytes_atomic(shards_dir / (name + MANIFEST_SUFFIX), json.dumps(manifest, default=str).encode())
    except BaseException:  # a tar without its manifest is not committed: do not leave it in sight
        (shards_dir / name).unlink(missing_ok=True)
        raise
    return name, rows


def node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside a Ray worker
        return None


def writer_node() -> str:
    """Which machine wrote a shard: the host name, and the Ray node id where there is one."""
    here = node_id()
    return f"{socket.gethostname()}:{here}" if here else socket.gethostname()


def recover(shards_dir, ledger: Ledger) -> int:
    """Bring the ledger up to date with the shards a killed run committed; returns the samples
    recovered. Two kinds can lack ledger rows: shards the ledger never names, and the one whose rows
    it was writing when the kill came (`Ledger.last_shard`). Tars without a manifest and
    temporaries are deleted: their clips were never done."""
    if not shards_dir.exists():
        return 0
    discard_uncommitted(shards_dir)
    done = ledger.done_keys()
    known = set(done.values())
    names = {p.name for p in shards_dir.iterdir()}
    last = ledger.last_shard()
    recovered = 0
    for name in sorted(names):
        if name.endswith(MANIFEST_SUFFIX) and (name[:-len(MANIFEST_SUFFIX)] not in known
                                               or name[:-len(MANIFEST_SUFFIX)] == last):
            rows = [r for r in json.loads((shards_dir / name).read_bytes())["rows"] if r["key"] not in done]
            if rows:
                ledger.mark_done(rows)
            recovered += len(rows)
    return recovered


def discard_uncommitted(shards_dir) -> int:
    """Delete what no commit covers: temporaries and tars without a manifest (their clips were
    never done, so they are redone). Only deletes, so it works on a full disk. Returns the count."""
    if not shards_dir.exists():
        return 0
    names = {p.name for p in shards_dir.iterdir()}
    gone = [n for n in names if ".tmp-" in n or (n.endswith(".tar") and n + MANIFEST_SUFFIX not in names)]
    for name in gone:
        (shards_dir / name).unlink(missing_ok=True)
    return len(gone)


@contextmanager
def open_shard(path: str | Path | UPath) -> Iterator[tarfile.TarFile]:
    """A shard opened for reading, local or at a URI (random access: s3fs files seek)."""
    path = path if isinstance(path, (Path, UPath)) else location(path)
    with path.open("rb") as fh, tarfile.open(fileobj=fh) as tar:
        yield tar


def iter_tar_samples(tar: tarfile.TarFile) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, members) of each sample of a shard, in order (a sample's members are consecutive,
    `KEY.EXT`, the key up to the first dot: webdataset's grouping), one sample in memory at a time."""
    key, members = None, {}
    for info in tar:
        if not info.isfile():
            continue
        this, ext = info.name.split(".", 1)
        if this != key and key is not None:
            yield key, members
            members = {}
        key = this
        members[ext] = tar.extractfile(info).read()
    if key is not None:
        yield key, members


def write_sample(tar: tarfile.TarFile, key: str, members: dict[str, bytes], mtime: float) -> None:
    """One sample's members as `KEY.EXT` files, extensions sorted, read-only (webdataset's layout)."""
    for ext in sorted(members):
        data = members[ext]
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size, info.mtime, info.mode = len(data), int(mtime), 0o444
        tar.addfile(info, io.BytesIO(data))
