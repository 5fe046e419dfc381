"""Flow annotator: torchvision RAFT with random weights from a temp cache, DIS fallback, resizing."""

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import Raft_Small_Weights, raft_small

from annotators.flow import FlowAnnotator, resize_flow
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.models import model_file
from openuni_builder.random_models import write_random_model

torch.set_num_threads(1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    return tmp_path


def moving_texture(t: int, h: int, w: int, dx: int, dy: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture translating by (dx, dy) pixels per frame: true flow is (dx, dy)."""
    rng = np.random.default_rng(seed)
    pad = 4 + (t - 1) * max(abs(dx), abs(dy))
    canvas = cv2.GaussianBlur(rng.random((h + 2 * pad, w + 2 * pad, 3)).astype(np.float32), (0, 0), 2.0)
    canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.stack([canvas[pad - i * dy:pad - i * dy + h, pad - i * dx:pad - i * dx + w] for i in range(t)])


def make_clip(frames: np.ndarray) -> Clip:
    t, h, w, _ = frames.shape
    return Clip(request=ClipRequest(source="test", video_id="v", path="/dev/null"),
                spec=ClipSpec(num_frames=t, height=h, width=w), frames=frames)


def run(annotator: FlowAnnotator, frames: np.ndarray) -> np.ndarray:
    annotator.load()
    (out,) = annotator.annotate([make_clip(frames)])
    return out.raw["flow"]


def test_raft_matches_torchvision_with_documented_transforms(cache):
    write_random_model("raft-small")
    frames = moving_texture(5, 128, 128, dx=2, dy=1)
    flow = run(FlowAnnotator(backend="raft", num_flow_updates=3, frame_batch=3, device="cpu"), frames)

    net = raft_small(weights=None)
    net.load_state_dict(torch.load(model_file("raft-small"), weights_only=True))
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)
    first, second = Raft_Small_Weights.DEFAULT.transforms()(video[:-1], video[1:])
    with torch.no_grad():
        expected = net.eval()(first, second, num_flow_updates=3)[-1].permute(0, 2, 3, 1).numpy()
    assert flow.dtype == np.float32 and flow.shape == (4, 128, 128, 2)
    np.testing.assert_allclose(flow, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_raft_pads_odd_sizes_and_crops_back(cache):
    write_random_model("raft-small")
    frames = moving_texture(5, 60, 76, dx=1, dy=0)  # neither a multiple of 8 nor RAFT's 128 minimum
    flow = run(FlowAnnotator(backend="raft", num_flow_updates=2, device="cpu"), frames)
    assert flow.shape == (4, 60, 76, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


def test_auto_uses_raft_when_cached_and_says_so(cache):
    write_random_model("raft-small")
    annotator = FlowAnnotator(device="cpu")
    assert annotator.backend == "raft" and annotator.unavailable() is None
    prov = annotator.provenance()
    assert prov["backend"] == "raft" and prov["requested_backend"] == "auto"
    assert prov["hub_id"] == "torchvision/raft_small" and prov["revision"] == "Raft_Small_Weights.C_T_V2"


def test_auto_falls_back_to_dis_without_model(cache):
    annotator = FlowAnnotator()
    assert annotator.backend == "dis" and annotator.unavailable() is None
    assert annotator.provenance()["backend"] == "opencv-dis"
    flow = run(annotator, moving_texture(5, 64, 64, dx=3, dy=-2))
    assert flow.shape == (4, 64, 64, 2)
    np.testing.assert_allclose(np.median(flow[:, 16:-16, 16:-16], axis=(0, 1, 2)), [3, -2], atol=0.5)


def test_missing_raft_is_reported_cheaply(cache):
    message = FlowAnnotator(backend="raft", model="raft-large").unavailable()
    assert "raft-large" in message and "openuni-models pull raft-large" in message
    (cache / "raft-small").mkdir()
    (cache / "raft-small" / "other.pth").write_bytes(b"x")  # a folder without the registered file
    message = FlowAnnotator(backend="raft").unavailable()
    assert "raft_small_C_T_V2-01064c6d.pth" in message and "openuni-models pull raft-small" in message
    assert FlowAnnotator().backend == "dis"


def test_max_side_scales_vectors_back(cache):
    frames = moving_texture(5, 96, 96, dx=6, dy=3)
    flow = run(FlowAnnotator(backend="dis", max_side=48), frames)
    assert flow.shape == (4, 96, 96, 2)
    np.testing.assert_allclose(np.median(flow[:, 24:-24, 24:-24], axis=(0, 1, 2)), [6, 3], atol=0.75)


def test_resize_flow_scales_each_axis():
    flow = np.broadcast_to(np.array([2.0, 1.0], np.float32), (3, 24, 32, 2)).copy()
    big = resize_flow(flow, 48, 96)
    assert big.shape == (3, 48, 96, 2)
    np.testing.assert_allclose(big[..., 0], 6.0)
    np.testing.assert_allclose(big[..., 1], 2.0)


def test_bad_options_and_input_raise(cache):
    with pytest.raises(ValueError, match="backend"):
        FlowAnnotator(backend="farneback")
    with pytest.raises(ValueError, match="max_side"):
        FlowAnnotator(max_side=4)
    for model in ("raft-huge", "depth-anything-v2-small"):
        with pytest.raises(ValueError, match="registered torchvision RAFT"):
            FlowAnnotator(model=model)
    annotator = FlowAnnotator(backend="dis")
    annotator.load()
    with pytest.raises(ValueError, match="at least 2 frames"):
        annotator.annotate([make_clip(moving_texture(1, 32, 32, 1, 1))])
