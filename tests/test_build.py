"""End-to-end builds on the embedded Ray: shard format, ledger, resume, bad input, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import webdataset as wds

from openuni_builder.commands.build import main
from openuni_builder.pixelplanes.storage import sample_raw
from openuni_builder.video_io import decode_mp4
from tests.conftest import TINY_SPEC, numbered_frames, tiny_config, write_audio_only, write_video


def manifest(tmp: Path, n_good: int = 3, bad: bool = True) -> Path:
    rows = []
    for i in range(n_good):
        write_video(tmp / f"good{i}.mp4", numbered_frames(40 + i, 48, 64), 25.0)
        rows.append({"path": f"good{i}.mp4", "caption": f"clip {i}", "quality": i / 10})
    if bad:
        (tmp / "zero.mp4").write_bytes(b"")
        (tmp / "text.mp4").write_bytes(b"hello")
        write_audio_only(tmp / "audio.mp4")
        write_video(tmp / "short.mp4", numbered_frames(5, 48, 64), 25.0)
        rows += [{"path": "missing.mp4"}, {"path": "zero.mp4"}, {"path": "text.mp4"}, {"path": "audio.mp4"},
                 {"path": "short.mp4"}, {"path": "good0.mp4", "start": 1.0, "end": 0.5},
                 {"path": "good0.mp4", "start": 9.0, "end": 12.0}]
    path = tmp / "clips.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def read_samples(out: Path) -> list[dict]:
    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return list(wds.WebDataset(shards, shardshuffle=False))


def build(tmp: Path, meta: Path, *extra: str) -> int:
    return main(["--source", "manifest", "--input", str(meta), "--shards", str(tmp / "out"),
                 "--config", str(tiny_config(tmp)), "--no-progress", *extra])


def test_build_writes_webdataset_shards_index_stats_and_ledger(tmp_path, ray_local, capsys):
    assert build(tmp_path, manifest(tmp_path)) == 0
    out = tmp_path / "out"
    samples = read_samples(out)
    assert len(samples) == 3
    members = {frozenset(k for k in s if not k.startswith("__")) for s in samples}
    assert members == {frozenset({"mp4", "json", "txt", "flow.mp4", "flow.raw.mkv"})}
    for s in samples:
        meta = json.loads(s["json"])
        assert "." not in s["__key__"] and meta["key"] == s["__key__"]
        rgb, flow_video = decode_mp4(s["mp4"]), decode_mp4(s["flow.mp4"])
        assert rgb.shape == flow_video.shape == (TINY_SPEC.num_frames, TINY_SPEC.height, TINY_SPEC.width, 3)
        raw = sample_raw(s, "flow")
        assert raw["flow"].shape == (TINY_SPEC.num_frames - 1, TINY_SPEC.height, TINY_SPEC.width, 2)
        assert s["txt"].decode() == meta["caption"] and meta["caption_from"] == "source"
        assert meta["modalities"]["flow"]["provenance"]["backend"] == "opencv-dis"
        assert meta["quality"]["flow_warp_error"] is not None and "depth_flicker" not in meta["quality"]
        assert meta["num_frames"] == TINY_SPEC.num_frames and len(meta["frame_times"]) == TINY_SPEC.num_frames
    assert len(list((out / "shards").glob("*.tar"))) == 2  # max_samples: 2
    assert not list((out / "shards").glob("*.tmp"))
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index["key"]) == sorted(s["__key__"] for s in samples)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["total"]["samples"] == 3 and stats["total"]["failed"] == 6
    failed = [json.loads(line) for line in (out / "ledger" / "failed.jsonl").read_text().splitlines()]
    reasons = " | ".join(f["reason"] for f in failed)
    for expected in ["file not found", "empty (0 bytes)", "not a readable video", "no video stream",
                     "reversed", "beyond the video's end"]:
        assert expected in reasons
    # A too-short segment is a property of the data: dropped with its values, not failed.
    (short,) = [json.loads(line) for line in (out / "ledger" / "filtered.jsonl").read_text().splitlines()]
    assert short["filter"] == "too_short" and "segment is" in short["reason"]
    assert short["values"]["duration"] < short["values"]["needs"] and stats["filters"]["total"] == {"too_short": 1}
    assert "6 failed this run" in capsys.readouterr().out


def test_rerun_resumes_and_retry_failed_only_retries_failures(tmp_path, ray_local):
    meta = manifest(tmp_path)
    build(tmp_path, meta)
    first = (tmp_path / "out" / "ledger" / "done.jsonl").read_text()
    assert build(tmp_path, meta) == 0
    assert (tmp_path / "out" / "ledger" / "done.jsonl").read_text() == first  # nothing redone
    write_video(tmp_path / "missing.mp4", numbered_frames(40, 48, 64), 25.0)  # the user fixes one input
    assert build(tmp_path, meta, "--retry-failed") == 0
    samples = read_samples(tmp_path / "out")
    keys = [s["__key__"] for s in samples]
    assert len(keys) == len(set(keys)) == 4
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    # the too-short clip is a drop, not a failure: --retry-failed leaves it alone
    assert stats["total"]["failed"] == 5 and stats["run"]["processed"] == 6


def test_strict_exits_nonzero_on_failures(tmp_path, ray_local):
    assert build(tmp_path, manifest(tmp_path, n_good=1), "--strict") == 1


def test_a_different_build_identity_is_refused(tmp_path, ray_local):
    meta = manifest(tmp_path, n_good=1, bad=False)
    assert build(tmp_path, meta) == 0
    other = tiny_config(tmp_path, annotators="")
    code = main(["--source", "manifest", "--input", str(meta), "--shards", str(tmp_path / "out"),
                 "--config", str(other), "--no-progress"])
    assert code == 2


def test_killed_build_resumes_without_loss_or_duplicates(tmp_path):
    meta = manifest(tmp_path, n_good=12, bad=False)
    cfg = tiny_config(tmp_path, max_samples=1)
    cmd = [sys.executable, "-m", "openuni_builder.commands.build", "--source", "manifest", "--input", str(meta),
           "--shards", str(tmp_path / "out"), "--config", str(cfg), "--no-progress", "--num-cpus", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    shards = tmp_path / "out" / "shards"
    deadline = time.time() + 120
    while time.time() < deadline and not list(shards.glob("*.tar")):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray processes die mid-run
    proc.wait()
    partial = len(list(shards.glob("*.tar")))
    assert 1 <= partial < 12, "the kill should land mid-run"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    samples = read_samples(tmp_path / "out")
    keys = [s["__key__"] for s in samples]
    assert len(keys) == len(set(keys)) == 12
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert sorted(index["key"]) == sorted(keys)
    assert not list(shards.glob("*.tmp"))
