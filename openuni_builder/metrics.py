"""Scores of annotations against ground truth: relative depth, optical flow, entity segmentation.

Pure numpy (plus scipy's Hungarian solver). Every function takes whole clips, (T,H,W[,2]) arrays,
and pools over all frames: one number per clip, as a dataset card reports it.

Depth (the MiDaS / Depth Anything protocol for affine-invariant disparity):
    the prediction is a relative disparity d (larger = nearer). Per clip, fit scale s and shift b by
    least squares, min_{s,b} sum_mask (s*d + b - 1/z)^2 with z the GT depth, then compare the
    aligned depth z^ = 1 / (s*d + b) (clipped into the GT's depth range) with z:
        AbsRel = mean |z^ - z| / z,        delta1 = mean [ max(z^/z, z/z^) < 1.25 ].
Flow: EPE = mean over pixels of || f_pred - f_gt ||_2.
Segmentation: spatio-temporal IoU of every (GT entity, predicted entity) pair over the whole clip,
    a one-to-one matching that maximises total IoU (Hungarian), mIoU = mean over GT entities of the
    matched IoU (0 for a GT entity left unmatched). Predicted ids are arbitrary labels.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

DELTA1_THRESHOLD = 1.25


def align_scale_shift(pred: np.ndarray, gt_inv: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares (scale, shift) with scale*pred + shift ~= gt_inv on `mask` (all pixels if None).

    Closed form of the 2x2 normal equations: scale = cov(pred, gt) / var(pred),
    shift = mean(gt) - scale * mean(pred). Raises if fewer than 2 pixels or a constant prediction;
    "constant" is judged relative to the prediction's own magnitude, because a relative disparity
    has an arbitrary scale (a valid one may span 1e-7).
    """
    p, g = _masked(pred, gt_inv, mask)
    if p.size < 2:
        raise ValueError(f"need at least 2 valid pixels to fit scale and shift, got {p.size}")
    p, g = p.astype(np.float64), g.astype(np.float64)
    pm, gm = p.mean(), g.mean()
    var = np.mean((p - pm) ** 2)
    if var <= 1e-12 * np.mean(p * p):
        raise ValueError("prediction is constant on the mask: scale and shift are undetermined")
    scale = float(np.mean((p - pm) * (g - gm)) / var)
    return scale, float(gm - scale * pm)


def abs_rel(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute relative error, mean(|pred - gt| / gt), over `mask` (and gt > 0)."""
    p, g = _masked(pred_depth, gt_depth, _positive(gt_depth, mask))
    return float(np.mean(np.abs(p.astype(np.float64) - g) / g))


def delta1(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of pixels with max(pred/gt, gt/pred) < 1.25, over `mask` (and gt > 0, pred > 0)."""
    valid = _positive(gt_depth, mask) & (np.asarray(pred_depth) > 0)
    p, g = _masked(pred_depth, gt_depth, valid)
    ratio = np.maximum(p / g, g / p)
    return float(np.mean(ratio < DELTA1_THRESHOLD))


def depth_metrics(pred_disparity: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Align a relative disparity to GT inverse depth per clip, then AbsRel and delta1 in depth.

    The aligned disparity is turned into depth and clipped into [min, max] of the GT depth on the
    mask, so a pixel whose aligned disparity is <= 0 counts as "as far as the farthest GT"
    rather than producing an infinite or negative depth.
    """
    valid = _positive(gt_depth, mask) & np.isfinite(pred_disparity)
    scale, shift = align_scale_shift(pred_disparity, 1.0 / np.where(valid, gt_depth, 1.0), valid)
    g = np.asarray(gt_depth)[valid]
    lo, hi = float(g.min()), float(g.max())
    aligned = scale * np.asarray(pred_disparity, np.float64) + shift
    with np.errstate(divide="ignore"):
        depth = np.where(aligned > 0, 1.0 / np.where(aligned > 0, aligned, 1.0), hi)
    depth = np.clip(depth, lo, hi)
    return {"abs_rel": abs_rel(depth, gt_depth, valid), "delta1": delta1(depth, gt_depth, valid),
            "scale": scale, "shift": shift}


def epe(pred_flow: np.ndarray, gt_flow: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean endpoint error: mean over (masked) pixels of sqrt(du^2 + dv^2). Shapes (..., 2)."""
    pred_flow, gt_flow = np.asarray(pred_flow), np.asarray(gt_flow)
    if pred_flow.shape != gt_flow.shape or pred_flow.shape[-1] != 2:
        raise ValueError(f"flows must have the same shape (..., 2), got {pred_flow.shape} and {gt_flow.shape}")
    err = np.linalg.norm(pred_flow.astype(np.float64) - gt_flow, axis=-1)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != err.shape:
            raise ValueError(f"mask shape {mask.shape} does not match flow shape {gt_flow.shape[:-1]}")
        err = err[mask]
    if err.size == 0:
        raise ValueError("no pixels to score (empty flow or all-false mask)")
    return float(err.mean())


def miou(pred_ids: np.ndarray, gt_ids: np.ndarray, background: int = 0) -> float:
    """Mean IoU of GT entities after Hungarian matching of predicted entities to them.

    Entities are the ids other than `background` present in each map; IoU is over the whole
    (T,H,W) volume, so an entity whose id switches mid-clip is penalised. A clip whose GT has no
    entity scores 1.0 if the prediction has none either, else 0.0.
    """
    pred_ids, gt_ids = np.asarray(pred_ids), np.asarray(gt_ids)
    if pred_ids.shape != gt_ids.shape:
        raise ValueError(f"id maps must have the same shape, got {pred_ids.shape} and {gt_ids.shape}")
    gt_labels, gt_idx = np.unique(gt_ids, return_inverse=True)
    pred_labels, pred_idx = np.unique(pred_ids, return_inverse=True)
    joint = np.bincount(gt_idx.ravel() * len(pred_labels) + pred_idx.ravel(),
                        minlength=len(gt_labels) * len(pred_labels)).reshape(len(gt_labels), len(pred_labels))
    keep_gt, keep_pred = gt_labels != background, pred_labels != background
    if not keep_gt.any():
        return 0.0 if keep_pred.any() else 1.0
    inter = joint[keep_gt][:, keep_pred].astype(np.float64)
    union = joint.sum(1)[keep_gt][:, None] + joint.sum(0)[keep_pred][None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / keep_gt.sum())


def _positive(gt_depth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    valid = np.isfinite(gt_depth) & (np.asarray(gt_depth) > 0)
    return valid if mask is None else valid & _check_mask(mask, np.shape(gt_depth))


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask, bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} does not match {tuple(shape)}")
    return mask


def _masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The two arrays' values on the mask, after checking shapes agree; raises when empty."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"prediction and ground truth shapes differ: {a.shape} vs {b.shape}")
    if mask is not None:
        mask = _check_mask(mask, a.shape)
        a, b = a[mask], b[mask]
    if a.size == 0:
        raise ValueError("no valid pixels to score (empty input or all-false mask)")
    return a.ravel(), b.ravel()
