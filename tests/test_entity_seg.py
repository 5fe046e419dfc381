"""Entity segmentation through the real Mask2Former and Sam2Video code, from tiny models in a temp cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotators import get_annotator
from annotators.entities import Segment, entity_meta
from annotators.entity_seg import EntitySegAnnotator
from annotators.mask2former_sam2 import PanopticSegmenter, propagate_entities
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.models import ModelUnavailable, model_dir
from openuni_builder.random_models import write_random_model
from tests.tiny_segcap import two_squares_clip

SEGMENTER, TRACKER = "mask2former-swin-t-coco-panoptic", "sam2.1-hiera-tiny"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_random_model(SEGMENTER, cache=root)
    write_random_model(TRACKER, cache=root)
    return root


@pytest.fixture
def env(cache, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(cache))
    torch.set_num_threads(1)
    return cache


@pytest.fixture
def tracker(env):
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    path = model_dir(TRACKER)
    return Sam2VideoModel.from_pretrained(path).eval(), Sam2VideoProcessor.from_pretrained(path)


def test_keyframe_segmentation_gives_labelled_full_size_masks(env):
    segmenter = PanopticSegmenter(model_dir(SEGMENTER), torch.device("cpu"), torch.float32,
                                  threshold=0.0, mask_threshold=0.2, overlap_mask_area_threshold=0.0)
    frames, _ = two_squares_clip(num_frames=2, size=48)
    frames = np.concatenate([frames, frames[:, :, :16]], axis=2)  # 48 x 64: padding must be cropped away
    per_frame = segmenter(frames)
    assert len(per_frame) == 2 and per_frame[0]
    for segment in per_frame[0]:
        assert segment.mask.shape == (48, 64) and segment.mask.dtype == bool and segment.mask.any()
        assert segment.label in {"thing", "stuff"}
    assert np.sum([s.mask for s in per_frame[0]], axis=0).max() == 1  # panoptic: segments are disjoint


def test_sam2_propagates_two_objects_over_five_frames(tracker):
    model, processor = tracker
    frames, truth = two_squares_clip(num_frames=5, size=64, ids=(1, 2))
    session = processor.init_video_session(video=frames, inference_device="cpu")
    processor.add_inputs_to_inference_session(session, frame_idx=0, obj_ids=[1, 2],
                                              input_masks=[truth[0] == 1, truth[0] == 2])
    outputs = list(model.propagate_in_video_iterator(session, start_frame_idx=0))
    assert [o.frame_idx for o in outputs] == [0, 1, 2, 3, 4]
    assert all(o.object_ids == [1, 2] for o in outputs)
    masks = processor.post_process_masks([outputs[0].pred_masks], original_sizes=[[64, 64]])[0]
    assert masks.shape == (2, 1, 64, 64)
    # Frame 0 is the mask prompt itself: each object's mask is its square.
    for k, entity_id in enumerate((1, 2)):
        iou = (masks[k, 0].numpy() & (truth[0] == entity_id)).sum() / (masks[k, 0].numpy() | (truth[0] == entity_id)).sum()
        assert iou > 0.8


def test_given_first_frame_ids_are_tracked_without_renumbering(tracker):
    model, processor = tracker
    frames, truth = two_squares_clip(num_frames=5, size=64, ids=(3, 7))
    ids, labels = propagate_entities(model, processor, frames, {}, first_frame_ids=truth[0])
    assert ids.dtype == np.uint16 and ids.shape == truth.shape
    assert set(np.unique(ids[0])) == {0, 3, 7}
    assert set(np.unique(ids)) <= {0, 3, 7}
    assert labels == {3: None, 7: None}
    for entity_id in (3, 7):
        assert ((ids[0] == entity_id) & (truth[0] == entity_id)).sum() > 0.8 * (truth[0] == entity_id).sum()


@pytest.mark.parametrize("max_coverage, new_ids", [(1.01, {4, 5}), (0.0, set())])
def test_reseeded_segments_become_new_ids_only_when_uncovered(tracker, max_coverage, new_ids):
    model, processor = tracker
    frames, truth = two_squares_clip(num_frames=5, size=64, ids=(3, 7))
    first = np.where(truth[0] == 3, 3, 0).astype(np.uint16)  # only the red square given at frame 0
    reseed = {2: [Segment(truth[2] == 7, "blue"), Segment(truth[2] == 3, "red")]}
    ids, labels = propagate_entities(model, processor, frames, reseed, first_frame_ids=first,
                                     new_entity_max_coverage=max_coverage)
    assert set(labels) == {3} | new_ids
    assert set(np.unique(ids[:2])) <= {0, 3}  # later entities are absent before their keyframe
    assert set(np.unique(ids)) <= {0, 3} | new_ids
    if new_ids:
        assert labels[4] == "blue" and labels[5] == "red"
        assert 4 in np.unique(ids[2])


def test_propagation_rejects_bad_inputs(tracker):
    model, processor = tracker
    frames, truth = two_squares_clip(num_frames=5, size=64)
    with pytest.raises(ValueError, match="first_frame_ids"):
        propagate_entities(model, processor, frames, {}, first_frame_ids=truth[0, :10])
    with pytest.raises(ValueError, match="uint8"):
        propagate_entities(model, processor, frames.astype(np.float32), {}, first_frame_ids=truth[0])
    with pytest.raises(ValueError, match="keyframes"):
        propagate_entities(model, processor, frames, {9: []})


def test_annotator_end_to_end_with_reseeding(env):
    frames, _ = two_squares_clip(num_frames=9, size=64)
    clip = Clip(request=ClipRequest(source="t", video_id="v", path="x.mp4"), spec=ClipSpec(9, 8.0, 64, 64),
                frames=frames)
    annotator = get_annotator("seg")(reseed_every=4, threshold=0.0, mask_threshold=0.2, overlap_mask_area_threshold=0.0,
                                     min_area=0.0, device="cpu")
    assert annotator.unavailable() is None
    annotator.load()
    (out,) = annotator.annotate([clip])
    ids = out.raw["ids"]
    assert ids.dtype == np.uint16 and ids.shape == (9, 64, 64)
    meta = out.meta
    present = {int(i) for i in np.unique(ids) if i}
    assert {e["id"] for e in meta["entities"]} == present and meta["num_entities"] == len(present)
    assert all(e["label"] in {"thing", "stuff"} and 0 < e["area"] <= 1 for e in meta["entities"])
    assert sum(e["area"] for e in meta["entities"]) <= 1 + 1e-6
    assert annotator.provenance()["tracker"]["name"] == TRACKER


def test_entity_meta_counts_areas_and_first_frames():
    ids = np.zeros((2, 4, 4), np.uint16)
    ids[0, :2] = 5
    ids[1, 2:, :2] = 9
    meta = entity_meta(ids, {5: "cat", 9: None, 11: "lost"})
    assert meta == {"num_entities": 2, "entities": [
        {"id": 5, "label": "cat", "area": 0.25, "first_frame": 0},
        {"id": 9, "label": None, "area": 0.125, "first_frame": 1}]}


def test_missing_models_reported_cheaply(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    message = EntitySegAnnotator().unavailable()
    assert SEGMENTER in message and f"openuni-models pull {SEGMENTER}" in message
    with pytest.raises(ModelUnavailable):
        EntitySegAnnotator().load()
