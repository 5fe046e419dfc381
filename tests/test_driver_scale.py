"""The driver at scale: streaming listing with an early stop, checks made where the actors run,
RAY_ADDRESS honoured. (Growth figures are in bench/driver_scale.py, not here.)"""

from __future__ import annotations

import itertools
import json

import pytest

from openuni_builder.build import BuildError, BuildOptions, build
from openuni_builder.sources import base as source_base
from openuni_builder.sources.base import VideoIndex, read_table
from openuni_builder.random_models import write_random_model
from tests.conftest import numbered_frames, tiny_config, write_video


def test_read_table_streams_and_stops_early(tmp_path, monkeypatch):
    monkeypatch.setattr(source_base, "BATCH_ROWS", 100)
    path = tmp_path / "big.csv"
    with open(path, "w") as fh:
        fh.write("videoID,caption,score\n")
        for i in range(5000):
            fh.write(f"vid{i}_0,clip {i},{i / 10}\n")
    parsed = []
    real = source_base._batches

    def counting(fh, suffix):
        for frame in real(fh, suffix):
            parsed.append(len(frame))
            yield frame

    monkeypatch.setattr(source_base, "_batches", counting)
    first = list(itertools.islice(read_table(path), 150))
    assert [r["videoID"] for r in first[:2]] == ["vid0_0", "vid1_0"] and first[-1]["score"] == pytest.approx(14.9)
    assert sum(parsed) <= 200  # two batches read, not 5000 rows


def test_video_index_walks_the_tree_once(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "top.mp4").write_bytes(b"x")
    (tmp_path / "a" / "b" / "deep.mkv").write_bytes(b"x")
    index = VideoIndex(tmp_path)
    walks = []
    real = type(tmp_path).rglob
    monkeypatch.setattr(type(tmp_path), "rglob", lambda self, p: walks.append(p) or real(self, p))
    assert index.find("top") == tmp_path / "top.mp4"
    assert index.find("deep") == tmp_path / "a" / "b" / "deep.mkv"
    assert index.find("missing") == tmp_path / "missing.mp4"  # the path the user should provide
    assert index.find("deep") == tmp_path / "a" / "b" / "deep.mkv"
    assert len(walks) == 1


def test_a_node_without_the_model_fails_at_start_naming_node_and_model(tmp_path, ray_local, monkeypatch):
    """The driver's cache has the model, the workers' (ray_model_cache) does not."""
    driver_cache = tmp_path / "driver-cache"
    write_random_model("depth-anything-v2-small", cache=driver_cache)
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(driver_cache))
    write_video(tmp_path / "v.mp4", numbered_frames(30, 48, 64), 25.0)
    (tmp_path / "clips.jsonl").write_text(json.dumps({"path": str(tmp_path / "v.mp4")}))
    config = tiny_config(tmp_path, "  depth: {device: cpu, resources: {num_cpus: 0.5}}\n")
    with pytest.raises(BuildError) as err:
        build(BuildOptions(source="manifest", input=tmp_path / "clips.jsonl", out=tmp_path / "out",
                           config=str(config), progress=False))
    message = str(err.value)
    assert "depth cannot start on node" in message and "depth-anything-v2-small" in message, message


def test_ray_address_in_the_environment_is_attached_to(monkeypatch):
    import ray

    from openuni_builder import runtime

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert runtime.init_ray(None, 2) is False and calls[-1]["address"] == "127.0.0.1:6379"
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")  # the job API's address: not a cluster
    assert runtime.init_ray(None, 2) is True and calls[-1]["address"] == "local"


def crash_manifest(tmp_path, n: int = 4):
    rows = []
    for i in range(n):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(30, 48, 64), 25.0)
        rows.append({"path": str(tmp_path / f"v{i}.mp4"), "id": f"v{i}"})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path / "clips.jsonl"


@pytest.mark.parametrize("batch_size", [2, 1])  # a batch of one goes clip by clip at once
def test_a_clip_that_kills_its_worker_is_failed_after_bounded_retries(tmp_path, ray_local, batch_size):
    config = tiny_config(tmp_path, "  flow: {backend: dis}\n"
                         f"  crashing: {{crash_on: [v1], resources: {{batch_size: {batch_size}}}}}\n")
    stats = build(BuildOptions(source="manifest", input=crash_manifest(tmp_path), out=tmp_path / "out",
                               config=str(config), progress=False))
    assert stats["run"]["written"] == 3 and stats["total"]["failed"] == 1
    failed = [json.loads(line) for line in (tmp_path / "out" / "ledger" / "failed.jsonl").read_text().splitlines()]
    assert [f["video_id"] for f in failed] == ["v1"] and failed[0]["stage"] == "crashing"
    assert "ended its worker process 2 times" in failed[0]["reason"]


def test_a_clip_that_hangs_is_timed_out(tmp_path, ray_local):
    config = tiny_config(tmp_path, "  crashing: {hang_on: [v2], resources: {batch_size: 1, timeout_s: 3}}\n")
    stats = build(BuildOptions(source="manifest", input=crash_manifest(tmp_path, 3), out=tmp_path / "out",
                               config=str(config), progress=False))
    assert stats["run"]["written"] == 2 and stats["total"]["failed"] == 1
    failed = json.loads((tmp_path / "out" / "ledger" / "failed.jsonl").read_text().splitlines()[0])
    assert failed["video_id"] == "v2" and "timed out after 3s" in failed["reason"]


def test_a_decoder_that_hangs_is_timed_out(tmp_path, ray_local):
    """A source "video" that is a FIFO nobody writes: FFmpeg's open blocks in C forever, as a stuck
    network mount or a decoder caught in a loop would. The decode stage's watchdog ends the worker;
    the clip is failed with the reason and the others are written."""
    import os

    manifest = crash_manifest(tmp_path, 2)
    os.mkfifo(tmp_path / "stuck.mp4")
    with manifest.open("a") as fh:
        fh.write("\n" + json.dumps({"path": str(tmp_path / "stuck.mp4"), "id": "stuck"}))
    config = tiny_config(tmp_path)
    config.write_text(config.read_text().replace("decode: {num_cpus: 0.5, concurrency: 2}",
                                                 "decode: {num_cpus: 0.5, concurrency: 2, timeout_s: 3}"))
    stats = build(BuildOptions(source="manifest", input=manifest, out=tmp_path / "out", config=str(config),
                               progress=False))
    assert stats["run"]["written"] == 2 and stats["total"]["failed"] == 1
    failed = json.loads((tmp_path / "out" / "ledger" / "failed.jsonl").read_text().splitlines()[0])
    assert failed["video_id"] == "stuck" and failed["stage"] == "decode" and "timed out after 3s" in failed["reason"]


def test_the_index_is_written_and_summarised_a_batch_at_a_time(tmp_path):
    from openuni_builder.publish.index_summary import IndexSummary
    from openuni_builder.shards import write_index

    rows = [{"key": f"k{i}", "shard": f"s{i // 3}.tar", "source": "koala36m" if i % 2 else "panda70m",
             "bytes": 100 + i, "member_bytes": {"mp4": 10 * i, "json": 5}, "scores": {"clarity": i / 10},
             "filters": {"motion": {"mean": 0.5 * i}}, "facts": {}, "duration": 3.0, "modalities": ["flow"]}
            for i in range(7)]
    totals = write_index(({**r} for r in rows), tmp_path / "index.parquet", batch=2)
    assert totals == {"samples": 7, "shards": 3, "bytes": sum(100 + i for i in range(7))}
    summary = IndexSummary.read(tmp_path / "index.parquet", batch=2)
    assert summary.samples == 7 and summary.per_source == {"koala36m": 3, "panda70m": 4}
    assert summary.mean_bytes("mp4") == 30 and list(summary.series["motion.mean"]) == [0.5 * i for i in range(7)]
    assert list(summary.scores["clarity"]) == [i / 10 for i in range(7)]
    from openuni_builder.publish.balance import read_index

    assert [r["key"] for r in read_index(tmp_path)] == [f"k{i}" for i in range(7)]  # readers see the same index
