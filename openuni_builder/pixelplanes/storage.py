"""How Pixelplanes videos and raw sidecars are stored.

Videos: the measured storage choices (bench/pixelplanes_storage.py, table in docs/PIXELPLANES.md);
each modality's record (`openuni_builder.modalities`) names its default, picked from those numbers.
Sidecars: each known array cast to the compact lossless-enough dtype its record names, then written
as a standard npz or as a lossless FFV1 video (raw_ffv1.py). Profiles (`PROFILES`) say which video
storage and sidecar format each modality gets; the default was chosen from bench/storage_pareto.py
(docs/PIXELPLANES.md, "Storage profiles").
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Mapping

import numpy as np

import openuni_builder.pixelplanes.raw_ffv1 as raw_ffv1
from openuni_builder.modalities import get, modalities
from openuni_builder.video_io import VideoEncoding


STORAGES: dict[str, VideoEncoding] = {
    "h264_420": VideoEncoding("libx264", "yuv420p", crf=18),
    "h264_444": VideoEncoding("libx264", "yuv444p", crf=18),
    "x264rgb_lossless": VideoEncoding("libx264rgb", "rgb24", crf=None, qp=0, preset="medium"),
    "x264rgb_lossless_fast": VideoEncoding("libx264rgb", "rgb24", crf=None, qp=0, preset="superfast"),
    "ffv1": VideoEncoding("ffv1", "bgr0", crf=None, preset=None),
    # Near-lossless: x264rgb (no YUV conversion) at qp 4. On 3 real DIS flows it adds 0.007 px to
    # the flow video's mean EPE for 16% fewer bytes than the fast lossless preset; 4:4:4 YUV at
    # crf 18 adds 0.22 px (bench/storage_pareto.py).
    "x264rgb_qp4_fast": VideoEncoding("libx264rgb", "rgb24", crf=None, qp=4, preset="superfast"),
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


# Sidecar formats and the member suffix each is written under (KEY.<modality>.<suffix>).
RAW_FORMATS: dict[str, str] = {"npz": "npz", "ffv1": "raw.mkv"}


@dataclass(frozen=True)
class Profile:
    """One named storage choice for a build. `video`: Pixelplanes storages (keys of STORAGES) that
    replace the records' defaults; `raw`: the sidecar format of every modality ("npz"), each
    record's own `raw_format` ("record"), or None for no sidecars."""

    name: str
    description: str
    raw: str | None
    video: Mapping[str, str] = field(default_factory=dict)

    def video_storage(self, modality: str) -> str:
        default = get(modality).storage
        if default is None:
            raise KeyError(f"modality {modality!r} has no Pixelplanes video")
        return self.video.get(modality, default)

    def raw_format(self, modality: str) -> str | None:
        get(modality)  # a KeyError naming the known modalities
        return get(modality).raw_format if self.raw == "record" else self.raw


PROFILES: dict[str, Profile] = {p.name: p for p in (
    # The previous default, member for member: readers of earlier builds work unchanged.
    Profile("archive", "everything lossless: lossless Pixelplanes videos, raw sidecars as npz "
            "(KEY.<m>.npz, what numpy.load reads)", raw="npz"),
    # The default: on the bundled real clips (RGB + DIS flow, 49 frames at 256²) 0.36-0.38x the
    # bytes per sample of the previous default (npz sidecars), for the same exact values.
    Profile("standard", "lossless Pixelplanes videos and exact raw sidecars; sidecars of image-like "
            "arrays (flow, depth, seg ids, DensePose IUV) as lossless 16-bit FFV1 (KEY.<m>.raw.mkv), "
            "skeleton keypoints as npz", raw="record"),
    Profile("train", "what UnityVideo-style trainers read: the lossless Pixelplanes videos, no raw sidecars",
            raw=None),
    # Depth's lossless colormap video is its largest member (1.8 MB on the stand-in, more than its
    # FFV1 sidecar); 4:4:4 crf 18 is 17x smaller for AbsRel 0.0092 instead of 0.0036 (stand-in).
    # Flat-colour videos (seg, DensePose) stay lossless: near-lossless breaks their ids and parts.
    Profile("compact", "train, with the flow video near-lossless (x264rgb qp 4: +0.007 px mean EPE) and "
            "the depth video lossy 4:4:4 (h264_444: AbsRel 0.0029-0.0092 instead of 0.0024-0.0036)",
            raw=None, video={"flow": "x264rgb_qp4_fast", "depth": "h264_444"}),
)}
DEFAULT_PROFILE = "standard"


def get_profile(name: str | None = None) -> Profile:
    """The named storage profile (DEFAULT_PROFILE when None)."""
    name = name or DEFAULT_PROFILE
    if name not in PROFILES:
        raise KeyError(f"unknown storage profile {name!r}; known: {', '.join(PROFILES)}")
    return PROFILES[name]


def storage(modality: str, choice: str | None = None, profile: str | None = None) -> VideoEncoding:
    """The VideoEncoding for a modality's Pixelplanes video: `choice`, else the profile's."""
    name = choice or get_profile(profile).video_storage(modality)
    if name not in STORAGES:
        raise KeyError(f"unknown Pixelplanes storage {name!r}; known: {', '.join(STORAGES)}")
    return STORAGES[name]


def raw_member(modality: str, profile: str | None = None) -> str | None:
    """The shard member that holds a modality's raw sidecar under a profile (e.g. "flow.raw.mkv"),
    or None when the profile stores no sidecar for it."""
    fmt = get_profile(profile).raw_format(modality)
    return None if fmt is None else f"{modality}.{RAW_FORMATS[fmt]}"


def save_raw(raw: dict[str, np.ndarray], modality: str | None = None, profile: str | None = None) -> bytes:
    """A modality's raw arrays as sidecar bytes, known keys cast to their sidecar dtype, in the
    profile's format for `modality` (without a modality: npz, a standard .npz `numpy.load` reads).

    Refuses casts that would change values: integers out of the target range, floats that
    overflow float16; and a profile that stores no sidecar for the modality.
    """
    fmt = "npz"
    if modality is not None:
        fmt = get_profile(profile).raw_format(modality)
        if fmt is None:
            raise ValueError(f"storage profile {get_profile(profile).name!r} stores no {modality} sidecar")
    arrays = sidecar_arrays(raw)
    if fmt == "ffv1":
        return raw_ffv1.write(arrays)
    buf = io.BytesIO()
    write_npz(buf, arrays)
    return buf.getvalue()


def sidecar_arrays(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays a sidecar stores: known keys in their sidecar dtype or fixed point, others as given."""
    arrays, dtypes, fixed = {}, raw_dtypes(), fixed_point()
    for key, value in raw.items():
        arr = np.asarray(value)
        want = dtypes.get(key)
        if key in fixed:
            arr = _to_fixed(key, arr, fixed[key])
        elif want is not None and arr.dtype != want:
            arr = _cast(key, arr, want)
        arrays[key] = arr
    return arrays


def write_npz(target: str | Path | BinaryIO, arrays: dict[str, np.ndarray], level: int | None = RAW_COMPRESSLEVEL,
              method: int = zipfile.ZIP_DEFLATED) -> None:
    """A standard .npz (what `numpy.load` reads), deflated at `level`; numpy's own
    `savez_compressed` is fixed at level 6, 3.8x slower than 1 on flow (see RAW_COMPRESSLEVEL).
    `method` may be any zip method numpy.load reads (bzip2, LZMA: bench/storage_pareto.py)."""
    with zipfile.ZipFile(target, "w", method, compresslevel=level) as npz:
        for key, arr in arrays.items():
            with npz.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(arr), allow_pickle=False)


def load_raw(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a sidecar written by `save_raw` in any format (told apart by their first
    bytes; no pickles), fixed-point arrays back in float32 units."""
    if data[:4] == raw_ffv1.MAGIC:
        stored = raw_ffv1.read(data)
    else:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            stored = {key: npz[key] for key in npz.files}
    fixed = fixed_point()
    return {key: arr.astype(np.float32) / fixed[key] if key in fixed and arr.dtype == np.int16 else arr
            for key, arr in stored.items()}


def raw_layout(data: bytes) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Stored dtype and shape of each array of a sidecar in any format, without decoding it
    (what a dataset card lists for a raw member)."""
    if data[:4] == raw_ffv1.MAGIC:
        return {d["key"]: (d["dtype"], tuple(d["shape"])) for d in raw_ffv1.layout(data)}
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as npz:
        for name in npz.namelist():
            with npz.open(name) as fh:
                major, _ = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(fh)
            out[name.removesuffix(".npy")] = (dtype.name, shape)
    return out


def sample_raw(sample: Mapping[str, bytes], modality: str) -> dict[str, np.ndarray] | None:
    """A modality's raw arrays from a decoded sample's members (webdataset-style: extension ->
    bytes), whichever sidecar format the build wrote; None when the sample has no sidecar."""
    for suffix in RAW_FORMATS.values():
        data = sample.get(f"{modality}.{suffix}")
        if data is not None:
            return load_raw(data)
    return None


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
