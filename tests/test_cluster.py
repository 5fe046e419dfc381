"""docs/CLUSTER.md's one-machine recipe, run word for word: a real Ray head on loopback, a build
submitted with `ray job submit`, the index checked, the head stopped.

The commands are read out of the doc's marked section, so the doc cannot drift from what works.
The test only chooses free ports and the output directory, through the variables the doc reads.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


from tests.test_build import read_samples

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "CLUSTER.md"


def doc_commands() -> list[str]:
    """The ```sh blocks between the cluster-test markers, in order."""
    text = DOC.read_text()
    section = text.split("<!-- cluster-test:begin -->")[1].split("<!-- cluster-test:end -->")[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_doc_recipe_is_three_commands():
    start, submit, check = doc_commands()
    assert "ray start --head" in start and "--dashboard-host=127.0.0.1" in start
    assert "ray job submit" in submit and "--working-dir ." in submit and "openuni-build" in submit
    assert "index.parquet" in check
    assert (ROOT / "runtime_env.yaml").is_file()


def listening_addresses(pids: set[int]) -> dict[int, str]:
    import psutil

    return {c.laddr.port: c.laddr.ip for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def test_build_submitted_to_a_loopback_head(tmp_path):
    import psutil

    start, submit, check = doc_commands()
    ray_port, dashboard, client, agent = free_ports(4)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_PORT": str(ray_port), "DASHBOARD_PORT": str(dashboard), "CLIENT_PORT": str(client),
           "AGENT_PORT": str(agent), "OUT": str(out), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(["bash", "-c", start], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # the job API answers once the dashboard is up
            try:
                socket.create_connection(("127.0.0.1", dashboard), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, head.stdout.read()
                time.sleep(1)
        group = {p.pid for p in psutil.process_iter() if _pgid(p.pid) == head.pid}
        assert listening_addresses(group).get(dashboard) == "127.0.0.1"  # dashboard + jobs on loopback only

        job = subprocess.run(["bash", "-c", submit], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        # 4 clips listed; the default pipeline's filters may drop some (bikes has scene cuts), and
        # every clip the job reports written must be in the index and the shards exactly once.
        written = int(re.search(r"(\d+) clips written", job.stdout).group(1))
        assert 3 <= written <= 4, job.stdout[-3000:]

        checked = subprocess.run(["bash", "-c", check], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert checked.stdout.strip() == f"{written} clips in the index", checked.stderr[-2000:]
        samples = read_samples(out)
        keys = [s["__key__"] for s in samples]
        assert len(keys) == len(set(keys)) == written
        assert all({"mp4", "json", "flow.mp4", "flow.raw.mkv"} <= set(s) for s in samples)
    finally:
        head.send_signal(signal.SIGINT)  # the doc's Ctrl-C
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:  # a loaded CI machine once took longer: the group is killed below
            pass
        finally:
            time.sleep(2)
            try:
                os.killpg(head.pid, signal.SIGKILL)  # anything of this head's group still alive
            except ProcessLookupError:
                pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
