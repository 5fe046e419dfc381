"""`openuni-build --add` / `--refresh`: more modalities for an existing build from its own shards.

The tiny random-weight Depth Anything stands in for the real model (in the cache the Ray workers
see, or written by each actor with --dry-run); flow is the real DIS backend."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openuni_builder import incremental, pixelplanes
from openuni_builder.commands.build import main
from openuni_builder.location import move as incremental_move
from openuni_builder.shards import iter_tar_samples
from openuni_builder.random_models import write_random_model
from tests.conftest import numbered_frames, tiny_config, write_video
from tests.test_build import manifest, read_samples
from tests.test_data_plane import assert_same_samples, members_by_key, s3_manifest

ROOT = Path(__file__).resolve().parents[1]
DEPTH_MODEL = "depth-anything-v2-small"
FLOW = "  flow: {backend: dis, resources: {num_cpus: 0.5}}\n"
FLOW_DEPTH = FLOW + "  depth: {device: cpu, frame_batch: 4, resources: {num_cpus: 0.5}}\n"


def config(tmp: Path, name: str, annotators: str, max_samples: int = 2) -> str:
    folder = tmp / name
    folder.mkdir(exist_ok=True)
    return str(tiny_config(folder, annotators=annotators, max_samples=max_samples))


def shard_member_sets(out: Path) -> dict[str, set[frozenset[str]]]:
    """Per shard in OUT/shards, the distinct member sets of its samples (one each when uniform)."""
    found = {}
    for path in sorted((out / "shards").glob("*.tar")):
        try:
            with tarfile.open(path) as tar:
                found[path.name] = {frozenset(m) for _, m in iter_tar_samples(tar)}
        except (tarfile.TarError, FileNotFoundError, OSError):  # swapped away while being read
            continue
    return found


def without_depth_params(meta: dict) -> dict:
    """KEY.json less what follows the predicted depth values (the depth codec's per-clip value range,
    the depth quality scores): depth from the stored RGB is close to, not equal to, depth from the
    source frames."""
    meta = json.loads(json.dumps(meta))
    meta["modalities"]["depth"].pop("pixelplanes")
    meta["quality"] = {k: v for k, v in meta.get("quality", {}).items() if not k.startswith("depth")}
    return meta


@pytest.fixture
def tiny_depth(ray_model_cache):
    """The tiny Depth Anything in the cache the embedded Ray's workers read, removed afterwards."""
    write_random_model(DEPTH_MODEL, cache=ray_model_cache)
    yield
    shutil.rmtree(ray_model_cache / DEPTH_MODEL)


def test_add_depth_equals_a_build_of_both_and_refresh_keeps_the_old_provenance(tmp_path, ray_local, tiny_depth,
                                                                               monkeypatch, capsys):
    import datasets

    meta = manifest(tmp_path, n_good=3, bad=False)
    flow_only, both = config(tmp_path, "flow", FLOW), config(tmp_path, "both", FLOW_DEPTH)
    added, reference = tmp_path / "added", tmp_path / "reference"
    source = ["--source", "manifest", "--input", str(meta), "--no-progress"]
    assert main([*source, "--shards", str(added), "--config", flow_only]) == 0
    before = members_by_key([str(p) for p in sorted((added / "shards").glob("*.tar"))])
    shard_names = sorted(p.name for p in (added / "shards").glob("*.tar"))
    capsys.readouterr()

    assert main(["--shards", str(added), "--add", "depth", "--config", both, "--no-progress", "--strict"]) == 0
    printed = capsys.readouterr().out
    assert "--add depth: 3 samples in 2 shards have depth (3 annotated this run, 0 failed" in printed
    assert main([*source, "--shards", str(reference), "--config", both]) == 0

    # Same keys and shard names; byte-identical RGB, caption and flow; the same member sets.
    assert sorted(p.name for p in (added / "shards").glob("*.tar")) == shard_names
    after = members_by_key([str(p) for p in sorted((added / "shards").glob("*.tar"))])
    expected = members_by_key([str(p) for p in sorted((reference / "shards").glob("*.tar"))])
    assert sorted(after) == sorted(expected) == sorted(before)
    for key, members in after.items():
        assert set(members) == set(expected[key]) == set(before[key]) | {"depth.mp4", "depth.raw.mkv"}
        for member in ("mp4", "txt", "flow.mp4", "flow.raw.mkv"):
            assert members[member] == before[key][member], (key, member)
        assert without_depth_params(json.loads(members["json"])) == without_depth_params(json.loads(expected[key]["json"]))
        # Depth from the stored (H.264) RGB, against depth from the decoded source frames.
        ours = pixelplanes.load_raw(members["depth.raw.mkv"])["disparity"]
        theirs = pixelplanes.load_raw(expected[key]["depth.raw.mkv"])["disparity"]
        assert ours.shape == theirs.shape and np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9
    assert_same_samples({k: {m: v for m, v in s.items() if not m.startswith("depth") and m != "json"}
                         for k, s in after.items()},
                        {k: {m: v for m, v in s.items() if not m.startswith("depth") and m != "json"}
                         for k, s in expected.items()})

    # The index, stats, card and identity say so; the ledger holds each key once.
    index = pd.read_parquet(added / "index.parquet")
    assert sorted(index["key"]) == sorted(after) and all(list(m) == ["depth", "flow"] for m in index["modalities"])
    stats = json.loads((added / "stats.json").read_text())
    assert stats["modalities"]["produced"] == ["flow", "depth"] and stats["total"]["samples"] == 3
    assert stats["change"]["add"] == ["depth"] and stats["run"]["stages"]["depth"]["clips"] == 3
    assert "depth" in (added / "README.md").read_text()
    identity = json.loads((added / "build.json").read_text())
    assert identity["annotators"] == ["flow", "depth"] and "pending" not in identity
    assert identity["modalities"]["depth"]["model"] == DEPTH_MODEL and identity["modalities"]["depth"]["revision"]
    assert identity["history"][-1]["add"] == ["depth"]
    done = [json.loads(line)["key"] for line in (added / "ledger" / "done.jsonl").read_text().splitlines()]
    assert sorted(done) == sorted(after)
    assert not list(added.glob(".add-*"))

    # It reads back through HF datasets, every sample with the same columns.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    ds = datasets.load_dataset("webdataset", data_files={"train": str(added / "shards" / "*.tar")}, split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 3 and {"mp4", "flow.mp4", "flow.raw.mkv", "depth.mp4", "depth.raw.mkv", "json", "txt"} <= set(ds.column_names)

    # Plain reruns: the new identity resumes (nothing to do), the old modality set is refused.
    assert main([*source, "--shards", str(added), "--config", both]) == 0
    assert "0 clips written" in capsys.readouterr().out
    assert main([*source, "--shards", str(added), "--config", flow_only]) == 2
    assert "different identity" in capsys.readouterr().err
    # Adding what is there, or dry-run annotations into a real build, is refused.
    assert main(["--shards", str(added), "--add", "depth", "--config", both, "--no-progress"]) == 2
    assert "--refresh depth" in capsys.readouterr().err
    assert main(["--shards", str(added), "--add", "seg", "--dry-run", "--config", both, "--no-progress"]) == 2
    assert "never mix" in capsys.readouterr().err

    # --refresh: new depth members, the old provenance kept; everything else as it was.
    assert main(["--shards", str(added), "--refresh", "depth", "--config", both, "--no-progress"]) == 0
    refreshed = members_by_key([str(p) for p in sorted((added / "shards").glob("*.tar"))])
    for key, members in refreshed.items():
        assert set(members) == set(after[key]) and members["mp4"] == after[key]["mp4"]
        depth = json.loads(members["json"])["modalities"]["depth"]
        assert depth["previous"] == [json.loads(after[key]["json"])["modalities"]["depth"]["provenance"]]
    identity = json.loads((added / "build.json").read_text())
    assert identity["modalities"]["depth"]["previous"][0]["model"] == DEPTH_MODEL
    assert [h["command"] for h in identity["history"]] == ["--add depth", "--refresh depth"]


def corrupt_rgb(shard: Path, key: str) -> None:
    """Rewrite `shard` with `key`'s RGB mp4 replaced by bytes no decoder reads."""
    with tarfile.open(shard) as tar:
        samples = list(iter_tar_samples(tar))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for k, members in samples:
            for ext in sorted(members):
                data = b"not an mp4" if (k, ext) == (key, "mp4") else members[ext]
                info = tarfile.TarInfo(f"{k}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_a_killed_add_resumes_without_loss_duplicates_or_mixed_shards(tmp_path, ray_local, capsys):
    """A dry-run build (flow), one sample's RGB made unreadable, then `--add depth --dry-run`
    killed (driver and Ray, in their own process group) once some samples are staged, and rerun.
    The unreadable sample leaves the dataset for the failure ledger; every other one gains depth
    exactly once; no shard ever mixes member sets."""
    n = 4
    rows = []
    for i in range(n):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(40, 48, 64), 25.0)
        rows.append({"path": f"v{i}.mp4", "caption": f"clip {i}"})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    common = ["--shards", str(out), "--no-progress", "--dry-run"]
    build = [*common, "--source", "manifest", "--input", str(tmp_path / "clips.jsonl"), "--limit", str(n)]
    assert main([*build, "--config", config(tmp_path, "flow", FLOW)]) == 0
    keys = sorted(s["__key__"] for s in read_samples(out))
    assert len(keys) == n
    bad_shard = sorted((out / "shards").glob("*.tar"))[0]
    with tarfile.open(bad_shard) as tar:
        bad_key = next(iter_tar_samples(tar))[0]
    corrupt_rgb(bad_shard, bad_key)

    both = config(tmp_path, "both", FLOW + "  depth: {resources: {num_cpus: 0.5, batch_size: 1}}\n")
    add = [*common, "--add", "depth", "--config", both]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "openuni_builder.commands.build", *add, "--num-cpus", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    staged = []
    while time.time() < deadline and proc.poll() is None and not staged:
        staged = list(out.glob(".add-*/staged/*/*.manifest.json"))
        assert all(len(sets) == 1 for sets in shard_member_sets(out).values())
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert staged, "the kill should land once some samples are staged"
    staged_at_kill = {path: path.stat().st_mtime_ns for path in out.glob(".add-*/staged/*/*")}
    assert all(len(sets) == 1 for sets in shard_member_sets(out).values())
    assert json.loads((out / "build.json").read_text())["pending"]["add"] == ["depth"]
    capsys.readouterr()
    assert main([*build, "--config", both]) == 2  # a plain build waits for the add to finish
    assert "unfinished" in capsys.readouterr().err

    # The rerun stops again mid-swap (one tar moved, its manifest not): still no shard mixes.
    moves = []

    def move_then_die(src, dst):
        if moves:
            raise RuntimeError("killed mid-swap")
        moves.append(src)
        incremental_move(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(incremental, "move", move_then_die)
        with pytest.raises(RuntimeError, match="mid-swap"):
            main(add)
    assert moves and all(len(sets) == 1 for sets in shard_member_sets(out).values())
    # What the killed run staged was kept, not annotated again.
    assert all(path.stat().st_mtime_ns == when for path, when in staged_at_kill.items())

    assert main(add) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["change"]["annotated_this_run"] == 0  # all staged before: only the swap was left
    samples = read_samples(out)
    got = [s["__key__"] for s in samples]
    assert len(got) == len(set(got)) == n - 1 and sorted(got + [bad_key]) == keys
    assert all(len(sets) == 1 for sets in shard_member_sets(out).values())
    assert {frozenset(k for k in s if not k.startswith("__")) for s in samples} == {
        frozenset({"mp4", "json", "txt", "flow.mp4", "flow.raw.mkv", "depth.mp4", "depth.raw.mkv"})}
    assert all(json.loads(s["json"])["dry_run"] is True for s in samples)
    failed = [json.loads(line) for line in (out / "ledger" / "failed.jsonl").read_text().splitlines()]
    assert [(f["key"], f["stage"]) for f in failed][-1] == (bad_key, "read")
    assert stats["total"]["failed"] == 1 and stats["total"]["samples"] == n - 1
    assert sorted(pd.read_parquet(out / "index.parquet")["key"]) == sorted(got)
    assert not list(out.glob(".add-*")) and "pending" not in json.loads((out / "build.json").read_text())
    assert main(["--shards", str(out), "--verify"]) == 0  # every tar matches its manifest

    # When most of the build fails (here: every RGB unreadable), nothing is replaced.
    for shard in (out / "shards").glob("*.tar"):
        with tarfile.open(shard) as tar:
            for key, _ in list(iter_tar_samples(tar)):
                corrupt_rgb(shard, key)
    before = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    capsys.readouterr()
    assert main([*common, "--refresh", "depth", "--config", both]) == 2
    assert "nothing was replaced" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == before


@pytest.mark.slow
def test_add_and_refresh_on_an_object_store_build(tmp_path, ray_local, s3, monkeypatch):
    """The same change against a build at s3:// (SeaweedFS on 127.0.0.1): the workers read and
    write the shards there, the swap is a server-side copy, and the result reads back from the
    store through webdataset and HF datasets."""
    import datasets

    from openuni_builder.build import BuildOptions, build
    from openuni_builder.incremental import ChangeOptions, change
    from openuni_builder.location import shard_files, webdataset_reads_uris

    monkeypatch.setenv("OPENUNI_STAGING", str(tmp_path / "staging"))
    target = f"s3://{s3.bucket}/runs/incremental"
    first = build(BuildOptions(source="manifest", input=s3_manifest(s3, "incremental"), out=target, limit=3,
                               config=config(tmp_path, "flow", FLOW), progress=False, dry_run=True,
                               storage_options=s3.options))
    assert first["run"]["written"] == 3
    webdataset_reads_uris(s3.options)
    before = members_by_key(shard_files(f"{target}/shards", s3.options))
    both = config(tmp_path, "both", FLOW + "  depth: {resources: {num_cpus: 0.5}}\n")
    options = dict(out=target, config=both, progress=False, dry_run=True, storage_options=s3.options)
    stats = change(ChangeOptions(add=["depth"], **options))
    assert stats["change"]["samples"] == 3 and stats["modalities"]["produced"] == ["flow", "depth"]
    # Another machine (an empty staging folder) refreshes it: the identity comes from OUT.
    monkeypatch.setenv("OPENUNI_STAGING", str(tmp_path / "elsewhere"))
    stats = change(ChangeOptions(refresh=["depth"], **options))
    assert stats["change"]["refresh"] == ["depth"] and stats["total"]["samples"] == 3

    after = members_by_key(shard_files(f"{target}/shards", s3.options))
    assert sorted(after) == sorted(before)
    for key, members in after.items():
        assert set(members) == set(before[key]) | {"depth.mp4", "depth.raw.mkv"}
        assert members["mp4"] == before[key]["mp4"] and members["flow.raw.mkv"] == before[key]["flow.raw.mkv"]
        assert len(json.loads(members["json"])["modalities"]["depth"]["previous"]) == 1
    fs = s3.filesystem()
    # No work object is left (SeaweedFS's filer may keep the emptied folder itself; S3 has none).
    assert not [path for path in fs.find(f"{s3.bucket}/runs/incremental") if "/.add-" in path]
    identity = json.loads(fs.cat(f"{s3.bucket}/runs/incremental/build.json"))
    assert identity["annotators"] == ["flow", "depth"] and identity["modalities"]["depth"]["previous"]
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    ds = datasets.load_dataset("webdataset", data_files={"train": f"{target}/shards/*.tar"}, split="train",
                               storage_options=s3.options["s3"], cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 3 and {"depth.mp4", "depth.raw.mkv", "flow.mp4"} <= set(ds.column_names)


def test_identity_versions_old_build_json_and_refusals(tmp_path):
    """build.json without versions (written before they existed) is accepted and gains them; a
    rerun with another model is refused with the --refresh hint, one with more modalities with
    the --add hint; --add and --refresh check what the build has."""
    from openuni_builder.config import load_config
    from openuni_builder.identity import IdentityError, begin_change, check, finish_change

    flow = load_config(config(tmp_path, "flow", FLOW))
    small = load_config(config(tmp_path, "small", FLOW + "  depth: {model: depth-anything-v2-small}\n"))
    large = load_config(config(tmp_path, "large", FLOW + "  depth: {model: depth-anything-v2-large}\n"))
    out = tmp_path / "out"
    out.mkdir()
    old = {"pipeline": "tiny", "spec": {"num_frames": 9, "fps": 8.0, "height": 32, "width": 48}, "dry_run": False,
           "annotators": ["flow"]}
    (out / "build.json").write_text(json.dumps(old))
    identity = check(out, flow, dry_run=False)
    assert identity["modalities"]["flow"]["model"] == "opencv-dis" and identity["modalities"]["flow"]["recorded_later"]
    assert json.loads((out / "build.json").read_text())["modalities"]["flow"]["code"].startswith("openuni-builder")
    with pytest.raises(IdentityError, match="--add depth"):
        check(out, small, dry_run=False)

    pending = begin_change(out, small.without({"flow"}), False, ["depth"], [])
    assert pending["versions"]["depth"]["revision"] and pending["command"] == "--add depth"
    assert begin_change(out, small.without({"flow"}), False, ["depth"], [])["id"] == pending["id"]  # resumes
    with pytest.raises(IdentityError, match="unfinished"):
        check(out, small, dry_run=False)
    with pytest.raises(IdentityError, match="unfinished"):
        begin_change(out, small.without({"flow"}), False, [], ["depth"])
    finish_change(out)
    assert check(out, small, dry_run=False)["annotators"] == ["flow", "depth"]
    with pytest.raises(IdentityError, match="--refresh depth"):
        check(out, large, dry_run=False)
    with pytest.raises(IdentityError, match="not in the build"):
        begin_change(out, small, False, [], ["seg"])
    begin_change(out, large.without({"flow"}), False, [], ["depth"])
    depth = finish_change(out)["modalities"]["depth"]
    assert depth["model"] == "depth-anything-v2-large" and depth["previous"][0]["model"] == "depth-anything-v2-small"
    assert check(out, large, dry_run=False)["modalities"]["depth"]["model"] == "depth-anything-v2-large"
