"""The proof the dataset is usable: shards written by `openuni-build` itself train the bundled
UnityVideo trainer and export to UnityVideo's CSV layout."""

from __future__ import annotations

import csv
import json
import math

import yaml
from tests.shard_fixtures import model_cache, tiny_cache  # noqa: F401  (pytest fixtures)

from openuni_builder.commands.build import main as build_main
from openuni_builder.commands import export, train
from openuni_builder.video_io import decode_mp4
from tests.conftest import tiny_config


def test_real_build_trains_and_exports(tmp_path, ray_local, tiny_cache):  # noqa: F811
    out = tmp_path / "out"
    assert build_main(["--source", "synthetic", "--limit", "3", "--shards", str(out),
                       "--config", str(tiny_config(tmp_path)), "--no-progress"]) == 0
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"hidden": 48, "depth": 2, "heads": 4, "patch": [1, 4, 4]},
        "data": {"num_frames": 5, "height": 16, "width": 16, "batch_size": 2, "shuffle": 4, "modalities": ["flow"]},
        "train": {"steps": 4, "lr": 2e-3, "warmup": 1, "log_every": 1, "ckpt_every": 2, "ema_decay": 0.9}}))
    run = tmp_path / "run"
    assert train.main(["--shards", str(out / "shards"), "--config", str(config), "--out", str(run), "--steps", "4"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) and "modality/flow" in r for r in rows)

    dest = tmp_path / "unityvideo"
    assert export.main(["--format", "unityvideo", str(out), str(dest)]) == 0
    with open(dest / "raft.csv") as fh:
        entries = list(csv.DictReader(fh))
    assert len(entries) == 3 and set(entries[0]) == {"video", "prompt", "raft"}
    for entry in entries:
        rgb = decode_mp4((dest / entry["video"]).read_bytes())
        flow = decode_mp4((dest / entry["raft"]).read_bytes())
        assert rgb.shape == flow.shape and rgb.shape[0] == 9
