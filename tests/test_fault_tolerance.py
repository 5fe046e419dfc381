"""Failures a long run must survive: a clip that makes a model throw, and an annotator actor
killed mid-run (Ray restarts it and reruns its batches; every clip lands exactly once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.stages import AnnotatorStage
from tests.conftest import numbered_frames, write_video
from tests.test_build import read_samples

ROOT = Path(__file__).resolve().parents[1]


def test_a_clip_that_makes_the_model_throw_fails_alone():
    """The real DIS flow annotator gets a batch where one clip's frames break it: that clip is
    failed with the model's error, the others are annotated."""
    spec = ClipSpec(num_frames=5, fps=8.0, height=32, width=48)
    clips = [Clip(request=ClipRequest(source="t", video_id=f"v{i}", path="x.mp4"), spec=spec,
                  frames=numbered_frames(5, 32, 48)) for i in range(3)]
    clips[1].frames = clips[1].frames.astype(np.float32)  # decoded wrong: the annotator must raise
    stage = AnnotatorStage("flow", {"backend": "dis"})
    out = stage({"clip": np.array([c.to_bytes() for c in clips], dtype=object)})
    back = [Clip.from_bytes(b) for b in out["clip"]]
    assert [c.ok for c in back] == [True, False, True]
    assert back[1].failed_stage == "flow" and "uint8" in back[1].error
    assert back[0].outputs["flow"].raw["flow"].shape == (4, 32, 48, 2)
    assert set(back[0].timings) == {"flow"}


def annotator_actors(root: int, busy: bool = False) -> list[psutil.Process]:
    """Ray Data's annotator actor processes under the build's process tree, found by the process
    title Ray gives them (`ray::MapWorker(MapBatches(AnnotatorStage))`, plus `.submit` while one
    runs a batch)."""
    found = []
    try:
        for p in psutil.Process(root).children(recursive=True):
            try:
                title = " ".join(p.cmdline())
                if "AnnotatorStage" in title and (not busy or title.rstrip().endswith(".submit")):
                    found.append(p)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return found


def test_annotator_actor_killed_mid_run_is_restarted_and_no_clip_is_lost(tmp_path):
    n = 8
    rows = []
    for i in range(n):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(60, 160, 208), 25.0)
        rows.append({"path": f"v{i}.mp4", "caption": f"clip {i}"})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = tmp_path / "slow.yaml"
    cfg.write_text("name: killtest\nclip: {num_frames: 33, fps: 16.0, height: 160, width: 208}\n"
                   "annotators:\n  flow: {backend: dis, dis_preset: medium, resources: {num_cpus: 0.5, batch_size: 1, pool: actors}}\n"
                   "shards: {max_samples: 1}\n"
                   "stages:\n  decode: {num_cpus: 0.5, concurrency: 1}\n  encode: {num_cpus: 0.5, concurrency: 1}\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "openuni_builder.commands.build", "--source", "manifest", "--input", str(tmp_path / "clips.jsonl"),
           "--shards", str(out), "--config", str(cfg), "--no-progress", "--num-cpus", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        victim = None
        while time.time() < deadline and proc.poll() is None:
            busy = annotator_actors(proc.pid, busy=True)
            if busy:  # the actor is annotating a batch: kill it with that batch in flight
                victim = busy[0]
                break
            time.sleep(0.02)
        assert victim is not None, "no annotator actor seen mid-run"
        written_before = len(list((out / "shards").glob("*.tar")))
        victim.send_signal(signal.SIGKILL)
        restarted = None
        while time.time() < deadline and proc.poll() is None and restarted is None:
            restarted = next((p for p in annotator_actors(proc.pid) if p.pid != victim.pid), None)
            time.sleep(0.05)
        log, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log[-3000:]
    assert written_before < n, "the kill should land mid-run"
    assert restarted is not None, "Ray should have started a new annotator actor"
    keys = [s["__key__"] for s in read_samples(out)]
    assert len(keys) == len(set(keys)) == n
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index["key"]) == sorted(keys)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["total"]["failed"] == 0 and stats["run"]["stages"]["flow"]["clips"] == n
