"""Metrics on constructed inputs whose answers can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from openuni_builder.metrics import abs_rel, align_scale_shift, delta1, depth_metrics, epe, miou


@pytest.fixture
def gt_depth():
    rng = np.random.default_rng(0)
    return rng.uniform(2.0, 20.0, (3, 8, 8)).astype(np.float32)


def test_align_recovers_scale_and_shift(gt_depth):
    pred = (1 / gt_depth - 0.05) / 4.0  # gt_inv = 4 * pred + 0.05
    scale, shift = align_scale_shift(pred, 1 / gt_depth)
    assert scale == pytest.approx(4.0, rel=1e-5) and shift == pytest.approx(0.05, abs=1e-6)


def test_align_is_scale_invariant(gt_depth):
    for tiny in (1e-7, 1e7):  # a relative disparity may have any magnitude
        scale, shift = align_scale_shift(tiny / gt_depth, 1 / gt_depth)
        assert scale * tiny == pytest.approx(1.0, rel=1e-6) and shift == pytest.approx(0.0, abs=1e-9)


def test_align_uses_only_masked_pixels():
    pred = np.array([1.0, 2.0, 3.0, 100.0])
    gt_inv = np.array([3.0, 5.0, 7.0, 0.0])  # 2 * pred + 1 on the first three
    scale, shift = align_scale_shift(pred, gt_inv, np.array([True, True, True, False]))
    assert (scale, shift) == pytest.approx((2.0, 1.0))


def test_scaled_and_shifted_disparity_scores_perfectly(gt_depth):
    out = depth_metrics(3.0 / gt_depth + 7.0, gt_depth)
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert out["delta1"] == 1.0
    assert out["scale"] == pytest.approx(1 / 3, rel=1e-5)


def test_abs_rel_and_delta1_by_hand():
    gt = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.1, 3.0, 4.0, 2.0])
    # |.|/gt = 0.1, 0.5, 0, 0.6 -> mean 0.3; ratios 1.1, 1.5, 1, 2.5 -> 2 of 4 under 1.25
    assert abs_rel(pred, gt) == pytest.approx(0.3)
    assert delta1(pred, gt) == pytest.approx(0.5)
    assert abs_rel(pred, gt, np.array([True, False, True, False])) == pytest.approx(0.05)


def test_depth_metrics_ignore_invalid_gt():
    gt = np.array([[1.0, 2.0, 0.0, np.inf]])
    out = depth_metrics(1 / np.array([[1.0, 2.0, 5.0, 5.0]]), gt)
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-9) and out["delta1"] == 1.0


def test_flipped_disparity_is_penalised(gt_depth):
    out = depth_metrics(gt_depth.copy(), gt_depth)  # depth given where disparity is expected
    assert out["abs_rel"] > 0.2 and out["delta1"] < 0.8


def test_epe_known_offset():
    gt = np.zeros((2, 4, 5, 2), np.float32)
    pred = gt + np.array([3.0, 4.0], np.float32)
    assert epe(pred, gt) == pytest.approx(5.0)
    mask = np.zeros((2, 4, 5), bool)
    mask[0, 0, 0] = True
    pred[0, 0, 0] = (0.0, 1.0)
    assert epe(pred, gt, mask) == pytest.approx(1.0)


def test_miou_is_invariant_to_relabelling():
    gt = np.zeros((2, 6, 6), np.uint16)
    gt[:, :3, :3], gt[:, 3:, 3:], gt[:, :2, 4:] = 1, 2, 3
    pred = np.select([gt == 1, gt == 2, gt == 3], [17, 5, 9], 0).astype(np.int32)
    assert miou(pred, gt) == 1.0


def test_miou_by_hand():
    gt = np.zeros((1, 4, 4), np.uint16)
    gt[0, :, :2] = 1  # 8 pixels
    gt[0, :, 2:] = 2  # 8 pixels
    pred = np.zeros_like(gt)
    pred[0, :2, :2] = 7  # half of entity 1: IoU 4/8
    # entity 2 not predicted: IoU 0 -> mean 0.25
    assert miou(pred, gt) == pytest.approx(0.25)
    pred[0, :, 2:] = 8
    pred[0, 0, 0] = 8  # entity 2 gains one stray pixel: IoU 8/9
    assert miou(pred, gt) == pytest.approx((3 / 8 + 8 / 9) / 2)


def test_miou_matching_is_one_to_one():
    """One predicted entity covering two GT entities matches only one of them."""
    gt = np.array([[[1, 1, 2, 2]]], np.uint16)
    pred = np.array([[[5, 5, 5, 5]]], np.uint16)
    assert miou(pred, gt) == pytest.approx((0.5 + 0.0) / 2)


def test_miou_without_gt_entities():
    empty = np.zeros((1, 2, 2), np.uint16)
    assert miou(empty, empty) == 1.0
    assert miou(empty + 1, empty) == 0.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        epe(np.zeros((2, 3, 3, 2)), np.zeros((2, 3, 4, 2)))
    with pytest.raises(ValueError, match="constant"):
        align_scale_shift(np.ones(5), np.arange(5.0))
    with pytest.raises(ValueError, match="no valid pixels"):
        abs_rel(np.ones(3), np.ones(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="same shape"):
        miou(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))
