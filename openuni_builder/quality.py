"""Annotation quality scores per clip, computed from the annotations themselves (no ground truth).

Annotators fail silently: flow breaks on textureless regions, monocular depth flickers, a video
segmenter swaps ids after an occlusion, a detector misses a person. Each check here looks at one
modality against the clip's RGB frames (and, for people, against the other human modalities) and
returns named float scores; `quality_scores` runs every check whose modality is present. Every
score, its range and the values to expect are in docs/QUALITY.md.

The checks need to know which pixels stay visible from frame t to t+1 and where they go. That is
estimated once per clip by this module's own *reference motion*: OpenCV DIS (ultrafast preset)
forward and backward between consecutive grey frames, visible = the round trip lands within a
tolerance (Sundaram et al. 2010) and inside the frame. It is independent of the flow annotation
on purpose, so a broken flow annotation lowers the flow scores only, never the depth or seg ones,
and so the flow check has something to compare the annotation with.

Pure numpy + OpenCV; raw arrays in exactly the layouts the annotators write (docs/PIXELPLANES.md):
flow (T-1, H, W, 2) px, disparity (T, H, W), ids (T, H, W) uint16, keypoints (T, P, 18, 3),
iuv (T, H, W, 3) uint8. Cost on one core for a 49x256x256 clip with every modality: see
`quality_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

Scores = dict[str, float | None]

#: Round-trip tolerance |f(x) + b(x + f(x))|^2 <= FB_ALPHA (|f|^2 + |b|^2) + FB_BETA (px^2): the
#: forward-backward occlusion test of Sundaram et al. (ECCV 2010), as in UnFlow / ARFlow.
FB_ALPHA, FB_BETA = 0.01, 0.5
#: Added to the mean warp errors `flow_step_ratio` compares (grey levels), far below any real
#: clip's error, so exact synthetic flows give finite ratios.
STEP_EPSILON = 1e-3
#: Keypoints at or above this score count as detected (the skeleton codec draws from 0.3 too).
KEYPOINT_MIN_SCORE = 0.3
#: A keypoint within this many pixels of a person mask counts as on it: joints such as wrists and
#: ankles sit on the silhouette's edge, where one pixel of mask error would flip them.
KEYPOINT_TOLERANCE_PX = 3
#: An entity smaller than this share of the frame counts as absent in that frame when counting id
#: churn, so a sliver flickering at the frame edge is not a re-identification.
CHURN_MIN_AREA = 1e-4
#: The flow, depth and seg checks run at most this many pixels on the longer side (see
#: `quality_scores` for what it saves).
WORK_SIDE = 128
MIN_WORK_SIDE = 16
#: OpenCV's DIS refuses frames with both sides below this (its patch size).
DIS_MIN_SIDE = 12
#: Seg entity labels that mean "person" (Mask2Former COCO panoptic says "person").
PERSON_LABELS = frozenset({"person"})
#: Every score `quality_scores` can return, with its range; docs/QUALITY.md explains each.
SCORES: dict[str, str] = {
    "flow_warp_error": "0..255 grey levels (lower is better)",
    "flow_warp_gain": "0.. (ratio; lower is better, 1 = no better than no motion)",
    "flow_fb_inconsistent": "0..1 share of visible pixels (lower is better)",
    "flow_step_ratio": "0.. (ratio; below 1 in step, above 1 out of step)",
    "depth_flicker": "0.. share of the clip's disparity range (lower is better)",
    "seg_temporal_iou": "0..1 (higher is better)",
    "seg_temporal_iou_min": "0..1 (higher is better)",
    "seg_id_churn": "0.. events per entity (lower is better)",
    "seg_coverage": "0..1 share of pixels with an entity",
    "skeleton_in_densepose": "0..1 (higher is better)",
    "skeleton_in_seg": "0..1 (higher is better)",
    "densepose_seg_iou": "0..1 (higher is better)",
    "person_agreement": "0..1 (higher is better)",
}


@dataclass
class Motion:
    """The clip's reference motion at the working size: grey frames (T, h, w) float32, DIS
    forward and backward flow (T-1, h, w, 2) between consecutive frames, and `visible`
    (T-1, h, w): the pixel of frame t is still seen at t+1 by the round-trip test."""

    gray: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    visible: np.ndarray

    @classmethod
    def of_frames(cls, frames: np.ndarray) -> "Motion":
        gray8 = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        forward = np.stack([dis.calc(a, b, None) for a, b in zip(gray8[:-1], gray8[1:])])
        backward = np.stack([dis.calc(b, a, None) for a, b in zip(gray8[:-1], gray8[1:])])
        visible = np.stack([_round_trip_ok(f, b) for f, b in zip(forward, backward)])
        return cls(np.stack(gray8).astype(np.float32), forward, backward, visible)


@lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> np.ndarray:
    grid = np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), -1)
    grid.flags.writeable = False  # shared by every caller
    return grid


def _warp(image: np.ndarray, flow: np.ndarray, nearest: bool = False) -> np.ndarray:
    """`image` (of frame t+1) sampled at x + flow(x): brought back onto frame t's pixels."""
    target = _pixel_grid(*flow.shape[:2]) + flow
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(image, target, None, mode, borderMode=cv2.BORDER_REPLICATE)


def _round_trip_ok(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels whose forward flow, followed by the backward flow at its target, comes home
    (within the FB tolerance) and whose target is inside the frame."""
    h, w = forward.shape[:2]
    target = _pixel_grid(h, w) + forward
    back = cv2.remap(backward, target, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fu, fv, bu, bv = forward[..., 0], forward[..., 1], back[..., 0], back[..., 1]
    # Channel by channel: numpy reduces a length-2 last axis ~10x slower than it adds two planes.
    miss = (fu + bu) ** 2 + (fv + bv) ** 2
    bound = FB_ALPHA * (fu * fu + fv * fv + bu * bu + bv * bv) + FB_BETA
    x, y = target[..., 0], target[..., 1]
    return (miss <= bound) & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def flow_scores(flow: np.ndarray, motion: Motion | None) -> Scores:
    """Scores of a forward flow annotation (T-1, H, W, 2), t -> t+1 in pixels.

    - `flow_warp_error`: frame t+1 warped to t by the flow, mean absolute grey difference (0..255)
      over the pixels the reference motion says stay visible. L1 rather than L2 so that the few
      pixels a visibility estimate gets wrong cannot dominate.
    - `flow_warp_gain`: that error over the same error with zero flow (the frames as they are):
      how much of the photometric change the flow explains. It is None when the frames do not
      change on visible pixels (nothing to explain).
    - `flow_fb_inconsistent`: share of visible pixels whose round trip (the annotation forward,
      the reference backward flow back) misses by more than the FB tolerance. A scaled or
      reversed annotation fails the round trip wherever the scene moves by more than ~0.7 px.
    - `flow_step_ratio`: the warp error of each pair's own flow, over the warp error of the
      previous pair's flow on that same pair, and over that of the next pair's flow; the larger
      of the two ratios (each summed over the pairs that have both neighbours, before dividing,
      so no per-pair minimum biases it). Same pixels, same frames, only the flow differs, so
      texture and noise cancel: below 1 the annotation is in step with the frames, above 1 it
      fits a neighbouring pair better (one frame early or late), near 1 the motion is too
      steady for a step to matter. None with fewer than three pairs.
    """
    names = ("flow_warp_error", "flow_warp_gain", "flow_fb_inconsistent", "flow_step_ratio")
    if motion is None or not motion.visible.any():
        return dict.fromkeys(names)
    gray, visible = motion.gray, motion.visible
    own = still = inconsistent = stepped = compared = 0.0
    earlier = later = 0.0  # warp errors of the previous / next pair's flow on this pair
    for t, v in enumerate(visible):
        if not v.any():
            continue
        err = lambda f: np.abs(_warp(gray[t + 1], f) - gray[t])[v].sum()  # noqa: E731
        own_t = float(err(flow[t]))
        own += own_t
        still += float(np.abs(gray[t + 1] - gray[t])[v].sum())
        inconsistent += float((~_round_trip_ok(flow[t], motion.backward[t]) & v).sum())
        if 0 < t < len(flow) - 1:  # pairs with both neighbours, so both ratios see the same pairs
            earlier += float(err(flow[t - 1]))
            later += float(err(flow[t + 1]))
            stepped += own_t
            compared += float(v.sum())
    count = float(visible.sum())
    return {"flow_warp_error": own / count,
            "flow_warp_gain": own / still if still > 0 else None,
            "flow_fb_inconsistent": inconsistent / count,
            # STEP_EPSILON grey levels per pixel keep a noise-free clip finite: 0/0 (every flow
            # fits) is 1, a perfect neighbour against an imperfect own flow is large.
            "flow_step_ratio": ((stepped + STEP_EPSILON * compared) / (min(earlier, later) + STEP_EPSILON * compared)
                                if compared else None)}


def depth_scores(disparity: np.ndarray, motion: Motion | None) -> Scores:
    """`depth_flicker` of a relative disparity (T, H, W): disparity t+1 warped to t along the
    reference motion, compared with disparity t on visible pixels after one scale-and-shift for
    the whole clip (its 2nd-98th percentile range mapped to 0..1, as the depth codec does), so the
    score is in shares of the clip's range whatever the disparity's arbitrary scale. Per frame
    pair the median absolute difference (a frame-wide change, flicker, moves the median; depth
    edges the reference motion misplaces do not), averaged over pairs.

    None for a one-frame clip or a constant disparity (no range to compare in)."""
    if motion is None or not motion.visible.any():
        return {"depth_flicker": None}
    d = np.asarray(disparity, np.float32)
    lo, hi = np.percentile(d[:, ::4, ::4], (2, 98))  # every 16th pixel: the same range, 1/16 the sort
    if not hi > lo:
        return {"depth_flicker": None}
    d = (d - lo) / (hi - lo)
    medians = [float(np.median(np.abs(_warp(d[t + 1], motion.forward[t]) - d[t])[v]))
               for t, v in enumerate(motion.visible) if v.any()]
    return {"depth_flicker": float(np.mean(medians))}


def seg_scores(ids: np.ndarray, motion: Motion | None) -> Scores:
    """Scores of entity ids (T, H, W) uint16, 0 = no entity.

    - `seg_temporal_iou`: per frame pair, ids of t+1 warped to t along the reference motion
      (nearest neighbour), then the pixel-weighted IoU over entities on visible pixels: the
      pixels where both frames show the same entity over those where either shows one. Averaged
      over pairs; `seg_temporal_iou_min` is the worst pair, where an id swap shows (two entities
      trading ids make that one pair's IoU collapse while the mean barely moves).
    - `seg_id_churn`: entity appearances after the first frame plus disappearances before the
      last (an entity below CHURN_MIN_AREA of the frame counts as absent), per entity. A tracker
      that loses an entity and re-detects it under a new id adds two events.
    - `seg_coverage`: share of all pixels that belong to an entity.

    Temporal IoU and churn are None when the clip has no entity (or one frame, or no visible
    pixel, for the IoU); coverage is then 0.
    """
    ids = np.asarray(ids)
    T, H, W = ids.shape
    present_ids = np.flatnonzero(np.bincount(ids.ravel()))
    entities = present_ids[present_ids > 0]
    scores: Scores = {"seg_coverage": float(np.count_nonzero(ids)) / ids.size,
                      "seg_temporal_iou": None, "seg_temporal_iou_min": None, "seg_id_churn": None}
    if not len(entities):
        return scores
    # Compact labels 0..K (0 = no entity) so joint histograms stay small whatever the ids are.
    lut = np.zeros(int(present_ids.max()) + 1, np.uint16)
    lut[entities] = np.arange(1, len(entities) + 1)
    compact = lut[ids]
    k = len(entities) + 1
    frame_of = np.repeat(np.arange(T) * k, H * W)
    area = np.bincount(frame_of + compact.ravel(), minlength=T * k).reshape(T, k)[:, 1:]
    present = area >= CHURN_MIN_AREA * H * W
    births = (present[1:] & ~present[:-1]).sum()
    deaths = (present[:-1] & ~present[1:]).sum()
    scores["seg_id_churn"] = float(births + deaths) / len(entities)
    if motion is None or T < 2:
        return scores
    ious = []
    for t, v in enumerate(motion.visible):
        nxt = _warp(compact[t + 1], motion.forward[t], nearest=True)
        pairs = compact[t][v].astype(np.int64) * k + nxt[v]
        joint = np.bincount(pairs, minlength=k * k).reshape(k, k)
        union = len(pairs) - joint[0, 0]
        if union:
            ious.append((np.trace(joint) - joint[0, 0]) / union)
    if ious:
        scores["seg_temporal_iou"], scores["seg_temporal_iou_min"] = float(np.mean(ious)), float(np.min(ious))
    return scores


def person_ids(seg_meta: dict[str, Any] | None) -> list[int]:
    """Ids of the seg entities labelled as people in the seg annotator's meta (`entities`)."""
    return [int(e["id"]) for e in (seg_meta or {}).get("entities", ())
            if str(e.get("label") or "").lower() in PERSON_LABELS]


def person_scores(keypoints: np.ndarray | None = None, iuv: np.ndarray | None = None,
                  person_mask: np.ndarray | None = None) -> Scores:
    """Agreement between the clip's person annotations, for those present.

    `keypoints` (T, P, 18, 3) skeleton, `iuv` (T, H, W, 3) DensePose, `person_mask` (T, H, W)
    bool: the seg entities labelled person. The skeleton and DensePose annotators each run their
    own detector pass and the segmenter its own model, so where they disagree one of them missed
    or misplaced a person.

    - `skeleton_in_densepose`, `skeleton_in_seg`: share of detected keypoints (score >=
      KEYPOINT_MIN_SCORE) within KEYPOINT_TOLERANCE_PX of the DensePose body / the seg person
      mask. None when the skeleton has no keypoint and the other has no person pixel (nobody,
      and both agree); 0 when only one of them saw someone.
    - `densepose_seg_iou`: per frame IoU of the DensePose body and the seg person mask, averaged
      over frames where either has a person. None when neither ever does.
    - `person_agreement`: the mean of those available, None when none is.
    """
    masks = {"densepose": None if iuv is None else np.asarray(iuv)[..., 0] > 0,
             "seg": None if person_mask is None else np.asarray(person_mask, bool)}
    scores: Scores = {}
    if keypoints is not None:
        kp = np.asarray(keypoints, np.float32)
        for name, mask in masks.items():
            if mask is not None:
                scores[f"skeleton_in_{name}"] = _keypoints_on_mask(kp, mask)
    if masks["densepose"] is not None and masks["seg"] is not None:
        scores["densepose_seg_iou"] = _mean_frame_iou(masks["densepose"], masks["seg"])
    available = [v for v in scores.values() if v is not None]
    if scores:
        scores["person_agreement"] = float(np.mean(available)) if available else None
    return scores


def _keypoints_on_mask(keypoints: np.ndarray, mask: np.ndarray) -> float | None:
    T, H, W = mask.shape
    if len(keypoints) != T:
        raise ValueError(f"keypoints have {len(keypoints)} frames, the person mask {T}")
    size = 2 * KEYPOINT_TOLERANCE_PX + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    hits = total = 0
    for t in range(T):
        pts = keypoints[t].reshape(-1, 3)
        pts = pts[pts[:, 2] >= KEYPOINT_MIN_SCORE]
        if not len(pts):
            continue
        near = cv2.dilate(mask[t].astype(np.uint8), kernel).astype(bool)
        x = np.clip(np.rint(pts[:, 0]).astype(int), -1, W)
        y = np.clip(np.rint(pts[:, 1]).astype(int), -1, H)
        inside = (x >= 0) & (x < W) & (y >= 0) & (y < H)
        hits += int(near[y[inside], x[inside]].sum())
        total += len(pts)
    if total == 0:
        return None if not mask.any() else 0.0
    return hits / total


def _mean_frame_iou(a: np.ndarray, b: np.ndarray) -> float | None:
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    seen = union > 0
    return float(np.mean(inter[seen] / union[seen])) if seen.any() else None


def quality_scores(frames: np.ndarray, raws: dict[str, dict[str, np.ndarray]],
                   metas: dict[str, dict[str, Any]] | None = None, work_side: int = WORK_SIDE) -> Scores:
    """Every score whose modality is in `raws` ({modality: its raw arrays}, as the annotators
    write them; `metas` = {modality: its meta}, of which seg's `entities` labels are read).

    Absent modalities give no keys; a present modality gives all its keys, None where the clip
    cannot say (see each check; a one-frame clip, or one under DIS_MIN_SIDE on both sides, has no
    reference motion, so every motion-based score is None). Raises ValueError when an array does
    not fit the frames.

    The flow, depth and seg checks run with frames and arrays shrunk so the longer side is at
    most `work_side` (flow vectors scaled with the frames, ids resized nearest): a quarter of
    the pixels at the default clip size, with every check still separating good from broken
    annotations (bench/quality.py). The person checks run at the clip's size (they are cheap).
    Measured (CPU time, one thread, best of 7) on a 49x256x256 clip with all five modalities:
    0.17 s (DIS reference motion 0.05 s, flow 0.05 s, depth 0.02 s, seg 0.02 s, people 0.02 s);
    at full size 0.69 s.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    T, H, W = frames.shape[:3]
    metas = metas or {}
    arrays = {name: _checked(name, raw, T, H, W) for name, raw in raws.items() if name in _LAYOUTS}
    # Shrink to `work_side`, but never a short side below MIN_WORK_SIDE (an elongated clip).
    scale = min(1.0, max(work_side / max(H, W), MIN_WORK_SIDE / min(H, W)))
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    small = _Shrink(size, (W, H))
    # DIS needs a side of at least DIS_MIN_SIDE: tinier clips get None for the motion scores.
    needs_motion = (T >= 2 and max(size) >= DIS_MIN_SIDE
                    and any(m in arrays for m in ("flow", "depth", "seg")))
    motion = Motion.of_frames(small.images(frames, cv2.INTER_AREA)) if needs_motion else None
    scores: Scores = {}
    if "flow" in arrays:
        scores.update(flow_scores(small.flows(arrays["flow"]), motion))
    if "depth" in arrays:
        scores.update(depth_scores(small.images(arrays["depth"].astype(np.float32), cv2.INTER_AREA), motion))
    if "seg" in arrays:
        scores.update(seg_scores(small.images(arrays["seg"].astype(np.uint16), cv2.INTER_NEAREST), motion))
    people = {"keypoints": arrays.get("skeleton"), "iuv": arrays.get("densepose")}
    if "seg" in arrays:
        people["person_mask"] = np.isin(arrays["seg"], person_ids(metas.get("seg")))
    if sum(v is not None for v in people.values()) >= 2:
        scores.update(person_scores(**people))
    return scores


@dataclass(frozen=True)
class _Shrink:
    """Resizes per-frame arrays from the clip's (W, H) to the working (w, h)."""

    size: tuple[int, int]
    full: tuple[int, int]

    def images(self, stack: np.ndarray, interpolation: int) -> np.ndarray:
        if self.size == self.full:
            return stack
        return np.stack([cv2.resize(a, self.size, interpolation=interpolation) for a in stack])

    def flows(self, flow: np.ndarray) -> np.ndarray:
        flow = np.asarray(flow, np.float32)
        if self.size == self.full or not len(flow):
            return flow
        gain = np.array([self.size[0] / self.full[0], self.size[1] / self.full[1]], np.float32)
        return self.images(flow, cv2.INTER_AREA) * gain


#: modality -> (raw key, expected shape from the clip's (T, H, W); None = any). Flow has one
#: entry per consecutive frame pair, T-1 (the Pixelplanes video repeats the last, the raw array
#: does not); skeleton tracks P are padded per clip.
_LAYOUTS = {
    "flow": ("flow", lambda T, H, W: (T - 1, H, W, 2)),
    "depth": ("disparity", lambda T, H, W: (T, H, W)),
    "seg": ("ids", lambda T, H, W: (T, H, W)),
    "skeleton": ("keypoints", lambda T, H, W: (T, None, 18, 3)),
    "densepose": ("iuv", lambda T, H, W: (T, H, W, 3)),
}


def _checked(modality: str, raw: dict[str, np.ndarray], T: int, H: int, W: int) -> np.ndarray:
    key, shape_of = _LAYOUTS[modality]
    if key not in raw:
        raise ValueError(f"quality: {modality} raw has no {key!r} array (has {sorted(raw)})")
    array = np.asarray(raw[key])
    expected = shape_of(T, H, W)
    if array.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, array.shape)):
        want = "x".join("P" if e is None else str(e) for e in expected)
        raise ValueError(f"quality: {modality} {key!r} has shape {array.shape}, expected {want} for "
                         f"{T} frames of {H}x{W}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"quality: {modality} {key!r} has NaN or inf values")
    return array
