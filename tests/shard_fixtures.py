"""Small shards in the builder's format (docs/FORMAT.md) for trainer tests.

Each clip is a textured square moving over a gradient; every modality is derived from the same
scene (depth: square near, background far; flow: the square's velocity; seg: its mask; skeleton:
its centre as a keypoint; densepose: its mask as body part 1), stored as a raw npz following the
raw conventions plus a simple RGB rendering, frame-aligned with the clip. The lead will switch this
fixture to the real builder once it lands.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from openuni_builder.random_models import write_random_model

from openuni_builder.video_io import encode_mp4

ALL = ("depth", "flow", "densepose", "skeleton", "seg")
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 220, 40)}
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def _scene(i: int, t: int, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int], str]:
    """Frames (T, S, S, 3), square masks (T, S, S), velocity (dx, dy) and caption of clip i."""
    colour = list(COLOURS)[i % len(COLOURS)]
    direction = list(DIRECTIONS)[(i // len(COLOURS) + i) % len(DIRECTIONS)]
    dx, dy = DIRECTIONS[direction]
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx * 4 % 256, yy * 4 % 256, np.full_like(xx, 90)], -1).astype(np.uint8)
    texture = ((xx // 2 + yy // 2) % 2 * 60).astype(np.int16)[..., None]
    side, frames, masks = size // 3, [], []
    for k in range(t):
        x0, y0 = size // 3 + dx * k, size // 3 + dy * k
        mask = (xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)
        frame = background.copy()
        frame[mask] = np.clip(np.array(COLOURS[colour]) + texture[mask] - 30, 0, 255)
        frames.append(frame)
        masks.append(mask)
    return np.stack(frames), np.stack(masks), (dx, dy), f"a {colour} square moving {direction}"


def _modality(name: str, masks: np.ndarray, velocity: tuple[int, int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw arrays and a frame-aligned RGB rendering of one modality."""
    t, h, w = masks.shape
    grey = lambda x: np.repeat(x[..., None], 3, -1).astype(np.uint8)  # noqa: E731
    if name == "depth":
        disparity = np.where(masks, 1.0, 0.25).astype(np.float32)
        return {"disparity": disparity}, grey(disparity * 255)
    if name == "flow":
        flow = np.zeros((t - 1, h, w, 2), np.float32)
        flow[masks[:-1]] = velocity
        aligned = np.concatenate([flow, flow[-1:]])  # T frames: the last frame repeats the last flow
        video = np.concatenate([128 + 40 * aligned, np.full((t, h, w, 1), 128.0)], axis=-1)
        return {"flow": flow}, np.clip(video, 0, 255).astype(np.uint8)
    if name == "seg":
        return {"ids": masks.astype(np.uint16)}, np.where(masks[..., None], (255, 120, 0), (0, 0, 0)).astype(np.uint8)
    if name == "densepose":
        iuv = np.zeros((t, h, w, 3), np.uint8)
        iuv[masks] = (1, 128, 128)
        return {"iuv": iuv}, np.where(masks[..., None], (20, 128, 128), (0, 0, 0)).astype(np.uint8)
    if name == "skeleton":
        keypoints = np.zeros((t, 1, 18, 3), np.float32)
        video = np.zeros((t, h, w, 3), np.uint8)
        for k in range(t):
            ys, xs = np.nonzero(masks[k])
            cx, cy = int(xs.mean()), int(ys.mean())
            keypoints[k, 0, 1] = (cx, cy, 1.0)
            video[k, max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 2] = (255, 0, 85)
        return {"keypoints": keypoints}, video
    raise ValueError(name)


def write_shards(root: str | Path, n_samples: int = 6, num_frames: int = 9, size: int = 32, fps: float = 8.0,
                 modalities: tuple[str, ...] = ALL, per_shard: int = 3) -> Path:
    """Write `n_samples` clips as OUT/shards/openuni-%06d.tar; returns the shards folder."""
    shards = Path(root) / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    for start in range(0, n_samples, per_shard):
        with wds.TarWriter(str(shards / f"openuni-{start // per_shard:06d}.tar")) as sink:
            for i in range(start, min(start + per_shard, n_samples)):
                frames, masks, velocity, caption = _scene(i, num_frames, size)
                key = f"fixture-clip_{i}-{i:010d}"
                meta = {"key": key, "num_frames": num_frames, "fps": fps, "height": size, "width": size,
                        "caption": caption, "modalities": {m: {} for m in modalities}}
                sample = {"__key__": key, "mp4": encode_mp4(frames, fps), "txt": caption, "json": json.dumps(meta)}
                for m in modalities:
                    raw, video = _modality(m, masks, velocity)
                    buf = io.BytesIO()
                    np.savez_compressed(buf, **raw)
                    sample[f"{m}.mp4"], sample[f"{m}.npz"] = encode_mp4(video, fps), buf.getvalue()
                sink.write(sample)
    return shards


# pytest fixtures (imported by the trainer tests; kept out of conftest.py so they do not collide
# with the builder's shared fixtures).

@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("build"), n_samples=6)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("models")
    write_random_model("all-minilm-l6-v2", cache=cache)
    return cache


@pytest.fixture
def tiny_cache(model_cache, monkeypatch) -> Path:
    """The tiny random BERT registered as the trainer's text encoder (the same loading code path)."""
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(model_cache))
    return model_cache
