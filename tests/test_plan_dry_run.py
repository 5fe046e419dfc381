"""`--plan` (resolved stages and GPU packing, nothing run) and `--dry-run` (the whole graph with
tiny random-weight models that each actor writes itself; output marked and never mixed)."""

from __future__ import annotations

import json

import pytest

from openuni_builder.commands.build import main
from openuni_builder.config import load_config
from openuni_builder.models import load_registry
from openuni_builder.runtime import PlanError, pack_gpus, plan, resolve_stages
from openuni_builder.tiny_models import WRITERS
from tests.conftest import numbered_frames, tiny_config, write_video
from tests.test_build import read_samples

ALL = ("  depth: {resources: {num_cpus: 0.25}}\n  seg: {resources: {num_cpus: 0.25}}\n"
       "  caption: {resources: {num_cpus: 0.25}}\n  skeleton: {resources: {num_cpus: 0.25}}\n"
       "  densepose: {resources: {num_cpus: 0.25}}\n")


def test_every_registered_model_has_a_tiny_writer():
    assert set(WRITERS) == set(load_registry())


def test_gpu_actors_pack_by_fraction(tmp_path):
    cfg = load_config(tiny_config(tmp_path, annotators=ALL + "  flow: {resources: {num_cpus: 0.25}}\n"))
    stages = resolve_stages(cfg, cluster_gpus=3)
    gpus = {s.name: s.resources.num_gpus for s in stages}
    assert gpus == {"decode": 0, "depth": 0.25, "seg": 0.5, "caption": 1.0, "skeleton": 0.25, "densepose": 0.5,
                    "flow": 0, "encode": 0}
    packing = pack_gpus(stages, 3)
    assert [sum(f for _, f in g) for g in packing] == [1.0, 0.75, 0.75]  # 2.5 GPUs of asks, spread over 3
    assert resolve_stages(cfg, cluster_gpus=0)[1].resources.num_gpus == 0  # no GPU: asks dropped
    with pytest.raises(PlanError, match="2.5 GPUs"):
        plan(cfg, 8, 2)
    six = load_config(tiny_config(tmp_path, annotators="  seg: {resources: {num_gpus: 0.6, concurrency: 3}}\n"))
    with pytest.raises(PlanError, match="do not pack"):  # 1.8 GPUs fit in total but a 0.6 never spans two
        plan(six, 8, 2)


def test_plan_prints_stages_and_packing_without_running(tmp_path, capsys):
    config = tiny_config(tmp_path, annotators=ALL)
    out = tmp_path / "out"
    code = main(["--source", "samples", "--shards", str(out), "--config", str(config), "--plan", "--gpus", "3",
                 "--num-cpus", "8"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "cluster: 8 CPUs, 3 GPUs" in text
    assert "GPU 0: caption x1  (1 of 1)" in text and "GPU 1: seg x1, depth x1  (0.75 of 1)" in text
    assert "GPU 2: densepose x1, skeleton x1  (0.75 of 1)" in text
    assert "model missing on this machine" in text  # shown, not dropped
    assert "    depth: depth-anything-v2-small (Apache-2.0, not cached here)" in text  # Annotator.models()
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}
    assert rows["depth"][1:8] == ["actors", "0.25", "0.25", "2", "1", "4", "0.25"]
    assert not out.exists()  # nothing ran
    code = main(["--source", "samples", "--shards", str(out), "--config", str(config), "--plan", "--gpus", "2"])
    assert code == 1 and "does not fit" in capsys.readouterr().out


def test_plan_on_the_attached_cluster(tmp_path, ray_local, capsys):
    assert main(["--source", "samples", "--shards", str(tmp_path / "o"), "--config", str(tiny_config(tmp_path)),
                 "--plan"]) == 0
    text = capsys.readouterr().out
    assert "cluster: 2 CPUs, 0 GPUs" in text and "flow" in text


def test_dry_run_runs_tiny_models_and_never_mixes_with_a_real_build(tmp_path, ray_local, monkeypatch, capsys):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path / "empty-cache"))  # no model anywhere
    rows = []
    for i in range(6):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(40, 48, 64), 25.0)
        rows.append({"path": f"v{i}.mp4", "caption": f"clip {i}"})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    config = tiny_config(tmp_path, annotators="  depth: {resources: {num_cpus: 0.25}}\n"
                                               "  flow: {backend: raft, resources: {num_cpus: 0.25}}\n")
    args = ["--source", "manifest", "--input", str(tmp_path / "clips.jsonl"), "--shards", str(tmp_path / "out"),
            "--config", str(config), "--no-progress"]
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "DRY RUN" in printed and "stage depth" in printed
    samples = read_samples(tmp_path / "out")
    assert len(samples) == 4  # --dry-run defaults to a few clips
    for s in samples:
        meta = json.loads(s["json"])
        assert meta["dry_run"] is True
        assert {"depth.mp4", "depth.raw.mkv", "flow.mp4", "flow.raw.mkv"} <= set(s)
        assert meta["modalities"]["flow"]["provenance"]["backend"] != "opencv-dis"  # RAFT ran, tiny
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["dry_run"] is True and stats["total"]["failed"] == 0
    assert set(stats["run"]["stages"]) == {"decode", "depth", "flow", "encode", "write"}
    assert all(t["clips"] == 4 for t in stats["run"]["stages"].values())
    assert json.loads((tmp_path / "out" / "build.json").read_text())["dry_run"] is True
    assert main(args) == 2  # a real build into the dry run's directory is refused
    assert "dry_run" in capsys.readouterr().err
