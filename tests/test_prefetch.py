"""The first command shows every modality it can: a build pulls the models its pipeline names when
the hub answers (a hub on 127.0.0.1, tests/hub_server.py), skips that with --offline, a dead
endpoint or HF_HUB_OFFLINE, and then says in one line how to get the skipped modalities."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openuni_builder.config import load_config
from openuni_builder.models import load_registry
from openuni_builder.prefetch import fetch_pipeline_models, hub_unreachable
from openuni_builder.random_models import write_random_model
from pipelines import resolve
from tests.conftest import tiny_config
from tests.hub_server import Repo, TinyHub

ROOT = Path(__file__).resolve().parents[1]
DEPTH = "depth-anything-v2-small"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    entry = load_registry()[DEPTH]
    files = write_random_model(DEPTH, cache=tmp_path_factory.mktemp("upstream"))
    with TinyHub({entry.hub_id: Repo.from_folder(files, entry.revision)}) as server:
        yield server


def dead_endpoint() -> str:
    """An address on 127.0.0.1 where nothing listens (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub's view of the environment, as HF_HUB_OFFLINE=0 / HF_ENDPOINT=... give it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def point(url: str) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url)
    return point


def test_reachability_honours_endpoint_and_offline_mode(hub, online, monkeypatch):
    online(hub.url)
    assert hub_unreachable() is None
    assert ("HEAD", "/", None) in hub.requests
    online(dead_endpoint())
    started = time.monotonic()
    why = hub_unreachable(timeout=2.0)
    assert why is not None and "did not answer within 2 s" in why
    assert time.monotonic() - started < 2.5
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    online(hub.url)
    before = len(hub.requests)
    assert hub_unreachable() == "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
    assert len(hub.requests) == before, "offline mode asks nothing"


def test_the_default_pipeline_declares_its_models():
    names = load_config(resolve("openuni")).models()  # each annotator's models() with its options
    assert {"raft-small", "depth-anything-v2-small", "mask2former-swin-t-coco-panoptic", "sam2.1-hiera-tiny",
            "smolvlm2-256m", "vitpose-base", "rtdetr-r50", "densepose-r50-fpn"} <= set(names), names
    assert not {"depth-anything-v2-large", "raft-large", "sam2.1-hiera-large", "qwen2.5-vl-7b"} & set(names)


def test_a_dead_endpoint_pulls_nothing_and_says_why(tmp_path, online, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path / "cache"))
    online(dead_endpoint())
    cfg = load_config(tiny_config(tmp_path, f"  depth: {{model: {DEPTH}}}\n"))
    outcome = fetch_pipeline_models(cfg, timeout=1.0)
    assert list(outcome) == [DEPTH] and outcome[DEPTH].startswith("not pulled: ") and "did not answer" in outcome[DEPTH]
    assert not (tmp_path / "cache").exists()


def build(hub: TinyHub, tmp: Path, out: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
    config = tiny_config(tmp, f"  flow: {{backend: dis}}\n  depth: {{model: {DEPTH}}}\n")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENUNI_MODEL_CACHE": str(tmp / "cache"),
                "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp / "hf-home"), **env}
    return subprocess.run([sys.executable, "-m", "openuni_builder.commands.build", "--source", "synthetic", "--limit", "1",
                           "--shards", str(tmp / out), "--config", str(config), "--no-progress", "--num-cpus", "2",
                           *extra], env=full_env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two builds with a depth model: ~2 min on 2 cores
def test_first_build_pulls_what_it_needs_unless_offline(hub, tmp_path):
    hub.requests.clear()
    offline = build(hub, tmp_path, "offline", "--offline")
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert hub.requests == [], "--offline asks the hub nothing"
    stats = json.loads((tmp_path / "offline" / "stats.json").read_text())
    assert stats["modalities"]["produced"] == ["flow"] and list(stats["modalities"]["skipped"]) == ["depth"]
    hints = [line for line in offline.stdout.splitlines() if "modalities skipped" in line]
    assert hints == ["openuni-build: 1 modalities skipped (depth): rerun without --offline on a machine that "
                     f"reaches the hub, or run `openuni-models pull {DEPTH}`, then rerun into a new --shards"]

    online = build(hub, tmp_path, "online")
    assert online.returncode == 0, online.stderr[-3000:]
    assert f"pulling the models this pipeline names and the cache lacks: {DEPTH}" in online.stderr
    stats = json.loads((tmp_path / "online" / "stats.json").read_text())
    assert stats["modalities"]["produced"] == ["flow", "depth"] and stats["modalities"]["skipped"] == {}
    assert stats["total"]["samples"] == 1
    assert (tmp_path / "cache" / DEPTH / "model.safetensors").is_file()
    assert "modalities skipped" not in online.stdout
