"""Depth Anything V2 annotator: real transformers classes with tiny random weights in a temp cache."""

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

from annotators import get_annotator
from annotators.depth import DepthAnnotator
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.models import ModelUnavailable
from openuni_builder.random_models import write_random_model

torch.set_num_threads(1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    return tmp_path


def make_clip(frames: np.ndarray, name: str = "a") -> Clip:
    t, h, w, _ = frames.shape
    return Clip(request=ClipRequest(source="test", video_id=name, path="/dev/null"),
                spec=ClipSpec(num_frames=t, height=h, width=w), frames=frames)


def random_frames(t: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def reference_disparity(folder, frames: np.ndarray) -> np.ndarray:
    """transformers' documented path: processor -> model -> post_process_depth_estimation."""
    processor = AutoImageProcessor.from_pretrained(folder)
    model = DepthAnythingForDepthEstimation.from_pretrained(folder).eval()
    inputs = processor(images=list(frames), return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    size = frames.shape[1:3]
    maps = processor.post_process_depth_estimation(outputs, target_sizes=[size] * len(frames))
    return torch.stack([m["predicted_depth"] for m in maps]).numpy()


def test_registered_under_depth():
    assert get_annotator("depth") is DepthAnnotator


def test_missing_model_is_reported_cheaply(cache):
    annotator = DepthAnnotator()
    message = annotator.unavailable()
    assert "depth-anything-v2-small" in message and "openuni-models pull depth-anything-v2-small" in message
    with pytest.raises(ModelUnavailable):
        annotator.load()
    (cache / "depth-anything-v2-small").mkdir()
    (cache / "depth-anything-v2-small" / "config.json").write_text("{}")
    assert "lacks model.safetensors" in DepthAnnotator().unavailable()


def test_disparity_matches_transformers_pipeline(cache):
    folder = write_random_model("depth-anything-v2-small")
    square, wide = random_frames(9, 64, 64, seed=1), random_frames(5, 48, 80, seed=2)
    annotator = DepthAnnotator(frame_batch=4, device="cpu")  # 9 frames -> batches of 4, 4, 1
    assert annotator.unavailable() is None
    annotator.load()
    outputs = annotator.annotate([make_clip(square), make_clip(wide, "b")])

    for out, frames in zip(outputs, (square, wide)):
        disparity = out.raw["disparity"]
        assert disparity.dtype == np.float32 and disparity.shape == frames.shape[:3]
        assert np.isfinite(disparity).all() and disparity.std() > 0
        expected = reference_disparity(folder, frames)
        np.testing.assert_allclose(disparity, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    prov = annotator.provenance()
    assert prov["dtype"] == "float32" and prov["device"] == "cpu"  # loaded: what ran, `auto` resolved


def test_provenance_names_registry_model_and_revision(cache):
    annotator = DepthAnnotator(model="depth-anything-v2-large", device="cpu")
    prov = annotator.provenance()
    assert prov["model"] == "depth-anything-v2-large"
    assert prov["hub_id"] == "depth-anything/Depth-Anything-V2-Large-hf"
    assert prov["revision"] == "7581137eff8d4e94f6e796d3baea0e9fa79b22d2"
    assert prov["dtype"] == "auto" and prov["device"] == "cpu"  # not loaded: the options as given


def test_half_precision_option_runs(cache):
    write_random_model("depth-anything-v2-small")
    annotator = DepthAnnotator(device="cpu", dtype="bfloat16")
    annotator.load()
    (out,) = annotator.annotate([make_clip(random_frames(5, 32, 32, seed=3))])
    assert out.raw["disparity"].dtype == np.float32 and np.isfinite(out.raw["disparity"]).all()
    assert annotator.provenance()["dtype"] == "bfloat16"


def test_bad_options_and_input_raise(cache):
    with pytest.raises(ValueError, match="unknown depth model"):
        DepthAnnotator(model="midas")
    with pytest.raises(ValueError, match="frame_batch"):
        DepthAnnotator(frame_batch=0)
    with pytest.raises(ValueError, match="dtype"):
        DepthAnnotator(dtype="int8")
    write_random_model("depth-anything-v2-small")
    annotator = DepthAnnotator(device="cpu")
    with pytest.raises(RuntimeError, match="before load"):
        annotator.annotate([make_clip(random_frames(5, 32, 32, seed=4))])
    annotator.load()
    bad = make_clip(random_frames(5, 32, 32, seed=4).astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        annotator.annotate([bad])
