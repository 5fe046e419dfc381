"""Skeleton annotator: tiny random RT-DETR + ViTPose through the real loading code, checked
against transformers' own ViTPose pipeline; OpenPose-18 conversion; no-person clips; backends."""

import numpy as np
import pytest
import torch
from openuni_builder.random_models import write_random_model
from tests.tiny_humans import person_clip
from transformers import VitPoseForPoseEstimation, VitPoseImageProcessor

from annotators import get_annotator
from annotators.skeleton import SkeletonAnnotator
from openuni_builder.pixelplanes.skeleton import OPENPOSE18, coco17_to_openpose18
from openuni_builder.clip import Clip, ClipRequest, ClipSpec


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    return tmp_path


def make_clip(frames):
    spec = ClipSpec(num_frames=len(frames), fps=8, height=frames.shape[1], width=frames.shape[2])
    return Clip(request=ClipRequest(source="test", video_id="v", path="v.mp4"), spec=spec, frames=frames)


def test_coco17_to_openpose18_order_and_neck():
    coco = np.zeros((17, 3), np.float32)
    coco[:, 0] = np.arange(17)  # x = COCO index, so the output's x tells where each joint came from
    coco[:, 1] = 100 + np.arange(17)
    coco[:, 2] = 0.9
    coco[5, 2], coco[6, 2] = 0.5, 0.8  # left / right shoulder
    op = coco17_to_openpose18(coco, min_score=0.3)
    assert op.shape == (18, 3) and len(OPENPOSE18) == 18
    expected = {"nose": 0, "right_shoulder": 6, "right_elbow": 8, "right_wrist": 10, "left_shoulder": 5,
                "left_elbow": 7, "left_wrist": 9, "right_hip": 12, "right_knee": 14, "right_ankle": 16,
                "left_hip": 11, "left_knee": 13, "left_ankle": 15, "right_eye": 2, "left_eye": 1,
                "right_ear": 4, "left_ear": 3}
    for name, coco_index in expected.items():
        assert op[OPENPOSE18.index(name), 0] == coco_index, name
    np.testing.assert_allclose(op[1], [5.5, 105.5, 0.5])  # neck: shoulder midpoint, weaker score
    coco[5, 2] = 0.2  # one shoulder below threshold: no neck
    np.testing.assert_array_equal(coco17_to_openpose18(coco[None, None], 0.3)[0, 0, 1], [0, 0, 0])
    with pytest.raises(ValueError):
        coco17_to_openpose18(np.zeros((18, 3)))


def test_registered_and_unavailable_without_models(cache):
    assert get_annotator("skeleton") is SkeletonAnnotator
    reason = SkeletonAnnotator().unavailable()
    assert "vitpose-base" in reason and "openuni-models pull vitpose-base" in reason
    write_random_model("vitpose-base")
    assert "rtdetr-r50" in SkeletonAnnotator().unavailable()
    write_random_model("rtdetr-r50")
    assert SkeletonAnnotator().unavailable() is None


def test_keypoints_equal_reference_vitpose_pipeline(cache):
    write_random_model("rtdetr-r50")
    path = write_random_model("vitpose-base")
    frames = person_clip()
    ann = SkeletonAnnotator(detection_threshold=0.0, pose_batch_size=3, keypoint_threshold=0.0)  # several groups
    ann.load()
    out = ann.annotate([make_clip(frames)])[0]
    keypoints = out.raw["keypoints"]
    tracks = ann.detector.track(frames)  # deterministic: the same tracks the annotator used
    assert keypoints.dtype == np.float32 and keypoints.shape == (5, tracks.num_tracks, 18, 3)
    assert out.meta["person_count"] == tracks.num_tracks > 0 and out.meta["no_person"] is False

    processor = VitPoseImageProcessor.from_pretrained(path)
    model = VitPoseForPoseEstimation.from_pretrained(path).eval()
    checked = 0
    for t in range(len(frames)):
        for p in np.flatnonzero(tracks.present[t]):
            x0, y0, x1, y1 = tracks.boxes[t, p]
            boxes = [[[x0, y0, x1 - x0, y1 - y0]]]
            with torch.no_grad():
                heat = model(**processor(images=[frames[t]], boxes=boxes, return_tensors="pt"))
            ref = processor.post_process_pose_estimation(heat, boxes=boxes)[0][0]
            coco = np.concatenate([ref["keypoints"].numpy(), ref["scores"].numpy()[:, None]], 1)
            coco[coco[:, 2] <= 0] = 0  # the annotator's "score 0 = absent" rule
            np.testing.assert_allclose(keypoints[t, p], coco17_to_openpose18(coco, 0.0), rtol=1e-4, atol=1e-3)
            checked += 1
        absent = ~tracks.present[t]
        assert not keypoints[t, absent].any()
    assert checked == tracks.present.sum() > 0
    assert ann.provenance()["model"] == "usyd-community/vitpose-base-simple"


def test_no_person_gives_zero_frames_and_flag(cache):
    write_random_model("rtdetr-r50")
    write_random_model("vitpose-base")
    ann = SkeletonAnnotator(detection_threshold=1.0)  # no sigmoid score exceeds 1
    ann.load()
    out = ann.annotate([make_clip(person_clip())])[0]
    assert out.raw["keypoints"].shape == (5, 1, 18, 3) and not out.raw["keypoints"].any()
    assert out.meta["no_person"] is True and out.meta["person_count"] == 0


def test_bad_options_and_frames(cache):
    with pytest.raises(ValueError, match="backend"):
        SkeletonAnnotator(backend="openpose")
    write_random_model("rtdetr-r50")
    write_random_model("vitpose-base")
    ann = SkeletonAnnotator()
    ann.load()
    with pytest.raises(ValueError, match="uint8"):
        ann.annotate([make_clip(np.zeros((5, 8, 8), np.uint8))])


def test_blazepose_backend_reports_what_is_missing(cache, monkeypatch):
    ann = SkeletonAnnotator(backend="blazepose")  # `cache` is empty: the weights are not there
    assert "openuni-models pull blazepose-full" in ann.unavailable()
    monkeypatch.setattr("annotators.skeleton.find_spec", lambda name: None)  # as without ai-edge-litert
    with pytest.raises(ImportError, match="ai-edge-litert==2.3.0"):
        ann.load()
