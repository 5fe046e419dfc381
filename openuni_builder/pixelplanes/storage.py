"""How Pixelplanes videos and raw sidecars are stored.

Videos: the measured storage choices (bench/pixelplanes_storage.py, table in docs/PIXELPLANES.md);
each modality's record (`openuni_builder.modalities`) names its default, picked from those numbers. Sidecars: one compressed npz per
modality with each known array cast to its compact lossless-enough dtype.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from openuni_builder.modalities import get, modalities
from openuni_builder.video_io import VideoEncoding

STORAGES: dict[str, VideoEncoding] = {
    "h264_420": VideoEncoding("libx264", "yuv420p", crf=18),
    "h264_444": VideoEncoding("libx264", "yuv444p", crf=18),
    "x264rgb_lossless": VideoEncoding("libx264rgb", "rgb24", crf=None, qp=0, preset="medium"),
    "x264rgb_lossless_fast": VideoEncoding("libx264rgb", "rgb24", crf=None, qp=0, preset="superfast"),
    "ffv1": VideoEncoding("ffv1", "bgr0", crf=None, preset=None),
}


def raw_dtypes() -> dict[str, np.dtype]:
    """Sidecar dtype of each raw array key the registered modalities produce (their records'
    `raw`; docs/PIXELPLANES.md, "Raw sidecars"), fixed-point keys left out."""
    return {key: np.dtype(dtype) for m in modalities().values() for key, dtype in m.raw.items()
            if key not in m.fixed_point}


def fixed_point() -> dict[str, int]:
    """Raw keys stored as round(value * scale) int16, with their scale (the records' `fixed_point`)."""
    return {key: scale for m in modalities().values() for key, scale in m.fixed_point.items()}


# Deflate level of the npz: 1 is 3.8x faster than numpy's savez_compressed (level 6) on a real
# 49-frame 256² flow sidecar (0.15 s vs 0.57 s) for 14% more bytes (4.9 vs 4.3 MB); the encode
# stage is the CPU bottleneck of a build (docs/BENCHMARKS.md), so speed wins.
RAW_COMPRESSLEVEL = 1


def storage(modality: str, choice: str | None = None) -> VideoEncoding:
    """The VideoEncoding for a modality's Pixelplanes video: `choice` or the measured default."""
    default = get(modality).storage
    if default is None:
        raise KeyError(f"modality {modality!r} has no Pixelplanes video")
    name = choice or default
    if name not in STORAGES:
        raise KeyError(f"unknown Pixelplanes storage {name!r}; known: {', '.join(STORAGES)}")
    return STORAGES[name]


def save_raw(raw: dict[str, np.ndarray]) -> bytes:
    """One deflated npz of a modality's raw arrays (a standard .npz: `numpy.load` reads it), known
    keys cast to their sidecar dtype.

    Refuses casts that would change values: integers out of the target range, floats that
    overflow float16.
    """
    arrays, dtypes, fixed = {}, raw_dtypes(), fixed_point()
    for key, value in raw.items():
        arr = np.asarray(value)
        want = dtypes.get(key)
        if key in fixed:
            arr = _to_fixed(key, arr, fixed[key])
        elif want is not None and arr.dtype != want:
            arr = _cast(key, arr, want)
        arrays[key] = arr
    buf = io.BytesIO()
    write_npz(buf, arrays)
    return buf.getvalue()


def write_npz(target: str | Path | BinaryIO, arrays: dict[str, np.ndarray], level: int = RAW_COMPRESSLEVEL) -> None:
    """A standard deflated .npz (what `numpy.load` reads) at deflate `level`; numpy's own
    `savez_compressed` is fixed at level 6, 3.8x slower than 1 on flow (see RAW_COMPRESSLEVEL)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as npz:
        for key, arr in arrays.items():
            with npz.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arr), allow_pickle=False)


def load_raw(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a sidecar written by `save_raw` (no pickles)."""
    fixed = fixed_point()
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key].astype(np.float32) / fixed[key]
                if key in fixed and npz[key].dtype == np.int16 else npz[key] for key in npz.files}


def _to_fixed(key: str, arr: np.ndarray, scale: int) -> np.ndarray:
    """round(arr * scale) as int16. In float32: the scales are powers of two, so the product is
    exact and the result equals float64's, at half the passes' cost."""
    fixed = np.rint(arr.astype(np.float32, copy=False) * np.float32(scale))
    if not np.isfinite(fixed).all():
        raise ValueError(f"raw[{key!r}] holds NaN or inf (or values beyond float32)")
    limit = np.iinfo(np.int16).max
    if fixed.size and max(fixed.max(), -fixed.min()) > limit:
        raise ValueError(f"raw[{key!r}] exceeds the fixed-point range +-{limit / scale:g}")
    return fixed.astype(np.int16)


def _cast(key: str, arr: np.ndarray, want: np.dtype) -> np.ndarray:
    if want.kind in "ui":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(f"raw[{key!r}] has values in [{arr.min()}, {arr.max()}], "
                             f"outside {want} [{info.min}, {info.max}]")
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"raw[{key!r}] must hold whole numbers to store as {want}")
        return arr.astype(want)
    with np.errstate(over="ignore"):
        out = arr.astype(want)
    if not np.isfinite(out[np.isfinite(arr)]).all():
        raise ValueError(f"raw[{key!r}] overflows {want} (|value| > {np.finfo(want).max})")
    return out
