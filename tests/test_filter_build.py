"""Filters inside a real build: each bad clip is dropped by its filter with its reason, drops are
not failures, a rerun neither redoes nor retries them, and changed settings re-evaluate them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from openuni_builder.commands.build import main
from tests.conftest import write_video
from tests.test_build import read_samples

FILTERS = """filters:
  scores: {quality: {min: 0.5}}
  metadata: {duration: {min: 1.2}}
  black: {max_fraction: BLACK}
  frozen: {}
  scene_cut: {detector: content}  # the content score, cheap; TransNetV2: tests/test_shots.py
  near_duplicate: {}
  motion: {mean: {min: 3.5}}  # good clips ~4.7 px/frame, slow ~2.3
"""


def panning(seed: int, n: int = 40, shift: int = 2, h: int = 48, w: int = 64, scale: int = 32) -> np.ndarray:
    """A smooth random texture (noise cubic-upsampled by `scale`, like natural images: no cut
    between neighbouring frames) panning `shift` px per frame."""
    width = w + n * shift
    base = np.random.default_rng(seed).integers(0, 256, (h // scale + 2, width // scale + 2, 3), dtype=np.uint8)
    big = cv2.resize(base, (width + 2 * scale, h + 2 * scale), interpolation=cv2.INTER_CUBIC)
    return np.stack([big[:h, i * shift:i * shift + w] for i in range(n)])


def inputs(tmp: Path) -> Path:
    videos = {
        "good0": panning(0), "good1": panning(1),
        "black": np.zeros((40, 48, 64, 3), np.uint8),
        "frozen": np.repeat(panning(2)[:1], 40, axis=0),
        "cut": np.concatenate([panning(3)[:20], 255 - panning(4)[20:]]),
        "slow": panning(5, shift=1),
        "short": panning(6, n=28),  # 1.12 s
    }
    for name, frames in videos.items():
        write_video(tmp / f"{name}.mp4", frames, 25.0)
    shutil.copy(tmp / "good0.mp4", tmp / "good0_copy.mp4")  # its key sorts after good0's
    rows = [{"path": f"{name}.mp4", "quality": 0.9} for name in [*videos, "good0_copy"]]
    write_video(tmp / "lowscore.mp4", panning(7), 25.0)
    rows.append({"path": "lowscore.mp4", "quality": 0.1})
    path = tmp / "clips.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def build(tmp: Path, meta: Path, black: float = 0.2) -> int:
    cfg = tmp / "filters.yaml"
    cfg.write_text("name: tiny\nclip: {num_frames: 9, fps: 8, height: 32, width: 48}\n"
                   "annotators:\n  flow: {backend: dis}\n" + FILTERS.replace("BLACK", str(black)) +
                   "shards: {max_samples: 4}\n"
                   "stages:\n  decode: {num_cpus: 0.5, concurrency: 2}\n  encode: {num_cpus: 0.5, concurrency: 2}\n")
    return main(["--source", "manifest", "--input", str(meta), "--shards", str(tmp / "out"),
                 "--config", str(cfg), "--no-progress", "--strict"])


def filtered(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "ledger" / "filtered.jsonl").read_text().splitlines()]
    return {Path(r["path"]).stem: r for r in rows}


def test_each_filter_drops_its_clip_with_a_reason_and_reruns_skip_drops(tmp_path, ray_local):
    meta = inputs(tmp_path)
    out = tmp_path / "out"
    assert build(tmp_path, meta) == 0, "drops are not failures (--strict passes)"
    kept = {Path(json.loads(s["json"])["path"]).stem for s in read_samples(out)}
    # Of the two near-duplicates, the one decoded first is kept (DedupStage decides as they arrive).
    original, copy = ("good0", "good0_copy") if "good0" in kept else ("good0_copy", "good0")
    assert kept == {original, "good1"}
    drops = filtered(out)
    assert {name: r["filter"] for name, r in drops.items()} == {
        "lowscore": "scores", "short": "metadata", "black": "black", "frozen": "frozen", "cut": "scene_cut",
        copy: "near_duplicate", "slow": "motion"}
    assert drops["lowscore"]["reason"] == "quality 0.1 < min 0.5"
    assert drops["short"]["reason"] == "duration 1.12 < min 1.2"  # dropped before any decode
    assert drops["black"]["values"]["black_fraction"] == 1.0
    assert drops["cut"]["reason"].startswith("scene cut between frames")
    assert drops[copy]["values"]["distance"] == 0
    original_key = next(json.loads(s["json"])["key"] for s in read_samples(out) if b"good0" in s["json"])
    assert drops[copy]["values"]["duplicate_of"] == original_key
    assert drops["slow"]["reason"].startswith("mean ") and drops["slow"]["values"]["mean"] < 3.5
    for sample in read_samples(out):  # kept clips carry every filter's values
        assert set(json.loads(sample["json"])["filters"]) == {
            "scores", "metadata", "black", "frozen", "scene_cut", "near_duplicate", "motion"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["total"]["failed"] == 0 and stats["total"]["filtered"] == 7
    assert stats["filters"]["total"] == {"scores": 1, "metadata": 1, "black": 1, "frozen": 1, "scene_cut": 1,
                                         "near_duplicate": 1, "motion": 1}
    assert (out / "README.md").exists()

    ledger = {p.name: p.read_text() for p in (out / "ledger").glob("*.jsonl")}
    assert build(tmp_path, meta) == 0
    assert {p.name: p.read_text() for p in (out / "ledger").glob("*.jsonl")} == ledger, "nothing redone"
    assert json.loads((out / "stats.json").read_text())["run"]["processed"] == 0

    assert build(tmp_path, meta, black=1.0) == 0  # new black settings: only its drop is re-evaluated
    drops = filtered(out)
    assert drops["black"]["filter"] == "frozen"  # an all-black clip is also frozen
    stats = json.loads((out / "stats.json").read_text())
    assert stats["run"]["processed"] == 1 and stats["filters"]["total"]["frozen"] == 2
