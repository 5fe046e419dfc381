"""Proof that the annotation quality scores (openuni_builder/quality.py) catch broken annotations.

On synthetic clips with exact ground truth (openuni_builder/synthetic.py), the exact annotations
are the good ones; each corruption kind breaks one modality of them in a known way:

- flow_x2, flow_shift, flow_sign: flow scaled by 2, one frame out of step (pair t gets pair
  t+1's flow, the last pair repeats), sign-flipped;
- depth_flicker: disparity times a random per-frame scale (log-normal, sigma 0.1);
- seg_swap: two entities trade ids from a random mid-clip frame on;
- skeleton_offset: every keypoint moved 20 px in a random direction.

The clips have no people, so one object stands in for a person: its seg entity is labelled
"person", its mask is the DensePose body (parts by height) and 18 keypoints are points of its
surface carried along by the exact flow (score 0 where they are occluded) plus 1.5 px noise.
The stand-in is the object covering most of the first frame.

Per kind, the AUROC of the score meant to catch it (the chance that a corrupted clip scores
worse than a good one), and of every other score of that modality; then `min_auroc` over the
kinds, `met` when it is >= 0.95. Last, the Spearman correlation of the flow scores with the true
EPE (on pixels still visible at t+1) of the flow annotator's own output (OpenCV DIS, presets fast
and medium) on the clean clips.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/quality.py [--clips 16] [--fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from annotators.flow import DisFlow  # noqa: E402
from bench.harness import emit  # noqa: E402
from openuni_builder.clip import ClipSpec  # noqa: E402
from openuni_builder.metrics import epe  # noqa: E402
from openuni_builder.quality import SCORES, quality_scores  # noqa: E402
from openuni_builder.synthetic import SyntheticClip, render  # noqa: E402

TARGET_AUROC = 0.95
#: DIS presets whose flow the EPE correlation scores. Not ultrafast: that is the scores' own
#: reference motion, against which its flow is consistent by construction.
EPE_PRESETS = ("fast", "medium")
OFFSET_PX = 20.0
FLICKER_SIGMA = 0.1

Annotations = dict[str, dict[str, np.ndarray]]

# Corruption kind -> (modality it breaks, the score meant to catch it).
DETECTORS = {
    "flow_x2": ("flow", "flow_warp_error"),
    "flow_shift": ("flow", "flow_step_ratio"),
    "flow_sign": ("flow", "flow_warp_error"),
    "depth_flicker": ("depth", "depth_flicker"),
    "seg_swap": ("seg", "seg_temporal_iou_min"),
    "skeleton_offset": ("skeleton", "person_agreement"),
}
MODALITY_SCORES = {
    "flow": ("flow_warp_error", "flow_warp_gain", "flow_fb_inconsistent", "flow_step_ratio"),
    "depth": ("depth_flicker",),
    "seg": ("seg_temporal_iou", "seg_temporal_iou_min", "seg_id_churn"),
    "skeleton": ("skeleton_in_densepose", "skeleton_in_seg", "person_agreement"),
}
HIGHER_IS_BETTER = {name for name, text in SCORES.items() if "higher is better" in text}


def varying_speed(spec: ClipSpec, seed: int, rng: np.random.Generator) -> tuple[SyntheticClip, SyntheticClip]:
    """A clip of `spec` whose motion speeds up and slows down, and the constant-speed clip of
    the same scene it was taken from (its first `spec.num_frames` frames).

    Frames are taken at strides of 1 or 2 from a rendered clip about twice as long; the flow of
    a 2-stride pair is composed from the rendered pairs, f(x) = f1(x) + f2(x + f1(x)), exact
    wherever the point is visible in the skipped frame. The renderer's motion is constant, so
    there a flow one frame out of step differs from the right one only along object edges; a
    changing speed is what makes that mistake matter."""
    import cv2

    strides = rng.integers(1, 3, spec.num_frames - 1)
    length = int(strides.sum()) + 1
    long = render(ClipSpec(length + (-(length - 1)) % 4, spec.fps, spec.height, spec.width), seed)
    index = np.concatenate([[0], np.cumsum(strides)])
    grid = np.stack(np.meshgrid(np.arange(spec.width, dtype=np.float32),
                                np.arange(spec.height, dtype=np.float32)), -1)
    flows, valid = [], []
    for start, stride in zip(index[:-1], strides):
        f, v = long.flow[start].copy(), long.flow_valid[start].copy()
        for k in range(1, stride):
            target = grid + f
            f += cv2.remap(long.flow[start + k], target, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            v &= cv2.remap(long.flow_valid[start + k].astype(np.uint8), target, None, cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        flows.append(f)
        valid.append(v)
    varying = SyntheticClip(long.frames[index], long.depth[index], np.stack(flows), np.stack(valid),
                            long.ids[index], {**long.meta, "strides": strides.tolist()})
    n = spec.num_frames
    steady = SyntheticClip(long.frames[:n], long.depth[:n], long.flow[:n - 1], long.flow_valid[:n - 1],
                           long.ids[:n], long.meta)
    return varying, steady


def good_annotations(clip: SyntheticClip, rng: np.random.Generator) -> tuple[Annotations, dict[str, dict]]:
    """The exact annotations in the annotators' raw layouts, plus the seg meta naming the person.

    The disparity is 1/depth under a random affine map: relative disparity has no fixed scale,
    and the scores must not care."""
    disparity = rng.uniform(0.5, 4.0) / clip.depth + rng.uniform(0.0, 0.2)
    person = int(np.argmax(np.bincount(clip.ids[0].ravel(), minlength=2)[1:])) + 1  # largest object at frame 0
    raws = {"flow": {"flow": clip.flow}, "depth": {"disparity": disparity.astype(np.float32)},
            "seg": {"ids": clip.ids}, "skeleton": {"keypoints": person_keypoints(clip, person, rng)},
            "densepose": {"iuv": person_iuv(clip, person)}}
    labels = [{"id": int(i), "label": "person" if i == person else None} for i in np.unique(clip.ids) if i]
    return raws, {"seg": {"num_entities": len(labels), "entities": labels}}


def person_keypoints(clip: SyntheticClip, person: int, rng: np.random.Generator, noise_px: float = 1.5) -> np.ndarray:
    """(T, 1, 18, 3): 18 surface points of the person object, carried by the exact flow."""
    import cv2

    T, H, W = clip.ids.shape
    body = (clip.ids[0] == person).astype(np.uint8)
    inner = cv2.erode(body, np.ones((5, 5), np.uint8))  # away from the edge, so the noise stays on it
    ys, xs = np.nonzero(inner if inner.any() else body)
    pick = rng.choice(len(xs), 18, replace=len(xs) < 18)
    xy = np.stack([xs[pick], ys[pick]], -1).astype(np.float32)
    out = np.zeros((T, 1, 18, 3), np.float32)
    for t in range(T):
        col, row = np.clip(np.rint(xy).astype(int), 0, [W - 1, H - 1]).T
        seen = clip.ids[t, row, col] == person
        out[t, 0, :, :2] = xy + rng.normal(0, noise_px, xy.shape)
        out[t, 0, :, 2] = np.where(seen, 0.9, 0.0)
        if t < T - 1:
            xy = xy + clip.flow[t, row, col]
    return out


def person_iuv(clip: SyntheticClip, person: int) -> np.ndarray:
    """(T, H, W, 3) uint8: the person object's mask as the body, parts 1..24 by image row."""
    T, H, W = clip.ids.shape
    body = clip.ids == person
    part = (1 + np.arange(H) * 24 // H).astype(np.uint8)[None, :, None]
    iuv = np.zeros((T, H, W, 3), np.uint8)
    iuv[..., 0] = np.where(body, part, 0)
    iuv[..., 1:] = np.where(body[..., None], 128, 0)
    return iuv


def _flow_shift(flow: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return flow[np.minimum(np.arange(len(flow)) + 1, len(flow) - 1)]


def _depth_flicker(disparity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = np.exp(rng.normal(0, FLICKER_SIGMA, len(disparity))).astype(np.float32)
    return disparity * scale[:, None, None]


def _seg_swap(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    objects = [int(i) for i in np.unique(ids) if i]
    a, b = rng.choice(objects, 2, replace=False)
    start = int(rng.integers(len(ids) // 4, 3 * len(ids) // 4 + 1))
    out = ids.copy()
    tail = out[start:]
    tail[ids[start:] == a], tail[ids[start:] == b] = b, a
    return out


def _skeleton_offset(keypoints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    out = keypoints.copy()
    out[..., :2] += OFFSET_PX * np.array([np.cos(angle), np.sin(angle)], np.float32)
    return out


#: kind -> (modality, raw key, corruption)
CORRUPTIONS: dict[str, tuple[str, str, Callable[[np.ndarray, np.random.Generator], np.ndarray]]] = {
    "flow_x2": ("flow", "flow", lambda f, rng: f * 2),
    "flow_shift": ("flow", "flow", _flow_shift),
    "flow_sign": ("flow", "flow", lambda f, rng: -f),
    "depth_flicker": ("depth", "disparity", _depth_flicker),
    "seg_swap": ("seg", "ids", _seg_swap),
    "skeleton_offset": ("skeleton", "keypoints", _skeleton_offset),
}


def auroc(good: list[float], bad: list[float], higher_is_better: bool) -> float:
    """P(a corrupted clip scores worse than a good one), ties counted half (Mann-Whitney U)."""
    g, b = np.asarray(good, float), np.asarray(bad, float)
    if not higher_is_better:
        g, b = -g, -b
    return float(((b[:, None] < g[None, :]).sum() + 0.5 * (b[:, None] == g[None, :]).sum()) / (len(g) * len(b)))


def run(clips: int, spec: ClipSpec, seed: int = 0, presets: tuple[str, ...] = EPE_PRESETS,
        quiet: bool = False) -> dict[str, Any]:
    """Score good and corrupted annotations of `clips` synthetic clips; print and return figures."""
    say = (lambda *a, **k: None) if quiet else emit
    good: list[dict] = []
    bad: dict[str, list[dict]] = {kind: [] for kind in CORRUPTIONS}
    epe_rows: list[tuple[float, dict]] = []
    seconds: list[float] = []
    shift_epe: dict[str, list[float]] = {"varying": [], "steady": []}
    step_ratios: dict[str, list[tuple[float, float]]] = {"varying": [], "steady": []}  # (good, shifted)
    dis = {p: DisFlow(p) for p in presets}
    for k in range(clips):
        rng = np.random.default_rng([seed, k])
        clip, steady = varying_speed(spec, seed * 1000 + k, rng)
        for name, c in (("varying", clip), ("steady", steady)):
            shifted = _flow_shift(c.flow, rng)
            shift_epe[name].append(epe(shifted, c.flow, c.flow_valid))
            step_ratios[name].append((quality_scores(c.frames, {"flow": {"flow": c.flow}})["flow_step_ratio"],
                                       quality_scores(c.frames, {"flow": {"flow": shifted}})["flow_step_ratio"]))
        raws, metas = good_annotations(clip, rng)
        started = time.process_time()  # CPU time: the machine is shared, wall time is noise
        good.append(quality_scores(clip.frames, raws, metas))
        seconds.append(time.process_time() - started)
        for kind, (modality, key, corrupt) in CORRUPTIONS.items():
            broken = {**raws, modality: {key: corrupt(raws[modality][key], rng)}}
            bad[kind].append(quality_scores(clip.frames, broken, metas))
        for preset in presets:
            flow = dis[preset](clip.frames)
            scores = quality_scores(clip.frames, {"flow": {"flow": flow}})
            epe_rows.append((epe(flow, clip.flow, clip.flow_valid), scores))
    figures: dict[str, Any] = {"kinds": {}}
    for kind, (modality, detector) in DETECTORS.items():
        aucs = {name: auroc([g[name] for g in good], [b[name] for b in bad[kind]], name in HIGHER_IS_BETTER)
                for name in MODALITY_SCORES[modality]}
        figures["kinds"][kind] = {"score": detector, "auroc": aucs[detector], "all": aucs}
        say("quality", kind=kind, score=detector, auroc=aucs[detector],
            good_median=float(np.median([g[detector] for g in good])),
            bad_median=float(np.median([b[detector] for b in bad[kind]])),
            **{f"auroc_{n}": v for n, v in aucs.items() if n != detector})
    figures["min_auroc"] = min(v["auroc"] for v in figures["kinds"].values())
    figures["met"] = figures["min_auroc"] >= TARGET_AUROC
    say("quality", summary="all_kinds", clips=clips, spec=f"{spec.num_frames}x{spec.height}x{spec.width}",
        min_auroc=figures["min_auroc"], target=TARGET_AUROC, qa_cpu_s_per_clip=float(np.median(seconds)),
        met=figures["met"])
    for name in ("varying", "steady"):
        pairs = step_ratios[name]
        say("quality_shift", motion=name, shift_epe_median=float(np.median(shift_epe[name])),
            auroc_flow_step_ratio=auroc([g for g, _ in pairs], [b for _, b in pairs], False))
    true_epe = [e for e, _ in epe_rows]
    figures["epe_spearman"] = {}
    for name in MODALITY_SCORES["flow"]:
        rho = float(spearmanr(true_epe, [s[name] for _, s in epe_rows]).statistic)
        figures["epe_spearman"][name] = rho
    say("quality_epe", flows=len(epe_rows), annotator="opencv-dis:" + ",".join(presets),
        epe_median=float(np.median(true_epe)),
        **{f"spearman_{n}": v for n, v in figures["epe_spearman"].items()})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] + " Prints `bench quality ...` lines.")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="8 clips of 17x128x128 (what the test runs)")
    args = parser.parse_args()
    if args.fast:
        args.clips, args.frames, args.size = 8, 17, 128
    run(args.clips, ClipSpec(num_frames=args.frames, fps=16.0, height=args.size, width=args.size), args.seed)


if __name__ == "__main__":
    main()
