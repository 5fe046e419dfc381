"""A build stopped from outside: SIGTERM / SIGINT mid-build (a clean stop, a summary, a non-zero
exit, and a rerun that resumes) and a full disk (a clear error, nothing half-written in sight, and
a rerun that finishes once space is freed). Both through `openuni-build` in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from openuni_builder.ledger import Ledger
from openuni_builder.verify import verify
from tests.conftest import tiny_config
from tests.test_build import manifest, read_samples

ROOT = Path(__file__).resolve().parents[1]
CLIPS = 12


def command(tmp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "openuni_builder.commands.build", "--source", "manifest", "--input",
            str(manifest(tmp, n_good=CLIPS, bad=False)), "--shards", str(out),
            "--config", str(tiny_config(tmp, max_samples=1)), "--no-progress", "--num-cpus", "2"]


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def assert_complete_once(out: Path) -> None:
    """Every clip exactly once in the shards, the index and the ledger; every shard intact."""
    keys = [s["__key__"] for s in read_samples(out)]
    assert len(keys) == len(set(keys)) == CLIPS, "0 lost, 0 duplicated"
    assert sorted(pd.read_parquet(out / "index.parquet")["key"]) == sorted(keys)
    assert set(Ledger(out).done_keys()) == set(keys)
    assert all(v.ok for v in verify(out / "shards"))


def uncommitted(shards: Path) -> list[str]:
    """Files a reader could mistake for data: temporaries and tars without their manifest."""
    names = {p.name for p in shards.iterdir()} if shards.exists() else set()
    return sorted(n for n in names if ".tmp" in n or (n.endswith(".tar") and n + ".manifest.json" not in names))


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_build_stops_cleanly_and_the_rerun_resumes(tmp_path, sig):
    out = tmp_path / "out"
    cmd = command(tmp_path, out)
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and not list((out / "shards").glob("*.tar")):
            time.sleep(0.02)
        proc.send_signal(sig)  # the driver only, as `kill PID` or a scheduler's stop does
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    summary = [line for line in stderr.splitlines() if line.startswith(f"openuni-build: stopped by {sig.name}")]
    assert len(summary) == 1, stderr[-3000:]
    assert "rerun the same command to resume" in summary[0] and "Traceback" not in stderr
    shards = out / "shards"
    assert uncommitted(shards) == [], "the open shard was finished or discarded"
    written = {p.name for p in shards.glob("*.tar")}
    assert 1 <= len(written) < CLIPS, "the signal should land mid-build"
    done = Ledger(out).done_keys()
    assert set(done.values()) == written, "the ledger names exactly the committed shards"
    assert len(pd.read_parquet(out / "index.parquet")) == len(done)
    assert all(v.ok for v in verify(shards))

    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(done)} already done" in rerun.stderr
    assert written <= {p.name for p in shards.glob("*.tar")}, "nothing finished before the stop is redone"
    assert_complete_once(out)


def mount_tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, and mounting one needs root (CI runs as root)")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_a_full_disk_is_a_clear_error_and_the_rerun_finishes_once_space_is_freed(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "5m")
    try:
        out = disk / "out"
        cmd = command(tmp_path, out)
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        # room for the driver's files and about three samples (~10 KB each), not for twelve
        filler.write_bytes(b"\0" * (free - 80_000))
        full = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
        assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-3000:]
        errors = [line for line in full.stderr.splitlines() if line.startswith("openuni-build: error:")]
        assert len(errors) == 1 and "no space left on the device" in errors[0], full.stderr[-3000:]
        assert "free space" in errors[0] and "rerun the same command" in errors[0]
        assert "Traceback" not in full.stderr.split("openuni-build: error:")[-1]
        assert uncommitted(out / "shards") == [], "nothing half-written in sight"
        assert not list(out.glob("*.tmp")), "no half-written index"
        assert all(v.ok for v in verify(out / "shards"))
        before = len(list((out / "shards").glob("*.tar"))) if (out / "shards").exists() else 0
        assert before < CLIPS

        filler.unlink()  # space is freed
        rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert_complete_once(out)
        stats = json.loads((out / "stats.json").read_text())
        assert stats["total"]["samples"] == CLIPS and stats["total"]["failed"] == 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
