"""openuni-eval against exact ground truth: scorers on arrays, and whole-pipeline fidelity of a real
build of synthetic clips (cut, resize, annotate, encode, write, read back) with DIS flow and the
tiny random-weight Depth Anything model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from annotators.flow import DisFlow
from openuni_builder.commands.build import main as build_main
from openuni_builder.clip import ClipSpec
from openuni_builder.commands.eval import main
from openuni_builder.eval import evaluate, read_samples, score_depth, score_flow, score_seg
from openuni_builder.metrics import epe
from openuni_builder.pixelplanes.storage import sample_raw
from openuni_builder.synthetic import load_gt, render
from openuni_builder.random_models import write_random_model
from openuni_builder.video_io import cut_clip
from tests.conftest import numbered_frames, tiny_config, write_video

# Big enough that DIS sees real motion (0.3-1 px per frame) and halving the flow clearly hurts.
SPEC = ClipSpec(num_frames=17, fps=16.0, height=128, width=128)
CLIPS = 2
DEPTH_MODEL = "depth-anything-v2-small"


@pytest.fixture(scope="module")
def synthetic_build(tmp_path_factory, ray_local, ray_model_cache) -> Path:
    """A real build of 2 synthetic clips with DIS flow and the tiny Depth Anything (in the cache the
    Ray workers see, removed once the build is done)."""
    tmp = tmp_path_factory.mktemp("synthetic_build")
    config = tmp / "pipeline.yaml"
    config.write_text(
        f"name: eval-tiny\nclip: {{num_frames: {SPEC.num_frames}, fps: {SPEC.fps}, height: {SPEC.height}, "
        f"width: {SPEC.width}}}\nannotators:\n"
        "  depth: {device: cpu, resources: {num_cpus: 0.5}}\n"
        "  flow: {backend: dis, resources: {num_cpus: 0.5}}\n"
        "stages:\n  decode: {num_cpus: 0.5, concurrency: 2}\n  encode: {num_cpus: 0.5, concurrency: 2}\n")
    write_random_model(DEPTH_MODEL)
    try:
        code = build_main(["--source", "synthetic", "--limit", str(CLIPS), "--shards", str(tmp / "out"),
                           "--config", str(config), "--no-progress", "--require-all", "--strict"])
    finally:
        shutil.rmtree(ray_model_cache / DEPTH_MODEL)
    assert code == 0
    return tmp / "out"


def test_perfect_predictions_score_perfectly():
    gt = render(ClipSpec(num_frames=5, height=32, width=48), seed=3)
    arrays = {"depth": gt.depth, "flow": gt.flow, "flow_valid": gt.flow_valid, "ids": gt.ids}
    depth = score_depth({"disparity": 2.0 / gt.depth + 0.5}, arrays)  # any scale and shift
    assert depth["abs_rel"] == pytest.approx(0.0, abs=1e-5) and depth["delta1"] == 1.0
    assert score_flow({"flow": gt.flow}, arrays) == {"epe_all": 0.0, "epe_noc": 0.0}
    relabelled = np.array([0, 7, 3, 9, 4], np.uint16)[gt.ids]  # entity ids need not match
    assert score_seg({"ids": relabelled}, arrays) == {"miou": 1.0}


def test_wrong_predictions_score_badly():
    gt = render(ClipSpec(num_frames=5, height=32, width=48), seed=3)
    arrays = {"depth": gt.depth, "flow": gt.flow, "flow_valid": gt.flow_valid, "ids": gt.ids}
    rotated = score_depth({"disparity": 1 / gt.depth[:, ::-1, ::-1]}, arrays)  # right values, wrong places
    assert rotated["abs_rel"] > 0.2 and rotated["delta1"] < 0.9
    assert score_flow({"flow": -gt.flow}, arrays)["epe_all"] == pytest.approx(
        2 * np.linalg.norm(gt.flow, axis=-1).mean(), rel=1e-5)
    assert score_seg({"ids": np.zeros_like(gt.ids)}, arrays) == {"miou": 0.0}
    with pytest.raises(ValueError, match="shape"):
        score_flow({"flow": gt.flow[1:]}, arrays)


def direct_dis_epe(seed: int, video: Path) -> tuple[float, float]:
    """The same backend with no pipeline in between, on the renderer's own frames and on the
    frames of the sample video the build cut its clip from (near-lossless H.264)."""
    clip, dis = render(SPEC, seed), DisFlow("medium")
    decoded, _ = cut_clip(video, SPEC, None, None)
    return epe(dis(clip.frames), clip.flow), epe(dis(decoded), clip.flow)


def test_stored_flow_is_as_good_as_dis_run_directly(synthetic_build, capsys):
    assert main([str(synthetic_build), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((synthetic_build / "eval.json").read_text())
    assert report["synthetic_clips"] == CLIPS and list(report["modalities"]) == ["depth", "flow"]
    assert report["modalities"]["flow"]["provenance"][0]["backend"] == "opencv-dis"
    for clip in report["clips"]:
        video = synthetic_build / "sources" / "synthetic" / f"{clip['video_id']}.mp4"
        flow, (rendered, decoded) = clip["metrics"]["flow"], direct_dis_epe(clip["seed"], video)
        assert flow["raw"]["epe_all"] <= 1.1 * rendered + 0.01, (clip["video_id"], flow, rendered)
        assert flow["raw"]["epe_all"] == pytest.approx(decoded, abs=2e-3)  # only sidecar rounding between
        assert flow["raw"]["epe_noc"] <= flow["raw"]["epe_all"] + 0.01
        for key in ("epe_all", "epe_noc"):  # lossless wheel video: only colour rounding is lost
            assert flow["video"][key] == pytest.approx(flow["raw"][key], rel=0.05, abs=0.01)


def test_negated_or_halved_stored_flow_is_clearly_worse(synthetic_build):
    stored, negated, halved = [], [], []
    for sample in read_samples(synthetic_build):
        gt = load_gt(json.loads(sample["json"])["extra"]["ground_truth"])
        flow = sample_raw(sample, "flow")["flow"]
        for out, pred in ((stored, flow), (negated, -flow), (halved, 0.5 * flow)):
            out.append(score_flow({"flow": pred}, gt)["epe_all"])
    assert len(stored) == CLIPS
    assert np.mean(negated) > 4 * np.mean(stored)
    assert np.mean(halved) > 1.5 * np.mean(stored)


def test_table_shows_depth_metrics_of_the_backend_that_ran(synthetic_build, tmp_path, capsys):
    moved = tmp_path / "moved"  # ground truth found under OUT/sources/ when the build has moved
    shutil.copytree(synthetic_build, moved)
    shutil.rmtree(synthetic_build / "sources")
    try:
        assert main([str(moved)]) == 0
    finally:
        shutil.copytree(moved / "sources", synthetic_build / "sources")
    table = capsys.readouterr().out
    assert f"depth: model={DEPTH_MODEL}" in table and "flow: backend=opencv-dis" in table
    assert "raw AbsRel" in table and "video d<1.25" in table and "raw EPE noc" in table
    assert sum(line.strip().startswith(("synthetic_", "mean")) for line in table.splitlines()) == 2 * (CLIPS + 1)
    depth = json.loads((moved / "eval.json").read_text())["mean"]["depth"]
    for source in ("raw", "video"):
        assert np.isfinite(depth[source]["abs_rel"]) and 0 <= depth[source]["delta1"] <= 1


def test_build_without_synthetic_clips_is_explained(tmp_path, ray_local, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "no shards" in capsys.readouterr().err
    write_video(tmp_path / "real.mp4", numbered_frames(20, 32, 48), 8.0)
    (tmp_path / "clips.jsonl").write_text(json.dumps({"path": "real.mp4"}))
    assert build_main(["--source", "manifest", "--input", str(tmp_path / "clips.jsonl"), "--shards",
                       str(tmp_path / "out"), "--config", str(tiny_config(tmp_path)), "--no-progress"]) == 0
    assert main([str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "has 1 samples but none of a synthetic clip" in err and "--source synthetic" in err
    with pytest.raises(Exception, match="none of a synthetic clip"):
        evaluate(tmp_path / "out")
