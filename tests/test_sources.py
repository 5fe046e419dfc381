"""Each source parser on small metadata fixtures written here."""

from __future__ import annotations

from dataclasses import replace

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from openuni_builder.clip import ClipSpec
from openuni_builder.sources import SourceContext, SourceError, get_source
from openuni_builder.sources.base import parse_timestamp
from tests.conftest import numbered_frames, write_video

SPEC = ClipSpec(num_frames=9, fps=8, height=32, width=32)
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def ctx(tmp: Path, input: Path | None, video_root: Path | None = None) -> SourceContext:
    return SourceContext(input=input, work_dir=tmp / "out", spec=SPEC, video_root=video_root)


def test_timestamps_parse_hours_minutes_seconds():
    assert parse_timestamp("0:01:20.880") == pytest.approx(80.88)
    assert parse_timestamp("1:00:00.5") == pytest.approx(3600.5)
    assert parse_timestamp("12.25") == 12.25 and parse_timestamp(None) is None


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_koala36m_rows_become_clips_with_scores(tmp_path, fmt):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "abcDEF123_x.mp4").write_bytes(b"x")
    rows = pd.DataFrame({
        "videoID": ["abcDEF123_x_3", "zzzzzzzzzzz_0"], "url": ["https://y/abcDEF123_x", "https://y/zzzzzzzzzzz"],
        "timestamp": ["['0:00:01.500', '0:00:04.000']", "['0:01:00.000', '0:01:05.250']"],
        "caption": ["a dog runs", "a car"], "clarity_score": [0.9, 0.4], "aesthetic_score": [5.1, 4.0],
        "motion_score": [3.0, 1.0], "video_training_suitability_score": [0.8, 0.2]})
    meta = tmp_path / f"koala.{fmt}"
    rows.to_csv(meta, index=False) if fmt == "csv" else rows.to_parquet(meta)
    reqs = list(get_source("koala36m").requests(ctx(tmp_path, meta, tmp_path / "videos")))
    assert [r.video_id for r in reqs] == ["abcDEF123_x", "zzzzzzzzzzz"]
    assert [r.clip_index for r in reqs] == [3, 0]
    assert (reqs[0].start, reqs[0].end) == (1.5, 4.0) and reqs[1].end == pytest.approx(65.25)
    assert reqs[0].path.endswith("videos/abcDEF123_x.mp4")
    assert reqs[1].path.endswith("videos/zzzzzzzzzzz.mp4")  # expected path; decode will report it missing
    assert reqs[0].scores == {"clarity_score": 0.9, "aesthetic_score": 5.1, "motion_score": 3.0,
                              "video_training_suitability_score": 0.8}
    assert reqs[0].caption == "a dog runs" and all(KEY_RE.match(r.key) for r in reqs)


def test_koala36m_without_input_offline_says_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="--input"):
        list(get_source("koala36m").requests(ctx(tmp_path, None)))


def test_panda70m_expands_per_clip_lists(tmp_path):
    meta = tmp_path / "panda.csv"
    pd.DataFrame({
        "videoID": ["vid1vid1vid"], "url": ["https://y/vid1vid1vid"],
        "timestamp": ["[['0:00:00.000', '0:00:03.000'], ['0:01:20.880', '0:01:23.983']]"],
        "caption": ["['first clip', 'second clip']"], "matching_score": ["[0.41, 0.37]"],
        "desirable_filtering": ["['desirable', 'static_filtering']"],
        "shot_boundary_detection": ["[[['0:00:00.000', '0:00:03.000']], [['0:01:20.880', '0:01:23.983']]]"],
    }).to_csv(meta, index=False)
    reqs = list(get_source("panda70m").requests(ctx(tmp_path, meta, tmp_path)))
    assert [r.clip_index for r in reqs] == [0, 1]
    assert reqs[1].start == pytest.approx(80.88) and reqs[1].end == pytest.approx(83.983)
    assert [r.caption for r in reqs] == ["first clip", "second clip"]
    assert reqs[0].scores == {"matching_score": 0.41}
    assert reqs[1].extra["desirable_filtering"] == "static_filtering"
    assert len({r.key for r in reqs}) == 2


def test_panda70m_rejects_mismatched_lists_and_missing_input(tmp_path):
    meta = tmp_path / "panda.csv"
    pd.DataFrame({"videoID": ["vvvvvvvvvvv"], "url": ["u"], "timestamp": ["[['0:00:00.0', '0:00:03.0']]"],
                  "caption": ["['a', 'b']"]}).to_csv(meta, index=False)
    (bad,) = list(get_source("panda70m").requests(ctx(tmp_path, meta)))  # a row to ledger, not a stop
    assert bad.row == 1 and bad.column == "caption" and "2 entries for 1 clips" in bad.reason
    with pytest.raises(SourceError, match="--input"):
        list(get_source("panda70m").requests(ctx(tmp_path, None)))


def test_manifest_jsonl_relative_paths_scores_and_safe_keys(tmp_path):
    meta = tmp_path / "clips.jsonl"
    lines = [{"path": "a.mp4", "start": 1, "end": 3, "caption": "c", "quality": 0.7},
             {"path": "a.mp4", "start": 4, "end": 6},
             {"path": "../../../etc/passwd", "id": "../../evil/..//x"},
             {"url": "https://example.org/v.mp4"}]
    meta.write_text("\n".join(json.dumps(r) for r in lines))
    reqs = list(get_source("manifest").requests(ctx(tmp_path, meta)))
    assert reqs[0].path == str(tmp_path / "a.mp4") and reqs[0].scores == {"quality": 0.7}
    assert [r.clip_index for r in reqs[:2]] == [0, 1] and reqs[0].key != reqs[1].key
    assert reqs[3].path == "https://example.org/v.mp4"
    for r in reqs:  # keys name files inside OUT: no separators, no dots, nothing to escape with
        assert KEY_RE.match(r.key), r.key


def test_manifest_needs_a_path_column(tmp_path):
    meta = tmp_path / "bad.csv"
    meta.write_text("caption\nhello\n")
    (bad,) = list(get_source("manifest").requests(ctx(tmp_path, meta)))
    assert bad.column == "path" and "neither `path` nor `url`" in bad.reason


def test_folder_splits_videos_into_shots(tmp_path):
    import numpy as np

    frames = numbered_frames(50, 64, 64)
    frames[:25] = np.clip(frames[:25].astype(int) // 4, 0, 255)
    frames[25:, :, :, 0] = 255  # a hard cut to red at 1 s
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    write_video(root / "sub" / "cut.mp4", frames, 25.0)
    write_video(root / "plain.mp4", numbered_frames(30, 64, 64) // 8, 25.0)
    folder = get_source("folder")
    reqs = list(folder.requests(replace(ctx(tmp_path, root), shot_detector="content")))  # --shot-detector content
    assert folder.detector.name == "content"
    cut = [r for r in reqs if r.video_id == "sub/cut"]
    assert len(cut) == 2 and cut[0].end == pytest.approx(1.0, abs=0.05) and cut[1].start == pytest.approx(1.0, abs=0.05)
    assert [r.video_id for r in reqs if r.video_id == "plain"] == ["plain"]
    assert all(KEY_RE.match(r.key) for r in reqs)


def test_synthetic_renders_lazily_at_the_build_spec_with_ground_truth(tmp_path):
    from itertools import islice

    from openuni_builder.synthetic import load_gt

    reqs = list(islice(get_source("synthetic").requests(ctx(tmp_path, None)), 2))  # as --limit 2 does
    assert [r.video_id for r in reqs] == ["synthetic_0", "synthetic_1"]
    assert sorted(p.name for p in (tmp_path / "out" / "sources" / "synthetic").iterdir()) == [
        "synthetic_0.gt.npz", "synthetic_0.mp4", "synthetic_1.gt.npz", "synthetic_1.mp4"]
    for seed, req in enumerate(reqs):
        assert req.source == "synthetic" and req.extra["kind"] == "synthetic" and req.extra["seed"] == seed
        assert load_gt(req.extra["ground_truth"])["ids"].shape == (SPEC.num_frames, SPEC.height, SPEC.width)
    with pytest.raises(SourceError, match="takes no --input"):
        next(get_source("synthetic").requests(ctx(tmp_path, tmp_path)))


def test_keys_are_stable_and_distinct():
    from openuni_builder.clip import ClipRequest

    a = ClipRequest(source="s", video_id="v.1", path="p", start=1.0, end=2.0)
    b = ClipRequest(source="s", video_id="v.1", path="other/path", start=1.0, end=2.0)
    c = ClipRequest(source="s", video_id="v.1", path="p", start=1.0, end=2.5)
    assert a.key == b.key != c.key and "." not in a.key


def test_download_is_opt_in_and_a_failed_fetch_names_its_reason(tmp_path, monkeypatch):
    import builtins

    from openuni_builder.download import fetch_video
    from openuni_builder.video_io import BadVideo

    meta = tmp_path / "koala.csv"
    pd.DataFrame({"videoID": ["abcabcabcab_0"], "url": ["https://www.youtube.com/watch?v=abcabcabcab"],
                  "timestamp": ["['0:00:00.0', '0:00:03.0']"], "caption": ["c"]}).to_csv(meta, index=False)
    plain = next(get_source("koala36m").requests(ctx(tmp_path, meta, tmp_path)))
    assert "download_url" not in plain.extra
    opted = SourceContext(input=meta, work_dir=tmp_path, spec=SPEC, video_root=tmp_path, download=True)
    req = next(get_source("koala36m").requests(opted))
    assert req.extra["download_url"] == "https://www.youtube.com/watch?v=abcabcabcab"
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "yt_dlp" else real_import(name, *a, **k))
    with pytest.raises(BadVideo, match=r"openuni-builder\[download\]"):
        fetch_video(req.extra["download_url"], req.path)


@pytest.mark.parametrize("name, data, says", [
    ("garbage.parquet", bytes(range(256)) * 8, "Parquet magic bytes not found"),
    ("quote.csv", b'path,start\n"unterminated,1\n', "EOF inside string"),
])
def test_an_unreadable_metadata_file_is_one_clear_error(tmp_path, name, data, says):
    """A metadata file that is not what its name says stops the listing with a SourceError naming
    the file (openuni-build prints it as one `error:` line and exits 2), never a traceback."""
    meta = tmp_path / name
    meta.write_bytes(data)
    with pytest.raises(SourceError, match=f"cannot read metadata {re.escape(str(meta))}: .*") as err:
        list(get_source("manifest").requests(ctx(tmp_path, meta)))
    assert says in str(err.value)


def test_a_garbage_line_in_jsonl_metadata_is_a_bad_row_and_the_listing_goes_on(tmp_path):
    meta = tmp_path / "clips.jsonl"
    meta.write_bytes(b'\xff\xfe\x00garbage\n{"path": "a.mp4"}\n')
    bad, good = get_source("manifest").requests(ctx(tmp_path, meta))
    assert bad.row == 1 and bad.reason.startswith("not a JSON object") and good.path == str(tmp_path / "a.mp4")


def test_duplicate_keys_in_a_listing_are_counted_and_built_once():
    """The same clip listed twice (a metadata file concatenated with itself, a source listing a
    video under two rows) is one clip: the first wins, the rest are counted."""
    from openuni_builder.build import Listing
    from openuni_builder.clip import ClipRequest

    reqs = [ClipRequest(source="s", video_id=f"v{i % 3}", path=f"v{i % 3}.mp4", start=0.0, end=2.0) for i in range(7)]
    listing = Listing(reqs, done={}, filtered={}, failed={}, retry_failed=False)
    todo = list(listing.todo())
    assert [r.video_id for r in todo] == ["v0", "v1", "v2"]
    assert listing.listed == 3 and listing.duplicates == 4 and listing.todo_count == 3
