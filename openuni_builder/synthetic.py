"""Procedural video clips with exact depth, optical flow and entity ids, for testing annotators.

Scene model (everything deterministic in the seed):

- A pinhole camera with focal length `f` pixels and principal point at the image centre
  (pixel centres at integer coordinates, as in OpenCV). It translates by a constant
  `(Tx, Ty, Tz)` world units per frame (Tz > 0 moves forward).
- Layers are textured fronto-parallel planes: a background plane far away (id 0) and N objects
  (ids 1..N, N in 2..4) shaped as rectangles, ellipses or star polygons, each at its own depth.
  Object k sits at world position `X_k(t) = X_k + V_k t` (lateral) and depth `Z_k(t) = Z_k + W_k t`.
- A texel of layer k is `Z_k / f` world units wide, so at frame 0 it spans one pixel. A texture
  point p is seen at

      x = pp + f * (X_k(t) - C(t)) / D_k(t) + s_k(t) * (p - a_k),   D_k(t) = Z_k(t) - C_z(t),
      s_k(t) = Z_k / D_k(t),

  with C(t) the camera's lateral position and a_k the texture's anchor. Per layer and frame this is
  a similarity map `x = c_k(t) + s_k(t) (p - a_k)`, so camera translation gives real parallax
  (a plane at depth Z moves by -f*Tx/Z) and depth motion gives scale change.
- Frames are rendered far to near with bilinear texture lookup (cv2.warpAffine), so motion is
  genuinely sub-pixel. A pixel belongs to the nearest layer whose bilinearly sampled mask is >= 0.5
  there; `ids`, `depth`, `flow` and the colour all come from that one layer, so they agree exactly.
- Forward flow of a pixel x of layer k is the motion of its surface point,
  `x' - x = c_k(t+1) + s_k(t+1)/s_k(t) (x - c_k(t)) - x`, exact by construction. `flow_valid` marks
  pixels whose surface point is still visible at t+1 (inside the image and not behind a nearer layer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from openuni_builder.clip import ClipSpec
from openuni_builder.pixelplanes.storage import write_npz
from openuni_builder.video_io import VideoEncoding, encode_mp4

#: Near-lossless H.264 for sample videos; 4:4:4 keeps the textures' colour detail.
SAMPLE_ENCODING = VideoEncoding(codec="libx264", pix_fmt="yuv444p", crf=4, preset="medium")

BACKGROUND_DEPTH = 16.0
OBJECT_DEPTH_RANGE = (4.0, 12.0)
SHAPES = ("rectangle", "ellipse", "polygon")


@dataclass
class SyntheticClip:
    """A rendered clip and its ground truth, all frame-aligned.

    frames uint8 (T,H,W,3) RGB; depth float32 (T,H,W) metric, larger = farther; flow float32
    (T-1,H,W,2) forward flow t->t+1 in pixels, (u,v) = (dx,dy); flow_valid bool (T-1,H,W), the
    pixel's surface is still visible at t+1; ids uint16 (T,H,W), 0 = background, 1..N objects.
    """

    frames: np.ndarray
    depth: np.ndarray
    flow: np.ndarray
    flow_valid: np.ndarray
    ids: np.ndarray
    meta: dict[str, Any]


@dataclass
class _Layer:
    """One textured plane: texture (h,w,3) float32, coverage mask (h,w) uint8 0/255, motion."""

    id: int
    shape: str
    texture: np.ndarray
    mask: np.ndarray
    anchor: np.ndarray  # texel that sits at the layer's position
    position: np.ndarray  # world (X, Y) at frame 0
    velocity: np.ndarray  # world (dX, dY) per frame
    z0: float
    dz: float  # world depth change per frame


class _Camera:
    """Pinhole camera translating at a constant velocity (world units per frame)."""

    def __init__(self, focal: float, principal: np.ndarray, velocity: np.ndarray) -> None:
        self.focal, self.principal, self.velocity = focal, principal, velocity

    def depth(self, layer: _Layer, t: float) -> float:
        """Distance along the optical axis from the camera to the layer's plane at frame t."""
        return layer.z0 + layer.dz * t - self.velocity[2] * t

    def similarity(self, layer: _Layer, t: float) -> tuple[np.ndarray, float]:
        """(c, s) with image point x = c + s * (p - anchor) for texture point p at frame t."""
        d = self.depth(layer, t)
        lateral = layer.position + layer.velocity * t - self.velocity[:2] * t
        return self.principal + self.focal * lateral / d, layer.z0 / d


def render(spec: ClipSpec, seed: int, num_objects: int | None = None,
           motion_scale: float = 1.0) -> SyntheticClip:
    """Render a clip of `spec` (frames, size) from `seed`, with exact depth, flow and ids.

    `num_objects` (default: 2..4 from the seed) and `motion_scale` (multiplies every velocity)
    let tests pick easier or harder scenes. At 1.0 the background moves 0.3-0.8 % of the width
    per frame, objects add their own 0.2-0.7 % plus up to 4x the background's parallax, and depth
    changes (camera and objects) stay within about 15 % over the clip, however long.
    """
    if num_objects is not None and not 1 <= num_objects <= 65535:
        raise ValueError(f"num_objects must be in 1..65535, got {num_objects}")
    if motion_scale < 0:
        raise ValueError(f"motion_scale must be >= 0, got {motion_scale}")
    rng = np.random.default_rng(seed)
    h, w, frames_n = spec.height, spec.width, spec.num_frames
    n = int(rng.integers(2, 5)) if num_objects is None else num_objects
    focal = float(w)
    principal = np.array([(w - 1) / 2, (h - 1) / 2])
    camera = _Camera(focal, principal, _camera_velocity(rng, spec, focal, motion_scale))
    objects = [_object_layer(rng, k + 1, depth, spec, camera, motion_scale)
               for k, depth in enumerate(_object_depths(rng, n))]
    background = _background_layer(rng, spec, camera)
    layers = [background, *objects]
    if min(camera.depth(l, frames_n - 1) for l in layers) < 0.2 * OBJECT_DEPTH_RANGE[0]:
        raise ValueError(f"motion_scale {motion_scale} brings a layer (nearly) to the camera; use a smaller one")

    frames = np.empty((frames_n, h, w, 3), np.uint8)
    depth = np.empty((frames_n, h, w), np.float32)
    ids = np.empty((frames_n, h, w), np.uint16)
    flow = np.empty((frames_n - 1, h, w, 2), np.float32)
    valid = np.empty((frames_n - 1, h, w), bool)
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    for t in range(frames_n):
        rgb = np.empty((h, w, 3), np.float32)
        for layer in sorted(layers, key=lambda l: -camera.depth(l, t)):
            box, colour, cover = _sample(layer, *camera.similarity(layer, t), (w, h))
            np.copyto(rgb[box], colour, where=cover[..., None])
            ids[t][box][cover] = layer.id
        frames[t] = np.clip(np.rint(rgb), 0, 255)
        depth[t] = _per_layer(layers, lambda l: camera.depth(l, t))[ids[t]]
        if t > 0:
            flow[t - 1] = _layer_flow(layers, camera, t - 1, ids[t - 1], grid)
            valid[t - 1] = _still_visible(layers, camera, t - 1, ids[t - 1], flow[t - 1] + grid)
    meta = _meta(seed, spec, camera, background, objects)
    return SyntheticClip(frames, depth, flow, valid, ids, meta)


def write_sample(directory: str | Path, spec: ClipSpec, seed: int) -> tuple[Path, Path]:
    """Write `synthetic_<seed>.mp4` and `synthetic_<seed>.gt.npz` into `directory`.

    The video has exactly the spec's frames, fps and size, so `video_io.cut_clip(path, spec)`
    returns it unchanged and the ground truth (depth, flow, flow_valid, ids, meta as a JSON
    string) lines up frame for frame.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    clip = render(spec, seed)
    video = out / f"synthetic_{seed}.mp4"
    gt = out / f"synthetic_{seed}.gt.npz"
    video.write_bytes(encode_mp4(clip.frames, spec.fps, SAMPLE_ENCODING))
    write_npz(gt, {"depth": clip.depth, "flow": clip.flow, "flow_valid": clip.flow_valid, "ids": clip.ids,
                   "meta": np.array(json.dumps(clip.meta))})
    return video, gt


def load_gt(path: str | Path) -> dict[str, Any]:
    """Read a `.gt.npz` written by `write_sample`: arrays plus `meta` decoded from JSON."""
    with np.load(path) as data:
        gt = {k: data[k] for k in data.files if k != "meta"}
        gt["meta"] = json.loads(str(data["meta"]))
    return gt


def _sample(layer: _Layer, c: np.ndarray, s: float, size: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Bilinear colour and coverage (mask >= 0.5) of a layer, on the image box the layer can touch.

    Returns (box, colour, cover) with box the (rows, cols) slices of the image they belong to.
    """
    w, h = size
    th, tw = layer.mask.shape
    lo = np.floor(c + s * (np.array([0.0, 0.0]) - layer.anchor)).astype(int) - 1
    hi = np.ceil(c + s * (np.array([tw - 1.0, th - 1.0]) - layer.anchor)).astype(int) + 2
    x0, y0 = min(max(lo[0], 0), w - 1), min(max(lo[1], 0), h - 1)
    x1, y1 = max(min(hi[0], w), x0 + 1), max(min(hi[1], h), y0 + 1)  # at least one pixel: out of
    box = (slice(y0, y1), slice(x0, x1))  # view, the mask there is empty anyway
    # Box pixel (i, j) is image pixel (x0 + j, y0 + i); its texture point is anchor + (x - c) / s.
    inv = np.array([[1 / s, 0, layer.anchor[0] + (x0 - c[0]) / s],
                    [0, 1 / s, layer.anchor[1] + (y0 - c[1]) / s]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    box_size = (x1 - x0, y1 - y0)
    colour = cv2.warpAffine(layer.texture, inv, box_size, flags=flags, borderMode=cv2.BORDER_REFLECT)
    cover = cv2.warpAffine(layer.mask, inv, box_size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=0) >= 128
    return box, colour, cover


def _per_layer(layers: list[_Layer], value) -> np.ndarray:
    """Lookup table id -> value(layer), to index with an id map."""
    table = np.zeros((max(l.id for l in layers) + 1,) + np.shape(value(layers[0])), np.float32)
    for layer in layers:
        table[layer.id] = value(layer)
    return table


def _layer_flow(layers: list[_Layer], camera: _Camera, t: int, ids: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Exact flow t->t+1: x' = c(t+1) + s(t+1)/s(t) (x - c(t)) of the layer each pixel shows."""
    def offset(layer: _Layer) -> np.ndarray:  # flow = offset + (ratio - 1) * x
        (c0, s0), (c1, s1) = camera.similarity(layer, t), camera.similarity(layer, t + 1)
        return c1 - (s1 / s0) * c0

    growth = _per_layer(layers, lambda l: camera.similarity(l, t + 1)[1] / camera.similarity(l, t)[1] - 1)
    return _per_layer(layers, offset)[ids] + growth[ids][..., None] * grid


def _still_visible(layers: list[_Layer], camera: _Camera, t: int, ids: np.ndarray,
                   target: np.ndarray) -> np.ndarray:
    """Whether each pixel's surface point, moved to `target` at t+1, is in view and unoccluded."""
    h, w = ids.shape
    depth_next = _per_layer(layers, lambda l: camera.depth(l, t + 1))
    own = depth_next[ids]
    x, y = target[..., 0], target[..., 1]
    visible = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    for layer in layers:
        nearer = depth_next[layer.id] < own
        if not nearer.any():
            continue
        c, s = camera.similarity(layer, t + 1)
        px = ((x - np.float32(c[0])) * np.float32(1 / s) + np.float32(layer.anchor[0]))
        py = ((y - np.float32(c[1])) * np.float32(1 / s) + np.float32(layer.anchor[1]))
        cover = cv2.remap(layer.mask, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        visible &= ~((cover >= 128) & nearer)
    return visible


def _camera_velocity(rng: np.random.Generator, spec: ClipSpec, focal: float, scale: float) -> np.ndarray:
    """Lateral speed that moves the background 0.3-0.8 % of the width per frame, plus a dolly that
    covers at most 7 % of the nearest object's distance over the clip."""
    angle = rng.uniform(0, 2 * np.pi)
    bg_pixels = rng.uniform(0.003, 0.008) * spec.width * scale
    lateral = bg_pixels * BACKGROUND_DEPTH / focal * np.array([np.cos(angle), 0.5 * np.sin(angle)])
    forward = rng.uniform(-0.04, 0.07) * OBJECT_DEPTH_RANGE[0] * scale / max(spec.num_frames - 1, 1)
    return np.array([lateral[0], lateral[1], forward])


def _object_depths(rng: np.random.Generator, n: int) -> list[float]:
    """Distinct depths: one per equal slice of the range (log-spaced), in random id order."""
    edges = np.geomspace(*OBJECT_DEPTH_RANGE, n + 1)
    depths = [float(rng.uniform(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo))) for lo, hi in zip(edges, edges[1:])]
    return [depths[i] for i in rng.permutation(n)]


def _object_layer(rng: np.random.Generator, obj_id: int, z0: float, spec: ClipSpec, camera: _Camera,
                  scale: float) -> _Layer:
    """An object centred near the middle of the view at mid-clip, moving by its own velocity."""
    focal, principal = camera.focal, camera.principal
    h, w, mid = spec.height, spec.width, (spec.num_frames - 1) / 2
    size = rng.uniform(0.22, 0.45, 2) * np.array([w, h])
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    tw, th = int(np.ceil(size[0])) + 4, int(np.ceil(size[1])) + 4
    mask = _shape_mask(rng, shape, tw, th)
    texture = _texture(rng, th, tw)
    own_pixels = rng.uniform(0.002, 0.007) * w * scale * _unit(rng)  # image px per frame at depth z0
    velocity = own_pixels * z0 / focal
    dz = rng.uniform(-0.08, 0.08) * z0 * scale / max(spec.num_frames - 1, 1)  # slow approach/recede
    layer = _Layer(obj_id, shape, texture, mask, np.array([(tw - 1) / 2, (th - 1) / 2]), np.zeros(2),
                   velocity, z0, dz)
    # Choose the frame-0 position so that the object is seen at `centre_mid` halfway through.
    centre_mid = principal + rng.uniform(-0.2, 0.2, 2) * np.array([w, h])
    seen_mid, _ = camera.similarity(layer, mid)
    layer.position = (centre_mid - seen_mid) * camera.depth(layer, mid) / focal
    return layer


def _background_layer(rng: np.random.Generator, spec: ClipSpec, camera: _Camera) -> _Layer:
    """A static far plane whose texture covers the view over the whole clip (plus a margin)."""
    layer = _Layer(0, "plane", np.zeros((1, 1, 3), np.float32), np.zeros((1, 1), np.uint8),
                   np.zeros(2), np.zeros(2), np.zeros(2), BACKGROUND_DEPTH, 0.0)
    corners = np.array([[0, 0], [spec.width - 1, spec.height - 1]], float)
    seen = []
    for t in (0, spec.num_frames - 1):  # (x - c(t)) / s(t) is linear in t: extremes at the ends
        c, s = camera.similarity(layer, t)
        seen.append((corners - c) / s)
    seen = np.concatenate(seen)
    lo, hi = np.floor(seen.min(0)) - 4, np.ceil(seen.max(0)) + 4
    tw, th = int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1
    layer.texture = _texture(rng, th, tw)
    layer.mask = np.full((th, tw), 255, np.uint8)
    layer.anchor = -lo
    return layer


def _shape_mask(rng: np.random.Generator, shape: str, w: int, h: int) -> np.ndarray:
    """uint8 0/255 mask of a rectangle, ellipse or star polygon filling a (h, w) texture."""
    mask = np.zeros((h, w), np.uint8)
    cx, cy, rx, ry = (w - 1) / 2, (h - 1) / 2, (w - 4) / 2, (h - 4) / 2
    if shape == "rectangle":
        mask[2:h - 2, 2:w - 2] = 255
    elif shape == "ellipse":
        yy, xx = np.mgrid[0:h, 0:w]
        mask[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = 255
    else:
        k = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radius = rng.uniform(0.55, 1.0, k)
        pts = np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], -1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    return mask


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """float32 (h,w,3) in 0..255: multi-scale smooth noise, optionally stripes, between two colours.

    The finest octave has a period of a few texels, so there is texture at every scale an optical
    flow method looks at, while staying smooth enough that bilinear lookup is accurate.
    """
    pattern = sum(amp * _smooth_noise(rng, h, w, cell) for amp, cell in ((1.0, 24), (0.6, 8), (0.35, 3)))
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta, period = rng.uniform(0, np.pi), rng.uniform(5, 14)
        stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + rng.uniform(0, 2 * np.pi))
        pattern = pattern + 0.8 * stripes
    pattern = (pattern - pattern.min()) / max(float(np.ptp(pattern)), 1e-6)
    dark, bright = rng.uniform(0, 90, 3), rng.uniform(150, 255, 3)
    if rng.random() < 0.5:
        dark, bright = bright, dark
    rgb = dark + (bright - dark) * pattern[..., None]
    return rgb.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Gaussian noise on a grid of `cell` texels, upsampled bicubically: zero mean, unit-ish std."""
    coarse = rng.standard_normal((h // cell + 3, w // cell + 3)).astype(np.float32)
    up = cv2.resize(coarse, ((w // cell + 3) * cell, (h // cell + 3) * cell), interpolation=cv2.INTER_CUBIC)
    return up[cell:cell + h, cell:cell + w]


def _unit(rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


def _meta(seed: int, spec: ClipSpec, camera: _Camera, background: _Layer, objects: list[_Layer]) -> dict[str, Any]:
    """JSON-able scene description: enough to recompute every layer's motion by hand."""
    def image_velocity(layer: _Layer) -> list[float]:
        c0, _ = camera.similarity(layer, 0)
        c1, _ = camera.similarity(layer, 1)
        return [round(float(v), 6) for v in c1 - c0]

    return {
        "generator": "openuni_builder.synthetic",
        "seed": int(seed),
        "spec": {"num_frames": spec.num_frames, "fps": spec.fps, "height": spec.height, "width": spec.width},
        "focal_px": camera.focal,
        "principal_point": [float(v) for v in camera.principal],
        "camera": {"velocity_per_frame": [float(v) for v in camera.velocity]},
        "background": {"id": 0, "depth": background.z0, "image_velocity_px_frame0": image_velocity(background)},
        "num_objects": len(objects),
        "objects": [{
            "id": o.id,
            "shape": o.shape,
            "depth": o.z0,
            "depth_velocity_per_frame": o.dz,
            "position": [float(v) for v in o.position],
            "velocity_per_frame": [float(v) for v in o.velocity],
            "image_velocity_px_frame0": image_velocity(o),
            "scale_per_frame0": round(camera.similarity(o, 1)[1], 8),
        } for o in objects],
    }
