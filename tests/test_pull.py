"""`openuni-models pull` end to end against a hub on 127.0.0.1 (tests/hub_server.py) serving the
real files of a tiny model: the download, a checksum mismatch, a transfer cut mid-file and a pull
that fails half way and is run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openuni_builder.models import load_registry
from openuni_builder.pull import sha256_of
from openuni_builder.random_models import write_random_model
from tests.hub_server import Repo, TinyHub

ROOT = Path(__file__).resolve().parents[1]
MODEL = "depth-anything-v2-small"
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> Path:
    """The files of a random-weight MODEL, as the hub repo holds them."""
    return write_random_model(MODEL, cache=tmp_path_factory.mktemp("upstream"))


@pytest.fixture
def hub(tiny_files):
    entry = load_registry()[MODEL]
    with TinyHub({entry.hub_id: Repo.from_folder(tiny_files, entry.revision)}) as server:
        yield server


def run(code: str, hub: TinyHub, cache: Path) -> subprocess.CompletedProcess:
    """Python in a fresh process pointed at the local hub (huggingface_hub reads HF_* at import)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENUNI_MODEL_CACHE": str(cache), "HF_ENDPOINT": hub.url,
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(cache.parent / "hf-home")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def pull_cli(hub: TinyHub, cache: Path, *args: str) -> subprocess.CompletedProcess:
    return run(f"import sys; from openuni_builder.commands.models import main; sys.exit(main({['pull', *args]!r}))",
               hub, cache)


def assert_cached_copy_of(upstream: Path, cache: Path) -> None:
    folder = cache / MODEL
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(p.name for p in upstream.iterdir())
    for path in upstream.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes(), path.name
    assert not list(cache.glob(".*.partial")), "the partial folder is renamed into place"


def test_pull_downloads_the_pinned_revision_from_the_hub(hub, tiny_files, tmp_path):
    cache = tmp_path / "cache"
    result = pull_cli(hub, cache, MODEL)
    assert result.returncode == 0, result.stderr
    assert f"{MODEL}: {cache / MODEL}" in result.stdout
    assert_cached_copy_of(tiny_files, cache)
    entry = load_registry()[MODEL]
    asked = {(method, path) for method, path, _ in hub.requests}
    assert ("GET", f"/api/models/{entry.hub_id}/tree/{entry.revision}") in asked  # the pinned commit's listing
    assert ("HEAD", f"/{entry.hub_id}/resolve/{entry.revision}/{WEIGHTS}") in asked
    verify = run("import sys; from openuni_builder.commands.models import main; sys.exit(main(['verify', "
                 f"{MODEL!r}]))", hub, cache)
    assert verify.returncode == 0, verify.stdout


def test_checksum_mismatch_is_a_clear_error_and_leaves_nothing_in_the_cache(hub, tiny_files, tmp_path):
    """A mirror serving other bytes under the right name and size: the registry's pinned sha256
    catches it, and neither the model folder nor a partial one is left."""
    cache = tmp_path / "cache"
    hub.corrupt.add(WEIGHTS)
    pinned = {p.name: sha256_of(p) for p in tiny_files.iterdir()}
    result = run(f"""
import dataclasses, sys
from openuni_builder.models import load_registry
from openuni_builder.pull import PullError, pull
entry = dataclasses.replace(load_registry()[{MODEL!r}], files={json.dumps(pinned)})
try:
    pull(entry)
except PullError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
""", hub, cache)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"pulled {MODEL!r} but it fails the registry check" in result.stderr
    assert f"{WEIGHTS}: MISMATCH sha256" in result.stderr and "The download was deleted" in result.stderr
    assert list(cache.iterdir()) == [], "no cache entry, partial or not"
    assert hub.gets(WEIGHTS) == [None], "the corrupt file was fetched, once"


def test_a_transfer_cut_mid_file_resumes_with_a_range_request(hub, tiny_files, tmp_path):
    """huggingface_hub keeps what it had received and asks for the rest. It counts received bytes
    in DOWNLOAD_CHUNK_SIZE pieces (10 MB), so a cut inside the first piece restarts the file; the
    tiny weights (0.5 MB) span several pieces of 64 KB."""
    cache = tmp_path / "cache"
    hub.cut[WEIGHTS] = 1
    result = run("import sys; import huggingface_hub.constants as c; c.DOWNLOAD_CHUNK_SIZE = 1 << 16\n"
                 f"from openuni_builder.commands.models import main; sys.exit(main(['pull', {MODEL!r}]))", hub, cache)
    assert result.returncode == 0, result.stderr
    size = (tiny_files / WEIGHTS).stat().st_size
    first, second = hub.gets(WEIGHTS)
    assert first is None and second.startswith("bytes=") and second.endswith("-")
    assert 0 < int(second[len("bytes="):-1]) <= size // 2, "the second GET asks only for what was missing"
    assert_cached_copy_of(tiny_files, cache)


def test_a_failed_pull_resumes_on_the_next_one(hub, tiny_files, tmp_path):
    """The hub fails the weights mid-pull: the pull says so and keeps what it has in the hidden
    partial folder (not a cached model); the next pull fetches only what is missing."""
    cache = tmp_path / "cache"
    hub.fail.add(WEIGHTS)
    first = pull_cli(hub, cache, MODEL)
    assert first.returncode == 1
    assert f"could not fetch {MODEL!r}" in first.stderr and "resumes on the next pull" in first.stderr
    assert not (cache / MODEL).exists() and (cache / f".{MODEL}.partial" / "config.json").is_file()
    hub.fail.clear()
    second = pull_cli(hub, cache, MODEL)
    assert second.returncode == 0, second.stderr
    assert_cached_copy_of(tiny_files, cache)
    assert len(hub.gets("config.json")) == 1, "files the first pull finished are not fetched again"
