"""Person detector (tiny random RT-DETR through the real loading code) and the IoU tracker."""

import numpy as np
import pytest
import torch
from openuni_builder.random_models import write_random_model
from tests.tiny_humans import person_clip
from transformers import RTDetrForObjectDetection, RTDetrImageProcessor

from annotators.person_detect import IouTracker, PersonDetector, PersonTracks, box_iou
from openuni_builder.models import ModelUnavailable


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    return tmp_path


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_tracker_keeps_ids_and_numbers_new_people():
    tracker = IouTracker(iou_threshold=0.3, max_gap=1)
    left, right = np.array([0, 0, 10, 20.0]), np.array([30, 0, 40, 20.0])
    assert tracker.update([left, right]) == [0, 1]
    # both move a little and come back in the other order: ids follow the boxes
    assert tracker.update([right + 1, left + 1]) == [1, 0]
    # a third person appears far from both
    assert tracker.update([left + 2, np.array([60, 0, 70, 20.0]), right + 2]) == [0, 2, 1]
    # person 1 is missed for one frame (within max_gap) and keeps its id
    assert tracker.update([left + 3]) == [0]
    assert tracker.update([left + 3, right + 3]) == [0, 1]
    # person 2 has been gone for 2 frames (> max_gap): same place now means a new id
    assert tracker.update([np.array([60, 0, 70, 20.0])]) == [3]
    assert tracker.update([]) == []


def test_person_tracks_meta_and_cap():
    H, W = 20, 40
    box = np.array([[0, 0, 10, 20]], np.float32)  # area 200 = 0.25 of the frame
    two = np.array([[0, 0, 10, 20], [30, 0, 40, 10]], np.float32)
    none = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    dets = [(box, np.ones(1)), (two, np.ones(2)), none, (box, np.ones(1))]
    tracks = PersonTracks.from_frames(dets, H, W, IouTracker())
    assert tracks.num_tracks == 2 and tracks.present.tolist() == [[1, 0], [1, 1], [0, 0], [1, 0]]
    meta = tracks.meta()
    assert meta == {"person_count": 2, "person_frame_fraction": 0.75,
                    "mean_box_area_fraction": pytest.approx((3 * 0.25 + 0.125) / 4),
                    "max_people_per_frame": 2, "no_person": False}
    capped = PersonTracks.from_frames(dets, H, W, IouTracker(), max_people=1)
    assert capped.num_tracks == 1 and capped.present[:, 0].tolist() == [1, 1, 0, 1]
    empty = PersonTracks.from_frames([none, none], H, W, IouTracker()).meta()
    assert empty["no_person"] and empty["person_count"] == 0 and empty["person_frame_fraction"] == 0.0


def test_unavailable_names_model_without_loading(cache):
    detector = PersonDetector("rtdetr-r50")
    assert "rtdetr-r50" in detector.unavailable() and "openuni-models pull rtdetr-r50" in detector.unavailable()
    with pytest.raises(ModelUnavailable):
        detector.load()


def test_detections_equal_reference_pipeline(cache):
    path = write_random_model("rtdetr-r50")
    frames = person_clip()
    detector = PersonDetector("rtdetr-r50", threshold=0.0, batch_size=2)
    assert detector.unavailable() is None
    detector.load()
    found = detector.detect(frames)

    processor = RTDetrImageProcessor.from_pretrained(path)
    model = RTDetrForObjectDetection.from_pretrained(path).eval()
    with torch.no_grad():
        outputs = model(**processor(images=list(frames), return_tensors="pt"))
    reference = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(48, 64)] * 5)
    assert sum(len(b) for b, _ in found) > 0
    for (boxes, scores), ref in zip(found, reference):
        person = ref["labels"] == 0
        np.testing.assert_allclose(boxes, ref["boxes"][person].numpy(), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(scores, ref["scores"][person].numpy(), rtol=1e-5, atol=1e-6)

    tracks = detector.track(frames)
    assert tracks.boxes.shape[:2] == tracks.present.shape and tracks.present.sum() == sum(len(b) for b, _ in found)


def test_bad_frames_raise(cache):
    write_random_model("rtdetr-r50")
    detector = PersonDetector("rtdetr-r50")
    detector.load()
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((2, 8, 8, 3), np.float32))
