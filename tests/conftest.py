"""Shared fixtures: small real videos written with PyAV, and one embedded Ray for the session."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray resolves 127.0.0.1 to the machine's interface address unless this is off; the tests' Ray
# clusters (embedded and `ray start`, which inherit it) must bind loopback only. Read at `import ray`.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the dataset card is written and loaded offline
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Before Ray starts, so its workers see them too: the fault-injecting modality of the crash tests
# and the toy modality of tests/test_modalities.py.
os.environ.setdefault("OPENUNI_PLUGINS", "tests.crashing_annotator,tests.toy_modality")

from openuni_builder.clip import ClipSpec  # noqa: E402
from openuni_builder.video_io import encode_mp4  # noqa: E402

TINY_SPEC = ClipSpec(num_frames=9, fps=8.0, height=32, width=48)


def numbered_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose brightness encodes their index (index * 4), plus a moving bar for flow."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        frames[i] = (i * 4) % 256
        x = (i * 2) % (width - 8)
        frames[i, 8:40, x:x + 8] = 255
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    path.write_bytes(encode_mp4(frames, fps))
    return path


@pytest.fixture
def video_25fps(tmp_path: Path) -> Path:
    """2.4 s of numbered frames at 25 fps (60 frames)."""
    return write_video(tmp_path / "numbered.mp4", numbered_frames(60), 25.0)


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, i * 1024, Fraction(1, 16000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def ray_model_cache(tmp_path_factory):
    """The model cache the embedded Ray's workers see, set before Ray starts: workers keep the
    environment of that moment, so a test's `monkeypatch.setenv` never reaches them. Empty, so
    builds do not depend on models cached on the machine; a test that builds with a tiny model
    writes it here and removes it afterwards."""
    from openuni_builder.models import CACHE_ENV

    path = tmp_path_factory.mktemp("ray_model_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(path))
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def ray_local(ray_model_cache):
    """One embedded Ray for every test that builds (starting Ray costs seconds)."""
    import ray

    from openuni_builder.runtime import init_ray

    init_ray(None, 2)
    yield ray
    ray.shutdown()


def tiny_config(tmp_path: Path, annotators: str = "  flow: {backend: dis}\n", max_samples: int = 2,
                spec: ClipSpec = TINY_SPEC) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"name: tiny\nclip: {{num_frames: {spec.num_frames}, fps: {spec.fps}, height: {spec.height}, "
        f"width: {spec.width}}}\nannotators:\n{annotators}shards: {{max_samples: {max_samples}}}\n"
        "stages:\n  decode: {num_cpus: 0.5, concurrency: 2}\n  encode: {num_cpus: 0.5, concurrency: 2}\n")
    return path


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3-compatible store on 127.0.0.1 (SeaweedFS, tests/s3_server.py), one per session."""
    from tests import s3_server

    proc, server = s3_server.start(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        s3_server.stop(proc)
