"""Depth, seg, skeleton and DensePose codecs: documented round-trip bounds, in memory and
through the default Pixelplanes storage; seg colour stability; OpenPose conversion and drawing."""

import numpy as np
import pytest

from openuni_builder import pixelplanes
from openuni_builder.pixelplanes.depth import LEVELS, LUT
from openuni_builder.pixelplanes.seg import palette
from openuni_builder.pixelplanes.skeleton import COLORS, LIMB_INTENSITY, coco17_to_openpose18
from openuni_builder.video_io import decode_mp4, encode_mp4

T, H, W = 5, 32, 48


def _through_video(modality, frames):
    return decode_mp4(encode_mp4(frames, 16, pixelplanes.storage(modality)))


def _disparity():
    yy, xx = np.mgrid[0:H, 0:W]
    disp = np.stack([1 / (1 + 0.05 * yy + 0.02 * (xx - 3 * t) ** 2 / W) for t in range(T)])
    disp[0, 0, 0] = 50.0  # one outlier must not stretch the range
    return disp.astype(np.float32)


def _ids():
    ids = np.zeros((T, H, W), np.uint16)
    for t in range(T):
        ids[t, 4:14, 2 + 3 * t:14 + 3 * t] = 1
        ids[t, 16:30, 30 - 2 * t:44 - 2 * t] = 7
        ids[t, 20:26, 5:12] = 3
    return ids


@pytest.mark.parametrize("via_video", [False, True])
def test_depth_round_trip_within_half_a_level(via_video):
    disp = _disparity()
    frames, params = pixelplanes.encode("depth", {"disparity": disp}, T)
    assert frames.shape == (T, H, W, 3)
    lo, hi = np.percentile(disp, [2, 98])
    assert (params["lo"], params["hi"]) == pytest.approx((lo, hi)) and params["hi"] < 2
    if via_video:
        frames = _through_video("depth", frames)
    back = pixelplanes.decode("depth", frames, params)["disparity"]
    inside = (disp >= lo) & (disp <= hi)
    assert np.abs(back - disp)[inside].max() <= (hi - lo) / (2 * (LEVELS - 1)) + 1e-6
    np.testing.assert_allclose(back[disp > hi], hi, rtol=1e-6)  # saturates above the range


def test_depth_near_is_warm_and_range_is_per_clip():
    disp = _disparity()
    frames, _ = pixelplanes.encode("depth", {"disparity": disp}, T)
    near = frames[disp == disp[1:].max()][0].astype(int)
    far = frames[disp == disp.min()][0].astype(int)
    assert near[0] > near[2] and far[2] > far[0]  # red near, blue far
    np.testing.assert_array_equal(LUT[-1], frames[0, 0, 0])  # the outlier saturates
    # One range per clip: a frame whose disparity halves is drawn farther (bluer), where a
    # per-frame range would have stretched it back to the same colours.
    scaled = disp.copy()
    scaled[2] *= 0.5
    frames2, _ = pixelplanes.encode("depth", {"disparity": scaled}, T)
    assert not np.array_equal(frames2[2], frames[2])
    assert frames2[2, ..., 2].mean() > frames[2, ..., 2].mean()


def test_constant_depth_encodes_and_decodes():
    frames, params = pixelplanes.encode("depth", {"disparity": np.ones((T, 4, 4), np.float32)}, T)
    assert (pixelplanes.decode("depth", frames, params)["disparity"] == 1).all()


@pytest.mark.parametrize("via_video", [False, True])
def test_seg_colours_stable_and_decode_to_same_ids(via_video):
    ids = _ids()
    frames, params = pixelplanes.encode("seg", {"ids": ids}, T)
    for entity in (1, 3, 7):
        colours = np.unique(frames[ids == entity], axis=0)
        assert len(colours) == 1  # one colour over the whole clip
    assert (frames[ids == 0] == 0).all()
    if via_video:
        frames = _through_video("seg", frames)
    back = pixelplanes.decode("seg", frames, params)["ids"]
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, ids)


def test_seg_palette_is_seeded_separated_and_prefix_stable():
    big, small = palette(0, 65), palette(0, 9)
    np.testing.assert_array_equal(big[:9], small)  # an id's colour ignores the entity count
    assert not np.array_equal(palette(1, 9), small)
    dists = np.linalg.norm(big[:, None].astype(float) - big[None].astype(float), axis=-1)
    assert dists[np.triu_indices(65, 1)].min() > 60
    with pytest.raises(ValueError, match="0..1023"):
        pixelplanes.encode("seg", {"ids": np.full((1, 2, 2), 5000, np.uint16)}, 1)


def test_seg_survives_lossy_444_mostly():
    ids = _ids()
    frames, params = pixelplanes.encode("seg", {"ids": ids}, T)
    lossy = decode_mp4(encode_mp4(frames, 16, pixelplanes.storage("seg", "h264_444")))
    back = pixelplanes.decode("seg", lossy, params)["ids"]
    assert (back == ids).mean() > 0.99


def test_coco17_to_openpose18():
    coco = np.zeros((2, 17, 3), np.float32)
    coco[:, :, 0] = np.arange(17)
    coco[:, :, 2] = 0.9
    coco[1, 6, 2] = 0.1  # right shoulder unsure in the second person
    coco[:, 5, :2] = (10, 20)
    coco[:, 6, :2] = (30, 40)
    op = coco17_to_openpose18(coco)
    assert op.shape == (2, 18, 3)
    np.testing.assert_array_equal(op[0, [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], 0],
                                  [0, 30, 8, 10, 10, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3])
    np.testing.assert_allclose(op[0, 1], (20, 30, 0.9))  # neck = shoulder midpoint
    assert (op[1, 1] == 0).all()  # one shoulder unsure: no neck
    with pytest.raises(ValueError, match="17, 3"):
        coco17_to_openpose18(np.zeros((18, 3)))


def test_skeleton_rendering_and_not_invertible():
    kps = np.zeros((T, 2, 18, 3), np.float32)
    kps[:, 0, 1] = (24, 8, 1.0)    # neck
    kps[:, 0, 2] = (14, 10, 1.0)   # right shoulder
    kps[:, 0, 8] = (16, 28, 1.0)   # right hip
    kps[:, 1, 0] = (40, 6, 0.1)    # a nose below the score threshold
    kps[:, :, :, 0] += np.arange(T)[:, None, None]
    frames, params = pixelplanes.encode("skeleton", {"keypoints": kps}, T, size=(H, W))
    assert frames.shape == (T, H, W, 3) and params["min_score"] == 0.3
    for t in range(T):
        for k in (1, 2, 8):
            x, y = kps[t, 0, k, :2].astype(int)
            assert tuple(frames[t, y, x]) == COLORS[k]
    limb_colour = tuple(int(c * LIMB_INTENSITY) for c in COLORS[6])  # neck -> right hip
    assert tuple(frames[0, 18, 20]) == limb_colour
    assert not frames[:, :, 36:].any()  # the unsure nose is not drawn
    np.testing.assert_array_equal(_through_video("skeleton", frames), frames)
    with pytest.raises(pixelplanes.NotInvertible, match="sidecar"):
        pixelplanes.decode("skeleton", frames, params)
    with pytest.raises(ValueError, match="size="):
        pixelplanes.encode("skeleton", {"keypoints": kps}, T)


@pytest.mark.parametrize("via_video", [False, True])
def test_densepose_round_trip_exact(via_video):
    rng = np.random.default_rng(0)
    iuv = rng.integers(0, 256, (T, H, W, 3)).astype(np.uint8)
    iuv[..., 0] = rng.integers(0, 25, (T, H, W))
    iuv[iuv[..., 0] == 0] = 0
    frames, params = pixelplanes.encode("densepose", {"iuv": iuv}, T)
    assert frames[..., 0].max() == 255 and (frames[iuv[..., 0] == 0] == 0).all()
    np.testing.assert_array_equal(frames[..., 1:], iuv[..., 1:])
    if via_video:
        frames = _through_video("densepose", frames)
    np.testing.assert_array_equal(pixelplanes.decode("densepose", frames, params)["iuv"], iuv)


def test_densepose_refuses_bad_parts():
    iuv = np.zeros((1, 2, 2, 3), np.uint8)
    iuv[..., 0] = 30
    with pytest.raises(ValueError, match="0..24"):
        pixelplanes.encode("densepose", {"iuv": iuv}, 1)


def test_unknown_modality():
    with pytest.raises(KeyError, match="unknown modality"):
        pixelplanes.encode("audio", {}, 1)


def test_size_option_is_checked_for_every_codec():
    ids = _ids()
    frames, _ = pixelplanes.encode("seg", {"ids": ids}, T, size=(H, W))
    assert frames.shape[1:3] == (H, W)
    with pytest.raises(ValueError, match="but the clip is"):
        pixelplanes.encode("seg", {"ids": ids}, T, size=(H, W + 2))
