"""The synthetic generator's ground truth is exact and self-consistent, and survives the mp4 round trip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from annotators.flow import FlowAnnotator
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.metrics import epe
from openuni_builder.synthetic import load_gt, render, write_sample
from openuni_builder.video_io import cut_clip

SPEC = ClipSpec(num_frames=9, fps=8.0, height=64, width=64)


@pytest.fixture(scope="module")
def clips():
    return [render(SPEC, seed) for seed in range(3)]


def _grid(h: int, w: int) -> np.ndarray:
    return np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)


def test_shapes_dtypes_and_meta(clips):
    for seed, c in enumerate(clips):
        t, h, w = SPEC.num_frames, SPEC.height, SPEC.width
        assert c.frames.shape == (t, h, w, 3) and c.frames.dtype == np.uint8
        assert c.depth.shape == (t, h, w) and c.depth.dtype == np.float32 and (c.depth > 0).all()
        assert c.flow.shape == (t - 1, h, w, 2) and c.flow.dtype == np.float32
        assert c.flow_valid.shape == (t - 1, h, w) and c.flow_valid.dtype == bool
        assert c.ids.shape == (t, h, w) and c.ids.dtype == np.uint16
        n = c.meta["num_objects"]
        assert 2 <= n <= 4 and c.meta["seed"] == seed
        assert set(np.unique(c.ids)) <= set(range(n + 1)) and len(np.unique(c.ids)) >= 2
        depths = [o["depth"] for o in c.meta["objects"]]
        assert len(set(depths)) == n and max(depths) < c.meta["background"]["depth"]
        json.dumps(c.meta)
        assert c.frames.std() > 20  # textured, not flat


def test_deterministic_in_seed():
    a, b, other = render(SPEC, 7), render(SPEC, 7), render(SPEC, 8)
    for name in ("frames", "depth", "flow", "flow_valid", "ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta
    assert not np.array_equal(a.frames, other.frames)


def _plane_depths(meta: dict, t: int) -> np.ndarray:
    """id -> depth of that layer's plane at frame t, from the scene description alone."""
    tz = meta["camera"]["velocity_per_frame"][2]
    table = np.full(meta["num_objects"] + 1, meta["background"]["depth"] - tz * t)
    for o in meta["objects"]:
        table[o["id"]] = o["depth"] + (o["depth_velocity_per_frame"] - tz) * t
    return table


def test_depth_is_the_depth_of_the_visible_layer(clips):
    """Every pixel's depth is its id's plane depth at that frame (camera and object depth motion)."""
    for c in clips:
        for t in range(SPEC.num_frames):
            np.testing.assert_allclose(c.depth[t], _plane_depths(c.meta, t)[c.ids[t]], rtol=1e-6)


def test_background_flow_is_pinhole_parallax(clips):
    """Background flow is u = f*(-T)/(Z - Tz) + Tz/(Z - Tz) * (x - pp): a plane at depth Z under a
    camera translating by T. Checked by a least-squares fit on background pixels of frame 0."""
    for c in clips:
        f, pp = c.meta["focal_px"], np.array(c.meta["principal_point"])
        tx, ty, tz = c.meta["camera"]["velocity_per_frame"]
        z = c.meta["background"]["depth"]
        bg = c.ids[0] == 0
        xy = _grid(SPEC.height, SPEC.width)[bg] - pp
        for axis, lateral in ((0, tx), (1, ty)):
            a = np.stack([xy[:, axis], np.ones(len(xy))], 1)
            (slope, offset), *_ = np.linalg.lstsq(a, c.flow[0][bg][:, axis], rcond=None)
            assert offset == pytest.approx(-f * lateral / (z - tz), abs=1e-4)
            assert slope == pytest.approx(tz / (z - tz), abs=1e-5)


def test_warping_next_frame_with_gt_flow_reproduces_frame(clips):
    """frame_{t+1}(x + flow(x)) == frame_t(x) on pixels still visible at t+1, up to bilinear
    resampling and rounding; far better than assuming no motion."""
    h, w = SPEC.height, SPEC.width
    grid = _grid(h, w)
    for c in clips:
        warp_err, still_err = [], []
        for t in range(SPEC.num_frames - 1):
            target = grid + c.flow[t]
            back = cv2.remap(c.frames[t + 1].astype(np.float32), target[..., 0], target[..., 1],
                             cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # Keep pixels whose four bilinear neighbours at t+1 all show the same layer.
            x0 = np.clip(np.floor(target[..., 0]).astype(int), 0, w - 1)
            y0 = np.clip(np.floor(target[..., 1]).astype(int), 0, h - 1)
            same = c.flow_valid[t].copy()
            for yy in (y0, np.minimum(y0 + 1, h - 1)):
                for xx in (x0, np.minimum(x0 + 1, w - 1)):
                    same &= c.ids[t + 1][yy, xx] == c.ids[t]
            assert same.mean() > 0.8
            frame = c.frames[t].astype(np.float32)
            warp_err.append(np.abs(back - frame)[same].mean())
            still_err.append(np.abs(c.frames[t + 1] - frame)[same].mean())
        assert np.mean(warp_err) < 1.5, warp_err
        assert np.mean(warp_err) < 0.5 * np.mean(still_err)


def test_ids_are_stable_and_occluders_are_nearer(clips):
    """A visible surface point keeps its id at t+1; one that becomes hidden inside the image is
    covered by a nearer layer (depth ordering agrees with ids and occlusion)."""
    h, w = SPEC.height, SPEC.width
    grid = _grid(h, w)
    for c in clips:
        for t in range(SPEC.num_frames - 1):
            moved = grid + c.flow[t]
            inside = ((moved >= 0) & (moved <= np.array([w - 1, h - 1], np.float32))).all(-1)
            kept = c.flow_valid[t]
            assert not (kept & ~inside).any()
            x, y = np.rint(moved[..., 0]).astype(int), np.rint(moved[..., 1]).astype(int)
            on_screen = kept & (x >= 0) & (x < w) & (y >= 0) & (y < h)
            assert (c.ids[t + 1][y[on_screen], x[on_screen]] == c.ids[t][on_screen]).mean() > 0.98
            # A point hidden inside the image has a layer nearer than its own among its bilinear
            # neighbours at t+1.
            hidden = inside & ~kept
            x0, y0 = np.floor(moved[..., 0]).astype(int)[hidden], np.floor(moved[..., 1]).astype(int)[hidden]
            nearest = np.full(x0.shape, np.inf, np.float32)
            for yy in (y0, np.minimum(y0 + 1, h - 1)):
                for xx in (x0, np.minimum(x0 + 1, w - 1)):
                    nearest = np.minimum(nearest, c.depth[t + 1][yy, xx])
            own_next = _plane_depths(c.meta, t + 1)[c.ids[t][hidden]]
            assert (nearest < own_next - 1e-3).all()


def test_write_sample_cut_is_identity(tmp_path):
    video, gt_path = write_sample(tmp_path, SPEC, seed=5)
    assert video.name == "synthetic_5.mp4" and gt_path.name == "synthetic_5.gt.npz"
    frames, info = cut_clip(video, SPEC)
    rendered = render(SPEC, 5)
    assert frames.shape == rendered.frames.shape
    diff = np.abs(frames.astype(np.int16) - rendered.frames)
    assert diff.mean() < 1.5 and np.percentile(diff, 99) < 12
    np.testing.assert_allclose(info["frame_times"], np.arange(SPEC.num_frames) / SPEC.fps, atol=1e-3)
    gt = load_gt(gt_path)
    np.testing.assert_array_equal(gt["ids"], rendered.ids)
    np.testing.assert_array_equal(gt["flow"], rendered.flow)
    np.testing.assert_array_equal(gt["depth"], rendered.depth)
    assert gt["ids"].dtype == np.uint16 and gt["flow"].dtype == np.float32 and gt["depth"].dtype == np.float32
    assert gt["meta"] == rendered.meta


def test_dis_flow_annotator_beats_zero_flow():
    """The DIS flow annotator recovers the motion: EPE well below that of predicting no motion."""
    spec = ClipSpec(num_frames=9, fps=8.0, height=96, width=96)
    annotator = FlowAnnotator()
    annotator.load()
    dis, zero = [], []
    for seed in range(3):
        gt = render(spec, seed)
        clip = Clip(ClipRequest("synthetic", str(seed), "-"), spec, frames=gt.frames)
        (out,) = annotator.annotate([clip])
        dis.append(epe(out.raw["flow"], gt.flow))
        zero.append(epe(np.zeros_like(gt.flow), gt.flow))
    assert np.mean(dis) < 0.5 * np.mean(zero), (dis, zero)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_objects"):
        render(SPEC, 0, num_objects=0)
    with pytest.raises(ValueError, match="motion_scale"):
        render(SPEC, 0, motion_scale=-1)
    with pytest.raises(ValueError, match="to the camera"):
        render(SPEC, 0, motion_scale=100)
