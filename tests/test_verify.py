"""`--verify` finds a shard corrupted or truncated after the build; `--repair` remakes exactly its
clips on the next run."""

from __future__ import annotations

import json

from openuni_builder.commands.build import main
from tests.conftest import numbered_frames, tiny_config, write_video
from tests.test_build import read_samples


def test_verify_reports_damaged_shards_and_repair_remakes_exactly_their_clips(tmp_path, ray_local, capsys):
    rows = []
    for i in range(6):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(30 + i, 48, 64), 25.0)
        rows.append({"path": f"v{i}.mp4"})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    args = ["--source", "manifest", "--input", str(tmp_path / "clips.jsonl"), "--shards", str(out),
            "--config", str(tiny_config(tmp_path)), "--no-progress"]  # 2 samples per shard
    assert main(args) == 0
    capsys.readouterr()
    assert main(["--source", "manifest", "--shards", str(out), "--verify"]) == 0
    assert "3 shards verified, 0 damaged" in capsys.readouterr().out

    shards = sorted((out / "shards").glob("*.tar"))
    damaged, untouched = shards[0], shards[2]
    data = bytearray(damaged.read_bytes())
    data[700] ^= 0xFF  # one flipped byte inside the first member
    damaged.write_bytes(bytes(data))
    truncated = shards[1]
    truncated.write_bytes(truncated.read_bytes()[:1500])
    assert main(["--source", "manifest", "--shards", str(out), "--verify"]) == 1
    report = capsys.readouterr().out
    assert damaged.name in report and truncated.name in report and "2 damaged" in report
    assert untouched.name not in report

    assert main(["--source", "manifest", "--shards", str(out), "--verify", "--repair"]) == 1
    assert "4 clips will be remade" in capsys.readouterr().out
    assert untouched.exists() and not damaged.exists()
    assert main(args) == 0  # the same command remakes exactly those clips
    stats = json.loads((out / "stats.json").read_text())
    assert stats["run"]["processed"] == 4 and stats["total"]["samples"] == 6  # the third shard's 2 kept
    keys = [s["__key__"] for s in read_samples(out)]
    assert len(keys) == len(set(keys)) == 6
    assert main(["--source", "manifest", "--shards", str(out), "--verify"]) == 0
