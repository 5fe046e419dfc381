"""Flow codec: Middlebury wheel colours, T-frame alignment, round trip in memory and through video."""

import numpy as np
import pytest

from openuni_builder import pixelplanes
from openuni_builder.pixelplanes.flow import LUT_SIZE, NCOLS, WHEEL, flow_to_rgb, flow_to_rgb_lut, rgb_to_flow
from openuni_builder.video_io import decode_mp4, encode_mp4

# Documented bound (docs/PIXELPLANES.md): endpoint error <= 0.0075 * max_rad when lossless.
FLOW_EPE_BOUND = 0.0075


def _flow(t=4, h=32, w=48, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 3, (t, h, w, 2)).astype(np.float32)


def _epe(a, b):
    return np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1])


def test_wheel_has_the_published_segments():
    assert WHEEL.shape == (55, 3)
    # First entry of each segment: red, yellow, green, cyan, blue, magenta.
    starts = np.cumsum([0, 15, 6, 4, 11, 13])
    expected = [(255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255)]
    assert [tuple(WHEEL[s]) for s in starts] == expected
    assert tuple(WHEEL[1]) == (255, 17, 0)  # floor(255 * 1 / 15)
    assert tuple(WHEEL[-1]) == (255, 0, 43)  # 255 - floor(255 * 5 / 6)


def test_colours_match_the_wheel_at_known_angles():
    k = np.arange(NCOLS)
    theta = (2 * k / (NCOLS - 1) - 1) * np.pi  # the angle the reference maps to entry k
    full = np.stack([-np.cos(theta), -np.sin(theta)], axis=-1)
    np.testing.assert_array_equal(flow_to_rgb(full, 1.0), WHEEL.astype(np.uint8))
    half = flow_to_rgb(full * 0.5, 1.0).astype(int)
    np.testing.assert_allclose(half, 255 - 0.5 * (255 - WHEEL), atol=0.51)
    # Rightward flow is red, zero flow is white.
    assert tuple(flow_to_rgb(np.array([2.0, 0.0]), 2.0)) == (255, 0, 0)
    assert tuple(flow_to_rgb(np.zeros(2), 2.0)) == (255, 255, 255)


def _disc(n=401):
    """One frame of flow sampling [-1, 1]^2 densely, and the mask of its unit disc."""
    x = np.linspace(-1, 1, n, dtype=np.float32)
    u, v = np.meshgrid(x, x)
    return np.stack([u, v], -1)[None], np.hypot(u, v) <= 1


@pytest.mark.parametrize("to_rgb", [flow_to_rgb, flow_to_rgb_lut])
def test_dense_disc_round_trip_within_bound(to_rgb):
    flow, disc = _disc()
    err = _epe(rgb_to_flow(to_rgb(flow, 1.0), 1.0), flow)[0]
    assert err[disc].max() <= FLOW_EPE_BOUND


def test_lookup_matches_the_arithmetic_within_a_level_off_the_seam():
    flow, disc = _disc(601)
    diff = np.abs(flow_to_rgb_lut(flow * 3, 3.0).astype(int) - flow_to_rgb(flow * 3, 3.0)).max(-1)[0]
    u, v = flow[0, ..., 0], flow[0, ..., 1]
    seam = (u > 0) & (np.abs(v) < 2 / LUT_SIZE)  # rightward: wheel entry 54 meets entry 0
    assert diff[disc & ~seam].max() <= 1
    assert (diff[disc] > 0).mean() < 0.1


def test_encode_aligns_to_clip_frames_and_round_trips():
    flow = _flow()
    frames, params = pixelplanes.encode("flow", {"flow": flow}, num_frames=5)
    assert frames.shape == (5, 32, 48, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[-1], frames[-2])  # last frame repeats pair (T-2, T-1)
    assert params["max_rad"] == pytest.approx(float(np.hypot(flow[..., 0], flow[..., 1]).max()))
    back = pixelplanes.decode("flow", frames, params)["flow"]
    assert back.shape == flow.shape and back.dtype == np.float32
    assert _epe(back, flow).max() <= FLOW_EPE_BOUND * params["max_rad"]


def test_round_trip_through_default_storage():
    flow = _flow(seed=1)
    frames, params = pixelplanes.encode("flow", {"flow": flow}, num_frames=5)
    video = encode_mp4(frames, 16, pixelplanes.storage("flow"))
    back = pixelplanes.decode("flow", decode_mp4(video), params)["flow"]
    assert _epe(back, flow).max() <= FLOW_EPE_BOUND * params["max_rad"]


def test_zero_flow_is_white_and_decodes_to_zero():
    frames, params = pixelplanes.encode("flow", {"flow": np.zeros((2, 8, 8, 2), np.float32)}, 3)
    assert (frames == 255).all() and params["max_rad"] == 0
    assert not pixelplanes.decode("flow", frames, params)["flow"].any()


def test_bad_flow_input_is_refused():
    with pytest.raises(ValueError, match="one pair fewer"):
        pixelplanes.encode("flow", {"flow": _flow(t=5)}, num_frames=5)
    bad = _flow()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pixelplanes.encode("flow", {"flow": bad}, num_frames=5)
    with pytest.raises(ValueError, match="needs key 'flow'"):
        pixelplanes.encode("flow", {"uv": bad}, num_frames=5)
