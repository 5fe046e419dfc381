"""A real two-raylet Ray cluster on one machine, bound to 127.0.0.1 (`ray start --head`, then a
second `ray start --address`): the actors and the shard writers run on both nodes, and losing the
second node mid-run still ends with every clip exactly once after a rerun. Every address of it is
127.0.0.1 (see tests/ray_worker_node.py), which the first test checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import numbered_frames, write_video
from tests.test_build import read_samples
from tests.test_cluster import free_ports

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Each node has one logical GPU and the flow actors ask for a whole one (DIS runs on the CPU all the
# same): one actor per node, whatever the CPU stages' tasks hold, so a pool of two spans both nodes.
CONFIG = ("name: two-nodes\nclip: {num_frames: 9, fps: 8.0, height: 32, width: 48}\n"
          "annotators:\n  flow: {backend: dis, resources: {num_cpus: 0.5, num_gpus: 1, concurrency: 2, batch_size: 1}}\n"
          "shards: {max_samples: 1}\n"
          "stages:\n  decode: {num_cpus: 0.25, concurrency: 2}\n  encode: {num_cpus: 0.25, concurrency: 2}\n")


def ray_start(*args: str, env: dict, worker: bool = False) -> None:
    """`ray start`; a worker node through tests/ray_worker_node.py, which keeps it on loopback."""
    command = [sys.executable, str(ROOT / "tests" / "ray_worker_node.py")] if worker else [str(BIN / "ray"), "start"]
    subprocess.run([*command, "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=1", *args],
                   env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture
def two_nodes(tmp_path):
    port, dashboard, agent1, agent2 = free_ports(4)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    before = {p.pid for p in psutil.process_iter()}
    ray_start("--head", f"--port={port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
              f"--dashboard-agent-listen-port={agent1}", "--include-dashboard=false", env=env)
    head = {p.pid for p in psutil.process_iter()} - before
    ray_start(f"--address=127.0.0.1:{port}", f"--dashboard-agent-listen-port={agent2}", env=env, worker=True)
    second = ({p.pid for p in psutil.process_iter()} - before - head) & set(cluster_processes(port))
    try:
        yield f"127.0.0.1:{port}", env, second
    finally:
        # Not `ray stop`: it would also stop the embedded Ray the rest of the suite shares.
        for proc in cluster_processes(port).values():
            try:
                proc.kill()
            except psutil.Error:
                pass


def cluster_processes(port: int) -> dict[int, psutil.Process]:
    """Every process of the cluster whose GCS listens on `port` (their command lines name it)."""
    found = {}
    for proc in psutil.process_iter():
        try:
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if f"127.0.0.1:{port}" in line or f"gcs_server_port={port}" in line:
            found[proc.pid] = proc
    return found


# Losing a node: flow actors on CPU shares, so the pool still fits on the head alone afterwards.
KILL_CONFIG = CONFIG.replace("num_cpus: 0.5, num_gpus: 1, concurrency: 2", "num_cpus: 0.5, concurrency: 2")


def alive_nodes(address: str, env: dict) -> int:
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='{address}'); "
                            "print('alive nodes:', sum(n['Alive'] for n in ray.nodes()))"],
                           env=env, capture_output=True, text=True, timeout=120)
    # Marked: Ray may print lines of its own after ours ("raylet has lagging heartbeats ...").
    counts = [line.split(":", 1)[1] for line in probe.stdout.splitlines() if line.startswith("alive nodes:")]
    return int(counts[-1]) if probe.returncode == 0 and counts else -1


def build(tmp_path: Path, address: str, env: dict, background: bool = False):
    args = [str(BIN / "openuni-build"), "--source", "manifest", "--input", str(tmp_path / "clips.jsonl"),
            "--shards", str(tmp_path / "out"), "--config", str(tmp_path / "two.yaml"), "--address", address,
            "--no-progress"]
    if background:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


def clips(tmp_path: Path, n: int) -> None:
    (tmp_path / "two.yaml").write_text(CONFIG)
    rows = []
    for i in range(n):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(30 + i, 48, 64), 25.0)
        rows.append({"path": str(tmp_path / f"v{i}.mp4")})
    (tmp_path / "clips.jsonl").write_text("\n".join(json.dumps(r) for r in rows))


def test_actors_and_shard_writers_run_on_both_nodes(tmp_path, two_nodes):
    address, env, _ = two_nodes
    clips(tmp_path, 12)
    done = build(tmp_path, address, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["run"]["written"] == 12
    assert stats["run"]["actors"]["flow"] and len(stats["run"]["actors"]["flow"]) == 2, stats["run"]  # one per node
    assert len(stats["run"]["nodes"]["write"]) == 2, stats["run"]["nodes"]  # shards written on both
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "out" / "shards").glob("*.manifest.json")]
    assert len({m["node"] for m in manifests}) == 2
    ray_env = {k: env[k] for k in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='{address}'); "
                            "print(sorted(n['NodeManagerAddress'] for n in ray.nodes()))"],
                           env={**os.environ, **ray_env}, capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip().splitlines()[-1] == "['127.0.0.1', '127.0.0.1']", probe.stderr[-2000:]


def test_losing_the_second_node_mid_run_loses_and_duplicates_nothing(tmp_path, two_nodes):
    address, env, second = two_nodes
    clips(tmp_path, 10)
    (tmp_path / "two.yaml").write_text(KILL_CONFIG)
    run = build(tmp_path, address, env, background=True)
    shards = tmp_path / "out" / "shards"
    deadline = time.time() + 300
    while time.time() < deadline and not list(shards.glob("*.manifest.json")) and run.poll() is None:
        time.sleep(0.2)
    assert run.poll() is None, "the build finished before the node could be lost"
    for pid in second:  # the second raylet and everything it started, without warning
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in psutil.process_iter():  # its workers
        try:
            if p.ppid() in second:
                p.kill()
        except psutil.Error:
            pass
    try:
        run.wait(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()
    deadline = time.time() + 120  # until the GCS has declared the node dead (missed heartbeats)
    while time.time() < deadline and alive_nodes(address, env) != 1:
        time.sleep(2)
    rerun = build(tmp_path, address, env)
    if rerun.returncode != 0:  # an actor placed on the node in the moment before it was declared dead
        rerun = build(tmp_path, address, env)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    keys = [s["__key__"] for s in read_samples(tmp_path / "out")]
    assert len(keys) == len(set(keys)) == 10
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["total"]["samples"] == 10
