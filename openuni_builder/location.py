"""Where a build reads and writes: a local or shared-filesystem path, or an object-store URI.

Every `--shards`, `--input`, `--video-root` and manifest `path`/`url` goes through `location()`,
which gives a pathlib-style object either way: a plain `pathlib.Path` subclass for local paths, a
`universal_pathlib` path over fsspec (s3fs for `s3://`, gcsfs for `gs://`, ...) for URIs. Credentials
and endpoints come from the ecosystem's standard places (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
`~/.aws/config`, ...), plus `StorageOptions` for what those cannot say; the options travel to the
Ray workers with the tasks, so a worker needs no environment of its own beyond its credentials.

Commits are atomic for the filesystem they land on: a temporary sibling and a rename on
filesystems; on object stores one upload that the store makes visible only once it completes
(s3fs completes a multipart upload at close), so a reader never sees half an object.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

from upath import UPath

#: protocol ("s3", "gs", ...) -> fsspec options for it, e.g. {"s3": {"endpoint_url": "http://..."}}
StorageOptions = Mapping[str, Mapping[str, Any]]

#: Stores where an object appears whole when its upload completes (no rename needed or possible).
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}


def is_uri(path: str | os.PathLike) -> bool:
    """True for `scheme://...` locations other than `file://`."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def location(path: str | os.PathLike, options: StorageOptions | None = None) -> UPath:
    """A pathlib-style handle on `path`: local paths absolute, URIs with their protocol's options."""
    if isinstance(path, UPath) and is_uri(str(path)):
        return path
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if not is_uri(text):
        return UPath(Path(text).expanduser().absolute())
    protocol = text.split("://", 1)[0]
    return UPath(text, **dict((options or {}).get(protocol, {})))


def is_local(path: UPath | Path) -> bool:
    return isinstance(path, Path) and not is_uri(str(path))


def write_atomic(target: UPath | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(fh)` so that `target` appears complete or not at all."""
    if is_local(target):
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return
    if target.protocol in OBJECT_STORES:
        with target.open("wb") as fh:  # visible only when the (multipart) upload completes
            write(fh)
        return
    tmp = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    with tmp.open("wb") as fh:
        write(fh)
    tmp.fs.mv(tmp.path, target.path)


def write_bytes_atomic(target: UPath | Path, data: bytes) -> None:
    write_atomic(target, lambda fh: fh.write(data))


@contextmanager
def local_file(path: str | os.PathLike, options: StorageOptions | None = None) -> Iterator[str]:
    """A local file path for `path`: itself when local, else a temporary copy removed afterwards.

    Decoders (PyAV, PySceneDetect) seek freely and some open a file twice, so a remote video is
    copied once per task rather than streamed through each of them.
    """
    if not is_uri(path):
        yield str(path)
        return
    source = location(path, options)
    fd, tmp = tempfile.mkstemp(prefix="openuni-", suffix=Path(source.name).suffix)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, length=8 * 2**20)
        yield tmp
    finally:
        os.unlink(tmp)


def upload_file(local: Path, target: UPath | Path) -> None:
    """Copy a local file to `target` atomically."""
    with open(local, "rb") as src:
        write_atomic(target, lambda fh: shutil.copyfileobj(src, fh, length=8 * 2**20))


def mirror_files(src: UPath | Path, dst: UPath | Path, names: list[str]) -> None:
    """Copy the files and folders `names` under `src` to `dst` (skipping those `src` lacks); used to
    keep a remote build's small driver-side files (ledger, index, card) next to its shards."""
    for name in names:
        source = src / name
        if not source.exists():
            continue
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        for f in files:  # streamed: a 1.3M-clip done.jsonl is over a gigabyte
            relative = str(f)[len(str(src)):].lstrip("/")
            with f.open("rb") as fh:
                write_atomic(dst / relative, lambda out, fh=fh: shutil.copyfileobj(fh, out, length=8 * 2**20))


def move(src: UPath | Path, dst: UPath | Path) -> None:
    """Replace `dst` with `src`: an atomic rename on a filesystem; on an object store a server-side
    copy (the new object appears whole) and then the source's deletion, so a move cut short leaves
    both and is simply done again."""
    if is_local(src):
        os.replace(src, dst)
    else:
        src.fs.mv(src.path, dst.path)


def remove_tree(path: UPath | Path) -> None:
    """Delete a folder (or prefix) and everything under it; nothing when it is not there."""
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.fs.rm(path.path, recursive=True)


def shard_files(folder: str | os.PathLike, options: StorageOptions | None = None) -> list[str]:
    """The `*.tar` shards in `folder` (local or URI), sorted, as strings webdataset accepts once
    `webdataset_reads_uris` has run."""
    return sorted(str(p) for p in location(folder, options).glob("*.tar"))


def webdataset_reads_uris(options: StorageOptions | None = None) -> None:
    """Let `webdataset.WebDataset` open the URI protocols in `options` (and s3/gs) through fsspec.

    webdataset opens `http(s)://`, `gs://` (via gsutil) and `pipe:` itself but has no `s3://`
    handler; this registers one per protocol that opens the URL with the build's storage options.
    """
    import importlib

    gopen = importlib.import_module("webdataset.gopen")  # the module; `webdataset.gopen` is also a function

    def opener(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any):
        return location(url, options).open(mode)

    for protocol in {"s3", "gs", *(options or {})}:
        gopen.gopen_schemes[protocol] = opener
