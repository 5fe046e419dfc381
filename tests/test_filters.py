"""Each filter on clips that must pass and clips that must be dropped (with their reasons)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotators.flow import DisFlow
from openuni_builder import pixelplanes
from openuni_builder.clip import Clip, ClipRequest, ModalityOutput
from openuni_builder.config import ConfigError, load_config
from openuni_builder.filters import (BlackFilter, FilterConfigError, FrozenFilter, HashIndex, MetadataFilter,
                                     MotionFilter, NearDuplicateFilter, PersonFilter, SceneCutFilter, ScoreFilter,
                                     clip_phash, parse_filters, phash_distance, run_filters, schedule)
from openuni_builder.video_io import decode_mp4
from pipelines import resolve
from tests.conftest import TINY_SPEC, numbered_frames, write_video
from tests.test_filter_build import panning

rng = np.random.default_rng(0)


def texture(seed: int, t: int = 9, h: int = 32, w: int = 48, shift: int = 2, scale: int = 32) -> np.ndarray:
    """A smooth random texture panning `shift` px per frame (natural-ish, moving content)."""
    return panning(seed, t, shift, h, w, scale)


def clip_of(frames: np.ndarray | None = None, times: list[float] | None = None, **request) -> Clip:
    req = ClipRequest(**{"source": "test", "video_id": "v", "path": "v.mp4", **request})
    clip = Clip(request=req, spec=TINY_SPEC, frames=frames)
    if frames is not None:
        clip.source_info = {"frame_times": times if times is not None else [i / 8 for i in range(len(frames))]}
    return clip


def verdict(f, clip):
    run_filters(clip, (f,))
    return clip.ok, (clip.dropped or {}).get("reason"), clip.filters.get(f.name, (clip.dropped or {}).get("values"))


# --- listing: source scores -------------------------------------------------------------------

def test_scores_thresholds_on_koala_columns():
    f = ScoreFilter(clarity_score={"min": 0.5}, aesthetic_score={"min": 4.0, "max": 8.0})
    ok, reason, values = verdict(f, clip_of(scores={"clarity_score": 0.9, "aesthetic_score": 5.0}))
    assert ok and reason is None and values == {"clarity_score": 0.9, "aesthetic_score": 5.0}
    ok, reason, _ = verdict(f, clip_of(scores={"clarity_score": 0.2, "aesthetic_score": 5.0}))
    assert not ok and reason == "clarity_score 0.2 < min 0.5"
    ok, reason, _ = verdict(f, clip_of(scores={"clarity_score": 0.9, "aesthetic_score": 9.5}))
    assert not ok and reason == "aesthetic_score 9.5 > max 8"


def test_scores_panda_desirable_filtering_and_missing_columns():
    f = ScoreFilter(desirable_filtering={"in": ["desirable"]}, matching_score={"min": 0.3, "missing": "keep"})
    assert verdict(f, clip_of(extra={"desirable_filtering": "desirable"}, scores={"matching_score": 0.5}))[0]
    assert verdict(f, clip_of(extra={"desirable_filtering": "desirable"}))[0]  # matching_score missing: kept
    ok, reason, _ = verdict(f, clip_of(extra={"desirable_filtering": "low_motion"}))
    assert not ok and reason == "desirable_filtering 'low_motion' not in ['desirable']"
    ok, reason, _ = verdict(f, clip_of(scores={"matching_score": 0.5}))
    assert not ok and reason == "desirable_filtering missing from the source"
    ok, reason, _ = verdict(f, clip_of(extra={"desirable_filtering": "desirable"}, scores={"matching_score": 0.1}))
    assert not ok and reason == "matching_score 0.1 < min 0.3"


# --- probe: container metadata ---------------------------------------------------------------

def test_metadata_duration_fps_size_aspect(tmp_path):
    long = write_video(tmp_path / "long.mp4", numbered_frames(60, 48, 64), 25.0)   # 2.4 s, 64x48, 25 fps
    slow = write_video(tmp_path / "slow.mp4", numbered_frames(30, 48, 64), 10.0)   # 3 s at 10 fps
    f = MetadataFilter(duration={"min": 2.0}, fps={"min": 20}, short_side={"min": 32}, aspect={"max": 2.0})
    ok, reason, values = verdict(f, clip_of(path=str(long)))
    assert ok and values["width"] == 64 and values["height"] == 48 and values["fps"] == 25.0
    assert values["duration"] == pytest.approx(2.4, abs=0.05) and values["aspect"] == pytest.approx(64 / 48, abs=1e-3)
    ok, reason, _ = verdict(f, clip_of(path=str(long), start=0.0, end=1.5))  # a segment shorter than 2 s
    assert not ok and reason == "duration 1.5 < min 2"
    ok, reason, _ = verdict(f, clip_of(path=str(slow)))
    assert not ok and reason == "fps 10 < min 20"
    ok, reason, _ = verdict(MetadataFilter(aspect={"min": 1.5}), clip_of(path=str(long)))
    assert not ok and reason.startswith("aspect 1.333 < min 1.5")


# --- content: black, frozen, scene cut -------------------------------------------------------

def test_black_frames():
    f = BlackFilter()
    assert verdict(f, clip_of(texture(1)))[0]
    faded = texture(1)
    faded[-3:] = 2  # a fade to black over the last 3 of 9 frames
    ok, reason, values = verdict(f, clip_of(faded))
    assert not ok and values["black_fraction"] == pytest.approx(3 / 9, abs=1e-3)
    assert reason.startswith("33% of frames are black")
    assert verdict(BlackFilter(max_fraction=0.5), clip_of(faded))[0]


def test_frozen_frames_but_not_repeats_from_a_low_fps_source():
    f = FrozenFilter()
    moving = texture(2)
    assert verdict(f, clip_of(moving))[0]
    still = np.repeat(texture(2)[:1], 9, axis=0)
    speckle = rng.integers(-1, 2, still.shape) * (rng.random(still.shape) < 0.2)  # codec-like noise
    still = np.clip(still.astype(int) + speckle, 0, 255).astype(np.uint8)
    ok, reason, values = verdict(f, clip_of(still))
    assert not ok and values["frozen_fraction"] == 1.0 and "frame transitions are frozen" in reason
    # A 4 fps source resampled to 8 fps repeats every frame; the distinct frames still move.
    repeated = np.repeat(texture(3, t=5, shift=3), 2, axis=0)[:9]
    times = [i // 2 / 4 for i in range(9)]
    ok, _, values = verdict(f, clip_of(repeated, times))
    assert ok and values["distinct_frames"] == 5 and values["frozen_fraction"] == 0.0


def test_scene_cut_inside_a_clip():
    f = SceneCutFilter(detector="content")  # TransNetV2 on real footage: tests/test_shots.py
    assert verdict(f, clip_of(texture(4)))[0]
    cut = np.concatenate([texture(4)[:5], (255 - texture(5))[5:]])
    ok, reason, values = verdict(f, clip_of(cut))
    assert not ok and values["cuts"] == 1
    assert reason.startswith("scene cut between frames 4 and 5 (content score")


# --- content: near-duplicates ----------------------------------------------------------------

def test_perceptual_hash_finds_near_duplicates_only():
    frames = texture(6, scale=8)  # pHash needs some structure; near-flat frames flip bits on noise
    noisy = np.clip(frames.astype(int) + rng.integers(-3, 4, frames.shape), 0, 255).astype(np.uint8)
    brighter = np.clip(frames.astype(int) + 10, 0, 255).astype(np.uint8)
    other = texture(7, scale=8)
    h = clip_phash(frames, 4)
    assert len(h) == 32
    assert phash_distance(h, clip_phash(noisy, 4)) <= 6
    assert phash_distance(h, clip_phash(brighter, 4)) <= 6
    assert phash_distance(h, clip_phash(other, 4)) > 12
    index = HashIndex(max_distance=6)
    index.add("a", h)
    index.add("b", clip_phash(other, 4))
    assert index.nearest(clip_phash(noisy, 4))[0] == "a"
    assert index.nearest(clip_phash(texture(8, scale=8), 4)) is None
    # The filter itself only measures: the driver decides (see test_filter_build).
    ok, _, values = verdict(NearDuplicateFilter(), clip_of(frames))
    assert ok and bytes.fromhex(values["phash"]) == h


# --- annotated: motion and people ------------------------------------------------------------

def flow_clip(magnitude: float, chaotic: bool = False) -> Clip:
    flow = np.zeros((8, 32, 48, 2), np.float32)
    flow[..., 0] = magnitude
    if chaotic:
        flow[:, :4, :, 1] = 60.0  # a small region moving very fast
    clip = clip_of(texture(9))
    clip.outputs["flow"] = ModalityOutput(raw={"flow": flow})
    return clip


def test_motion_too_static_or_too_chaotic():
    f = MotionFilter(mean={"min": 0.3}, peak={"max": 30}, percentile=95)
    ok, _, values = verdict(f, flow_clip(2.0))
    assert ok and values == {"mean": 2.0, "peak": 2.0, "moving": 1.0, "percentile": 95.0, "moving_px": 1.0}
    ok, reason, _ = verdict(f, flow_clip(0.05))
    assert not ok and reason == "mean 0.05 < min 0.3"
    ok, reason, values = verdict(f, flow_clip(2.0, chaotic=True))
    assert not ok and values["peak"] > 30 and reason.startswith("peak 60")
    ok, reason, values = verdict(MotionFilter(moving={"min": 0.001}), flow_clip(0.5))
    assert not ok and values["moving"] == 0 and reason == "moving 0 < min 0.001"


def walkers(people: int, noise: float, size: int = 128, frames: int = 17) -> np.ndarray:
    """A static camera on a still textured hall with sensor noise, and `people` textured figures
    (13 x 5 px, 0.4 % of the frame each) walking 1.5 px/frame: the surveillance clip the old
    `mean >= 0.2` default dropped (its mean flow is ~0.03)."""
    gen = np.random.default_rng(1)
    hall = panning(3, 1, 0, size, size, 16)[0].astype(np.float32)
    figure = gen.integers(0, 255, (13, 5, 3))
    clip = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        frame = hall + gen.normal(0, noise, hall.shape)
        for k in range(people):
            x, y = int(30 + 30 * k + 1.5 * t * (-1) ** k), 40 + 25 * k
            frame[y:y + 13, x:x + 5] = figure
        clip[t] = np.clip(frame, 0, 255)
    return clip


@pytest.mark.parametrize("people, noise, keep", [(0, 0, False), (0, 8, False), (1, 2, True), (3, 2, True)])
def test_default_motion_keeps_small_walking_people_and_drops_still_scenes(tmp_path, people, noise, keep):
    """The default motion bounds of pipelines/openuni.yaml on real DIS flow of H.264 clips."""
    video = write_video(tmp_path / "hall.mp4", walkers(people, noise), 16.0)
    frames = decode_mp4(video.read_bytes())
    clip = clip_of(frames)
    clip.outputs["flow"] = ModalityOutput(raw={"flow": DisFlow("medium")(frames)})
    (motion,) = [f for f in load_config(resolve("openuni")).filters if f.name == "motion"]  # the YAML defaults
    ok, reason, values = verdict(motion, clip)
    assert ok is keep, (reason, values)
    if people:
        assert values["mean"] < 0.2, "the case the old mean bound dropped"
    else:
        assert values["moving"] == 0 and reason.startswith("moving 0 < min")


def human_clip(meta: dict) -> Clip:
    clip = clip_of(texture(10))
    keypoints = np.ones((9, 1, 18, 3), np.float32) * 5
    clip.outputs["skeleton"] = ModalityOutput(raw={"keypoints": keypoints}, meta=dict(meta))
    clip.outputs["densepose"] = ModalityOutput(raw={"iuv": np.full((9, 32, 48, 3), 7, np.uint8)}, meta=dict(meta))
    clip.outputs["flow"] = ModalityOutput(raw={"flow": np.ones((8, 32, 48, 2), np.float32)})
    return clip


PERSON = {"person_count": 1, "person_frame_fraction": 1.0, "mean_box_area_fraction": 0.2,
          "max_people_per_frame": 1, "no_person": False}
NOBODY = {"person_count": 0, "person_frame_fraction": 0.0, "mean_box_area_fraction": 0.0,
          "max_people_per_frame": 0, "no_person": True}


def test_person_coverage_keeps_humans_untouched():
    clip = human_clip(PERSON)
    PersonFilter(min_area=0.05).apply(clip)
    assert clip.ok and clip.filters["person"]["human"] and not clip.filters["person"]["no_person"]
    assert clip.outputs["skeleton"].raw["keypoints"].max() == 5


@pytest.mark.parametrize("meta, reason", [
    (NOBODY, "0 people < min 1"),
    ({**PERSON, "person_frame_fraction": 0.2}, "people in 20% of frames < min 50%"),
    ({**PERSON, "mean_box_area_fraction": 0.01}, "person boxes cover 1.00% < min 5.00%"),
])
def test_person_coverage_blanks_human_modalities_but_keeps_the_clip(meta, reason):
    clip = human_clip(meta)
    PersonFilter(min_area=0.05).apply(clip)
    assert clip.ok, "a clip without people keeps its other modalities"
    assert clip.filters["person"]["no_person"] and clip.filters["person"]["reason"] == reason
    for name in ("skeleton", "densepose"):
        out = clip.outputs[name]
        assert all(not a.any() for a in out.raw.values()) and out.meta["no_person"]
        assert out.meta["blanked"] == f"person filter: {reason}"
    assert clip.outputs["flow"].raw["flow"].all()  # other modalities untouched
    # Blanked outputs still encode to full-size (black) Pixelplanes videos: same members as any sample.
    planes, _ = pixelplanes.encode("skeleton", clip.outputs["skeleton"].raw, 9, size=(32, 48))
    assert planes.shape == (9, 32, 48, 3) and not planes.any()


def test_person_drop_clip_option_drops_it():
    clip = human_clip(NOBODY)
    PersonFilter(drop_clip=True).apply(clip)
    assert not clip.ok and clip.dropped["filter"] == "person" and clip.dropped["reason"] == "0 people < min 1"


# --- configuration ---------------------------------------------------------------------------

def test_parse_filters_validates_and_orders_by_phase():
    filters = parse_filters({"motion": {}, "scores": {"clarity_score": {"min": 0.1}}, "black": None, "frozen": False})
    assert [f.name for f in filters] == ["scores", "black", "motion"]
    for bad, message in [({"blurry": {}}, "unknown"), ({"black": {"max_lum": 1}}, "unknown keys"),
                         ({"near_duplicate": {"max_distance": 9}}, "0..7"),
                         ({"motion": {"mean": {"min": 3, "max": 1}}}, "min 3 > max 1"),
                         ({"scores": {"x": {"missing": "maybe"}}}, "drop or keep")]:
        with pytest.raises(FilterConfigError, match=message):
            parse_filters(bad)
    assert BlackFilter().fingerprint != BlackFilter(max_luma=20).fingerprint


def test_schedule_runs_annotated_filters_after_their_annotators():
    filters = parse_filters({"motion": {}, "person": {}})
    after, inactive = schedule(filters, ["flow", "depth", "skeleton", "densepose"])
    assert {i: [f.name for f in fs] for i, fs in after.items()} == {0: ["motion"], 3: ["person"]}
    assert inactive == []
    after, inactive = schedule(filters, ["depth", "flow"])
    assert {i: [f.name for f in fs] for i, fs in after.items()} == {1: ["motion"]} and inactive == ["person"]


def test_config_rejects_bad_filters(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nfilters:\n  black: {max_fraction: 0.1, colour: red}\n")
    with pytest.raises(ConfigError, match="colour"):
        load_config(path)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 7), st.integers(1, 4), st.randoms(use_true_random=False))
def test_hash_index_finds_exactly_what_a_full_scan_finds(max_distance, frames, rnd):
    """The banded index is an exact near-duplicate search, not an approximation."""
    def flip(h: bytes, bits: int) -> bytes:
        x = bytearray(h)
        for frame in range(len(h) // 8):
            for bit in rnd.sample(range(64), bits):
                x[frame * 8 + bit // 8] ^= 1 << (bit % 8)
        return bytes(x)

    kept = {f"k{i}": rnd.randbytes(8 * frames) for i in range(40)}
    index = HashIndex(max_distance)
    for key, h in kept.items():
        index.add(key, h)
    queries = [flip(h, rnd.randint(0, 10)) for h in list(kept.values())[:20]] + [rnd.randbytes(8 * frames)]
    for q in queries:
        scan = sorted((phash_distance(q, h), k) for k, h in kept.items())
        want = (scan[0][1], scan[0][0]) if scan[0][0] <= max_distance else None
        assert index.nearest(q) == want
