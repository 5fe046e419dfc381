"""Annotation quality scores on hand-made clips with known answers, the quality filter, and the
bench's fast mode (the scores separate good from corrupted synthetic annotations)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from openuni_builder.clip import Clip, ClipRequest, ClipSpec, ModalityOutput
from openuni_builder.filters.base import FilterConfigError
from openuni_builder.filters.quality import QualityFilter, clip_quality
from openuni_builder.quality import SCORES, person_scores, quality_scores

ROOT = Path(__file__).resolve().parents[1]
SIZE = 96  # below the working size, so the checks see these arrays unresized


def texture(seed: int = 0, size: int = 160) -> np.ndarray:
    """A smooth random RGB texture with detail at several scales (DIS needs something to track)."""
    rng = np.random.default_rng(seed)
    out = sum(cv2.GaussianBlur(rng.normal(0, 1, (size, size, 3)).astype(np.float32), (0, 0), s) * a
              for s, a in ((1.0, 1.0), (3.0, 3.0)))
    out = (out - out.min()) / np.ptp(out) * 255
    return out.astype(np.uint8)


def translated(steps: list[tuple[int, int]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames of a texture panned by integer steps (dx, dy) per frame, and the exact flow.

    Frame t is a SIZE crop whose origin moves by -step, so the content moves by +step."""
    tex = texture(seed)
    origin = np.array([32, 32])
    frames, flows = [], []
    for k in range(len(steps) + 1):
        x, y = origin
        frames.append(tex[y:y + SIZE, x:x + SIZE])
        if k < len(steps):
            origin = origin - np.array(steps[k])
            flows.append(np.broadcast_to(np.array(steps[k], np.float32), (SIZE, SIZE, 2)))
    return np.stack(frames), np.stack(flows).copy()


def boxes_ids(steps: list[tuple[int, int]]) -> np.ndarray:
    """uint16 ids of three boxes (ids 1, 2, 3) moving with the pan, 0 elsewhere."""
    T = len(steps) + 1
    ids = np.zeros((T, SIZE, SIZE), np.uint16)
    corners = {1: np.array([10, 10]), 2: np.array([50, 20]), 3: np.array([20, 55])}
    offset = np.zeros(2, int)
    for t in range(T):
        for i, (x, y) in corners.items():
            x, y = x + offset[0], y + offset[1]
            ids[t, y:y + 25, x:x + 25] = i
        if t < len(steps):
            offset = offset + np.array(steps[t])
    return ids


STEADY = [(2, 1)] * 8
VARYING = [(1, 0), (3, 1)] * 4


# -- flow ---------------------------------------------------------------------------------------

def test_exact_flow_of_a_pan_scores_near_zero_and_a_reversed_one_high():
    frames, flow = translated(STEADY)
    good = quality_scores(frames, {"flow": {"flow": flow}})
    assert good["flow_warp_error"] < 0.5  # integer pan: the warp is exact up to rounding
    assert good["flow_fb_inconsistent"] < 0.02
    assert good["flow_warp_gain"] < 0.05
    assert good["flow_step_ratio"] == pytest.approx(1.0)  # every pair moves alike: a step cannot matter
    flipped = quality_scores(frames, {"flow": {"flow": -flow}})
    assert flipped["flow_fb_inconsistent"] > 0.9
    assert flipped["flow_warp_error"] > 10 * max(good["flow_warp_error"], 0.5)
    doubled = quality_scores(frames, {"flow": {"flow": 2 * flow}})
    assert doubled["flow_fb_inconsistent"] > 0.9  # 2.2 px off: far outside the 0.7 px tolerance
    assert doubled["flow_warp_gain"] > 0.5


def test_step_ratio_tells_a_flow_one_frame_out_of_step():
    frames, flow = translated(VARYING)
    assert quality_scores(frames, {"flow": {"flow": flow}})["flow_step_ratio"] < 0.2
    early = flow[np.minimum(np.arange(len(flow)) + 1, len(flow) - 1)]
    late = flow[np.maximum(np.arange(len(flow)) - 1, 0)]
    for shifted in (early, late):
        assert quality_scores(frames, {"flow": {"flow": shifted}})["flow_step_ratio"] > 5


def test_flow_scores_are_computed_at_the_working_size_for_large_clips():
    frames, flow = translated(STEADY)
    big = np.stack([cv2.resize(f, (2 * SIZE * 2, 2 * SIZE * 2), interpolation=cv2.INTER_LINEAR) for f in frames])
    scores = quality_scores(big, {"flow": {"flow": 4 * np.repeat(np.repeat(flow, 4, 1), 4, 2)}})
    assert scores["flow_fb_inconsistent"] < 0.05 and scores["flow_warp_gain"] < 0.2


# -- depth --------------------------------------------------------------------------------------

def ramp_disparity(steps: list[tuple[int, int]]) -> np.ndarray:
    """A disparity that is a smooth function of the panned scene, so it moves with the frames."""
    yy, xx = np.mgrid[0:160, 0:160].astype(np.float32)
    scene = 1.0 + 0.5 * np.sin(xx / 17.0) + 0.3 * np.cos(yy / 11.0)
    origin, out = np.array([32, 32]), []
    for k in range(len(steps) + 1):
        out.append(scene[origin[1]:origin[1] + SIZE, origin[0]:origin[0] + SIZE])
        if k < len(steps):
            origin = origin - np.array(steps[k])
    return np.stack(out)


def test_consistent_depth_has_no_flicker_at_any_scale_and_a_per_frame_scale_does():
    frames, _ = translated(STEADY)
    disparity = ramp_disparity(STEADY)
    calm = quality_scores(frames, {"depth": {"disparity": disparity}})["depth_flicker"]
    rescaled = quality_scores(frames, {"depth": {"disparity": 1000 * disparity + 7}})["depth_flicker"]
    assert calm < 0.005 and rescaled == pytest.approx(calm, rel=1e-3, abs=1e-6)
    scale = np.array([1.0, 1.15, 0.9, 1.1, 0.85, 1.0, 1.2, 0.9, 1.05], np.float32)[:, None, None]
    assert quality_scores(frames, {"depth": {"disparity": disparity * scale}})["depth_flicker"] > 0.05


def test_constant_depth_and_one_frame_clips_give_none_not_an_error():
    frames, _ = translated(STEADY)
    assert quality_scores(frames, {"depth": {"disparity": np.ones((9, SIZE, SIZE), np.float32)}}) == {
        "depth_flicker": None}
    one = quality_scores(frames[:1], {"depth": {"disparity": np.ones((1, SIZE, SIZE), np.float32)},
                                      "seg": {"ids": np.ones((1, SIZE, SIZE), np.uint16)}})
    assert one["depth_flicker"] is None and one["seg_temporal_iou"] is None and one["seg_coverage"] == 1.0


def test_clips_too_small_for_the_reference_motion_give_none():
    frames = np.random.default_rng(0).integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)  # DIS needs 12 px
    scores = quality_scores(frames, {"flow": {"flow": np.zeros((8, 8, 8, 2), np.float32)},
                                     "seg": {"ids": np.ones((9, 8, 8), np.uint16)}})
    assert scores["flow_warp_error"] is None and scores["seg_temporal_iou"] is None
    assert scores["seg_coverage"] == 1.0 and scores["seg_id_churn"] == 0.0


# -- seg ----------------------------------------------------------------------------------------

def test_tracked_entities_score_high_and_swapped_ids_collapse_the_worst_pair():
    frames, _ = translated(STEADY)
    ids = boxes_ids(STEADY)
    good = quality_scores(frames, {"seg": {"ids": ids}})
    assert good["seg_temporal_iou"] > 0.9 and good["seg_temporal_iou_min"] > 0.85
    assert good["seg_id_churn"] == 0.0
    assert good["seg_coverage"] == pytest.approx(3 * 25 * 25 / SIZE ** 2)
    swapped = ids.copy()
    swapped[5:][ids[5:] == 1], swapped[5:][ids[5:] == 2] = 2, 1
    bad = quality_scores(frames, {"seg": {"ids": swapped}})
    assert bad["seg_temporal_iou_min"] < 0.4  # two of three entities trade ids between frames 4 and 5
    assert bad["seg_temporal_iou"] > 0.8  # ... which the mean over 8 pairs hardly shows
    assert bad["seg_id_churn"] == 0.0  # both ids live on: churn does not see a swap


def test_an_entity_renamed_mid_clip_is_churn():
    frames, _ = translated(STEADY)
    ids = boxes_ids(STEADY)
    ids[5:][ids[5:] == 2] = 9  # lost and re-detected under a new id
    scores = quality_scores(frames, {"seg": {"ids": ids}})
    assert scores["seg_id_churn"] == pytest.approx(2 / 4)  # one death + one birth, four ids seen
    assert scores["seg_temporal_iou_min"] < 0.8


def test_no_entity_gives_zero_coverage_and_no_temporal_scores():
    frames, _ = translated(STEADY)
    scores = quality_scores(frames, {"seg": {"ids": np.zeros((9, SIZE, SIZE), np.uint16)}})
    assert scores == {"seg_coverage": 0.0, "seg_temporal_iou": None, "seg_temporal_iou_min": None,
                      "seg_id_churn": None}


# -- people -------------------------------------------------------------------------------------

def person_clip(T: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints spread over a 30x60 body box, its DensePose IUV and its seg mask."""
    mask = np.zeros((T, SIZE, SIZE), bool)
    mask[:, 20:80, 30:60] = True
    iuv = np.zeros((T, SIZE, SIZE, 3), np.uint8)
    iuv[mask] = (5, 100, 100)
    rng = np.random.default_rng(0)
    kp = np.zeros((T, 2, 18, 3), np.float32)  # track 1 absent (score 0), as padded tracks are
    kp[:, 0, :, 0] = rng.uniform(31, 59, (T, 18))
    kp[:, 0, :, 1] = rng.uniform(21, 79, (T, 18))
    kp[:, 0, :, 2] = 0.9
    return kp, iuv, mask


def test_person_annotations_that_agree_score_one_and_an_offset_skeleton_less():
    kp, iuv, mask = person_clip()
    good = person_scores(kp, iuv, mask)
    assert good == {"skeleton_in_densepose": 1.0, "skeleton_in_seg": 1.0, "densepose_seg_iou": 1.0,
                    "person_agreement": 1.0}
    moved = kp.copy()
    moved[..., 0] += 20
    bad = person_scores(moved, iuv, mask)
    assert bad["skeleton_in_densepose"] < 0.7 and bad["person_agreement"] < 0.8
    missed = person_scores(kp, np.zeros_like(iuv), mask)  # DensePose's detector missed the person
    assert missed["skeleton_in_densepose"] == 0.0 and missed["densepose_seg_iou"] == 0.0


def test_nobody_anywhere_gives_none():
    kp, iuv, mask = person_clip()
    assert person_scores(np.zeros_like(kp), np.zeros_like(iuv), np.zeros_like(mask)) == {
        "skeleton_in_densepose": None, "skeleton_in_seg": None, "densepose_seg_iou": None,
        "person_agreement": None}


def test_seg_person_entities_come_from_the_meta_labels():
    kp, iuv, mask = person_clip()
    frames = np.zeros((5, SIZE, SIZE, 3), np.uint8)
    ids = np.where(mask, 4, 0).astype(np.uint16)
    ids[:, 0:10, 0:10] = 2  # a labelled non-person entity
    metas = {"seg": {"entities": [{"id": 2, "label": "car"}, {"id": 4, "label": "person"}]}}
    scores = quality_scores(frames, {"skeleton": {"keypoints": kp}, "seg": {"ids": ids}}, metas)
    assert scores["skeleton_in_seg"] == 1.0 and "skeleton_in_densepose" not in scores
    unlabelled = quality_scores(frames, {"skeleton": {"keypoints": kp}, "seg": {"ids": ids}})
    assert unlabelled["skeleton_in_seg"] == 0.0  # no entity is a person: the skeleton disagrees


# -- the entry point ----------------------------------------------------------------------------

def test_only_present_modalities_are_scored_and_every_name_is_documented():
    frames, flow = translated(STEADY)
    assert set(quality_scores(frames, {})) == set()
    kp, _, _ = person_clip(9)
    only_skeleton = quality_scores(frames, {"skeleton": {"keypoints": kp}, "caption": {}})
    assert only_skeleton == {}  # nothing to compare a lone skeleton with
    everything = quality_scores(frames, {"flow": {"flow": flow}, "depth": {"disparity": ramp_disparity(STEADY)},
                                         "seg": {"ids": boxes_ids(STEADY)}, "skeleton": {"keypoints": kp}})
    assert set(everything) <= set(SCORES)
    doc = (ROOT / "docs" / "QUALITY.md").read_text()
    assert all(f"`{name}`" in doc for name in SCORES)


def test_arrays_that_do_not_fit_the_frames_are_clear_errors():
    frames, flow = translated(STEADY)
    padded = np.concatenate([flow, flow[-1:]])  # T pairs, as the Pixelplanes video has, not T-1
    with pytest.raises(ValueError, match=r"flow 'flow' has shape \(9, 96, 96, 2\), expected 8x96x96x2"):
        quality_scores(frames, {"flow": {"flow": padded}})
    with pytest.raises(ValueError, match="no 'disparity' array"):
        quality_scores(frames, {"depth": {"depth": np.zeros((9, SIZE, SIZE))}})
    with pytest.raises(ValueError, match="NaN"):
        quality_scores(frames, {"depth": {"disparity": np.full((9, SIZE, SIZE), np.nan, np.float32)}})
    with pytest.raises(ValueError, match="frames must be uint8"):
        quality_scores(frames.astype(np.float32), {})


# -- the filter ---------------------------------------------------------------------------------

def flow_clip(flow: np.ndarray, frames: np.ndarray) -> Clip:
    spec = ClipSpec(num_frames=9, fps=8.0, height=SIZE, width=SIZE)
    return Clip(ClipRequest("synthetic", "pan", "-"), spec, frames=frames,
                outputs={"flow": ModalityOutput(raw={"flow": flow})})


def test_filter_keeps_good_flow_and_drops_reversed_flow_with_its_reason():
    frames, flow = translated(STEADY)
    quality = QualityFilter(flow_fb_inconsistent={"max": 0.2})
    good = flow_clip(flow, frames)
    quality.apply(good)
    assert good.ok and good.filters["quality"]["flow_fb_inconsistent"] < 0.02
    assert clip_quality(good) is good.filters["quality"]  # the encode stage reuses the measurement
    bad = flow_clip(-flow, frames)
    quality.apply(bad)
    assert bad.dropped["filter"] == "quality"
    measured = bad.filters["quality"]["flow_fb_inconsistent"]
    assert measured > 0.9 and bad.dropped["reason"] == f"flow_fb_inconsistent {measured:.4g} > max 0.2"
    assert bad.dropped["values"]["flow_warp_error"] > 5


def test_filter_missing_scores_are_kept_unless_told_and_bad_config_is_refused():
    frames, flow = translated(STEADY)
    clip = flow_clip(flow, frames)
    QualityFilter(person_agreement={"min": 0.5}).apply(clip)
    assert clip.ok
    clip = flow_clip(flow, frames)
    QualityFilter(person_agreement={"min": 0.5, "missing": "drop"}).apply(clip)
    assert clip.dropped["reason"] == "person_agreement not available for this clip (missing: drop)"
    assert QualityFilter.phase == "annotated" and set(QualityFilter.needs) == {
        "flow", "depth", "seg", "skeleton", "densepose"}
    with pytest.raises(FilterConfigError, match="unknown scores"):
        QualityFilter(flow_magic={"max": 1})
    with pytest.raises(FilterConfigError, match="min 2 > max 1"):
        QualityFilter(depth_flicker={"min": 2, "max": 1})
    with pytest.raises(FilterConfigError, match="missing must be drop or keep"):
        QualityFilter(depth_flicker={"max": 1, "missing": "maybe"})


def test_filter_is_scheduled_after_the_last_annotator_it_scores():
    from openuni_builder.filters import schedule

    quality = QualityFilter(depth_flicker={"max": 0.05})
    after, inactive = schedule([quality], ["flow", "depth", "caption", "seg"])
    assert after == {3: (quality,)} and inactive == []
    assert schedule([quality], ["caption"]) == ({}, ["quality"])


def test_quality_reaches_the_index_facts_and_the_cards_histograms(tmp_path):
    from openuni_builder.publish.index_summary import IndexSummary
    from openuni_builder.publish.plots import write_plots
    from openuni_builder.shards import index_row

    rows = [index_row(f"k{i}", "s.tar", {"json": b"{}"},
                      {"quality": {"flow_warp_gain": 0.1 * i, "person_agreement": None}}) for i in range(5)]
    assert rows[2]["facts"]["quality"] == {"flow_warp_gain": pytest.approx(0.2)}  # nulls are not facts
    assert "quality" not in index_row("k", "s.tar", {}, {})["facts"]
    summary = IndexSummary.of_rows(rows)
    assert list(summary.series["quality.flow_warp_gain"]) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    drawn = write_plots(tmp_path, summary, {}, None)
    assert drawn["quality"][0] == "plots/quality.png" and (tmp_path / "plots" / "quality.png").stat().st_size


# -- the bench ----------------------------------------------------------------------------------

def test_bench_fast_mode_separates_every_corruption_kind():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import quality as bench

    figures = bench.run(8, ClipSpec(num_frames=17, fps=16.0, height=128, width=128), quiet=True,
                        presets=("fast",))
    assert figures["met"], figures
    assert set(figures["kinds"]) == set(bench.CORRUPTIONS)
    assert all(k["auroc"] >= bench.TARGET_AUROC for k in figures["kinds"].values())


def test_bench_script_answers_help():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "quality.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:") and "bench quality" in out.stdout
