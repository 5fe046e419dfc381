"""Raw arrays as a lossless 16-bit FFV1 video in Matroska: the compact exact sidecar format.

Why FFV1: its per-pixel median prediction and context-modelled range coder suit smooth 2-D
fields such as optical flow. On real DIS flow (49 frames, 256², int16 1/64 px fixed point) it
is 3.2-4.1x smaller than the deflate-1 npz and as fast to write (bench/storage_pareto.py,
docs/PIXELPLANES.md "Storage profiles"); no zip method `numpy.load` reads (deflate, bzip2, LZMA)
comes within 1.5x of it. FFV1 (RFC 9043) in Matroska is its standard container; PyAV, the
ffmpeg CLI and every FFmpeg-based reader decode it, the same decoder the shards' mp4 members
already need.

Layout: one gray (8-bit) or gray16le (16-bit) frame per 2-D plane, planes in C order of the
array with its leading axes flattened: a (T, H, W) array is T frames, a (T, H, W, C) array is
T*C frames (frame t*C + c is channel c of t). int16 is stored offset-binary (value + 32768) and
float16 as its bit pattern, so every supported dtype is a 16-bit unsigned plane, exactly. The
container's metadata tag OPENUNI_RAW holds, in stream order, the JSON list of each array's
key, dtype and shape.
"""

from __future__ import annotations

import io
import json

import av
import numpy as np

MAGIC = b"\x1a\x45\xdf\xa3"  # EBML header: every Matroska file starts with it
TAG = "openuni_raw"
DTYPES = ("uint8", "uint16", "int16", "float16")
# FFV1 level 3 (multithreaded slices, per-slice CRCs); its default range coder measured the
# smallest of the coder/context options on real flow (1.515 MB vs 1.527 MB with context=1).
# One thread, as for the Pixelplanes videos (video_io.VideoEncoding.options).
OPTIONS = {"level": "3", "threads": "1"}


def supports(arr: np.ndarray) -> bool:
    """Whether `arr` can go in an FFV1 sidecar: a supported dtype with at least (N, H, W) axes."""
    return arr.dtype.name in DTYPES and arr.ndim in (3, 4) and arr.size > 0


def write(arrays: dict[str, np.ndarray]) -> bytes:
    """One Matroska file with a lossless FFV1 stream per array (see the module doc for the layout)."""
    described, buf = [], io.BytesIO()
    # bitexact: Matroska otherwise writes a random segment UID, so the same arrays would give other
    # bytes on every write (and a rerun write task other shard bytes).
    with av.open(buf, mode="w", format="matroska", options={"fflags": "+bitexact"}) as container:
        planes_of = []
        for key, arr in arrays.items():
            if not supports(arr):
                raise ValueError(f"raw[{key!r}] ({arr.dtype}, shape {arr.shape}) cannot be an FFV1 sidecar: "
                                 f"it needs dtype in {DTYPES} and (N, H, W) or (N, H, W, C); store it as npz")
            planes, fmt = _planes(arr)
            stream = container.add_stream("ffv1", rate=1)
            stream.width, stream.height, stream.pix_fmt = planes.shape[2], planes.shape[1], fmt
            stream.options = dict(OPTIONS)
            planes_of.append((stream, planes, fmt))
            described.append({"key": key, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        container.metadata[TAG] = json.dumps(described)
        for stream, planes, fmt in planes_of:
            for plane in planes:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(plane, format=fmt)))
            container.mux(stream.encode())
    return buf.getvalue()


def layout(data: bytes) -> list[dict]:
    """Each array's key, dtype and shape from the metadata alone (nothing is decoded)."""
    with av.open(io.BytesIO(data)) as container:
        tags = {k.lower(): v for k, v in container.metadata.items()}
    if TAG not in tags:
        raise ValueError("not an OpenUni FFV1 raw sidecar (no OPENUNI_RAW metadata tag)")
    return json.loads(tags[TAG])


def read(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a sidecar written by `write`, in their stored dtypes and shapes."""
    described = layout(data)
    with av.open(io.BytesIO(data)) as container:
        streams = list(container.streams.video)
        if len(streams) != len(described):
            raise ValueError(f"FFV1 sidecar lists {len(described)} arrays but has {len(streams)} streams")
        planes: list[list[np.ndarray]] = [[] for _ in streams]
        for packet in container.demux(*streams):
            planes[packet.stream.index].extend(f.to_ndarray() for f in packet.decode())
    return {d["key"]: _array(np.stack(p), d) for d, p in zip(described, planes)}


def _planes(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """(N, H, W) planes of `arr` as uint8 or uint16, and their PyAV pixel format."""
    if arr.ndim == 4:  # (N, H, W, C) -> (N*C, H, W): channel planes are smooth, interleaved ones are not
        arr = np.moveaxis(arr, -1, 1).reshape(-1, *arr.shape[1:3])
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr), "gray"
    if arr.dtype == np.int16:
        return np.ascontiguousarray(arr).view(np.uint16) ^ np.uint16(0x8000), "gray16le"
    return np.ascontiguousarray(arr).view(np.uint16), "gray16le"


def _array(planes: np.ndarray, described: dict) -> np.ndarray:
    dtype, shape = np.dtype(described["dtype"]), tuple(described["shape"])
    count = shape[0] if len(shape) == 3 else shape[0] * shape[3]
    if len(planes) != count:
        raise ValueError(f"FFV1 sidecar {described['key']!r}: {len(planes)} planes, expected {count}")
    if dtype == np.int16:
        planes = (planes ^ np.uint16(0x8000)).view(np.int16)
    elif dtype != np.uint8:
        planes = planes.astype(np.uint16, copy=False).view(dtype)
    if len(shape) == 4:
        return np.ascontiguousarray(np.moveaxis(planes.reshape(shape[0], shape[3], *shape[1:3]), 1, -1))
    return planes.reshape(shape)
