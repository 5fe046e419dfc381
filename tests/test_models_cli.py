"""openuni-models: list / verify against a temp cache, pull fails clearly when offline."""

import hashlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from openuni_builder.models import ModelEntry, ModelUnavailable, load_registry, model_dir
from openuni_builder.commands.models import main
from openuni_builder.pull import check_files
from openuni_builder.random_models import write_random_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    return tmp_path


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh process (huggingface_hub reads HF_* variables at import)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "openuni_builder.commands.models", *args], env=full_env,
                          capture_output=True, text=True, timeout=120)


def rows(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines()[2:]}


def test_registry_pins_every_model_and_its_files():
    registry = load_registry()
    assert {"depth-anything-v2-small", "depth-anything-v2-large", "raft-small", "raft-large"} <= set(registry)
    for entry in registry.values():
        assert entry.hub_id and entry.revision and entry.license and entry.profiles and entry.files
        assert set(entry.profiles) <= {"lite", "full"}


def test_list_shows_profile_and_cache_status(cache, capsys):
    write_random_model("raft-small")
    (cache / "depth-anything-v2-small").mkdir()
    (cache / "depth-anything-v2-small" / "config.json").write_text("{}")
    assert main(["list"]) == 0
    table = rows(capsys.readouterr().out)
    assert "lite" in table["raft-small"] and " cached " in table["raft-small"]
    assert "incomplete (lacks model.safetensors, preprocessor_config.json)" in table["depth-anything-v2-small"]
    assert " missing " in table["raft-large"] and "CC-BY-NC-4.0" in table["depth-anything-v2-large"]
    assert main(["list", "--profile", "full"]) == 0
    full = {name for name, entry in load_registry().items() if "full" in entry.profiles}
    assert set(rows(capsys.readouterr().out)) == full and "raft-small" not in full


def test_verify_hashes_cached_files(cache, capsys):
    assert main(["verify"]) == 0  # nothing cached: nothing to fail
    write_random_model("depth-anything-v2-small")
    assert main(["verify", "depth-anything-v2-small"]) == 0
    assert "model.safetensors: present (no pinned sha256)" in capsys.readouterr().out
    write_random_model("raft-small")  # random weights cannot match torchvision's pinned hash prefix
    assert main(["verify"]) == 1
    assert "raft-small/raft_small_C_T_V2-01064c6d.pth: MISMATCH" in capsys.readouterr().out
    assert main(["verify", "raft-large"]) == 1  # named and not cached


def test_check_files_accepts_full_hash_or_prefix(tmp_path):
    digest = hashlib.sha256(b"weights").hexdigest()
    for name, data in {"full.bin": b"weights", "prefix.bin": b"weights", "nohash.bin": b"x",
                       "wrong.bin": b"other"}.items():
        (tmp_path / name).write_bytes(data)
    entry = ModelEntry(name="m", hub_id="x/m", revision="r", license="MIT", profiles=("lite",),
                       files={"full.bin": digest, "prefix.bin": digest[:8], "nohash.bin": "",
                              "wrong.bin": digest[:8], "absent.bin": digest})
    verdicts = check_files(entry, tmp_path)
    assert verdicts["full.bin"] == verdicts["prefix.bin"] == "ok"
    assert verdicts["nohash.bin"] == "present (no pinned sha256)" and verdicts["absent.bin"] == "missing"
    assert verdicts["wrong.bin"].startswith("MISMATCH")


def test_pull_fails_clearly_offline(cache):
    result = cli("pull", "depth-anything-v2-small", "raft-small",
                 OPENUNI_MODEL_CACHE=str(cache), HF_HUB_OFFLINE="1")
    assert result.returncode == 1
    assert "cannot pull 'depth-anything-v2-small': offline mode is on" in result.stderr
    assert "cannot pull 'raft-small'" in result.stderr
    assert list(cache.iterdir()) == []
    with pytest.raises(ModelUnavailable):
        model_dir("depth-anything-v2-small")


def test_pull_of_a_cached_model_needs_no_network(cache, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    write_random_model("depth-anything-v2-small")
    assert main(["pull", "--profile", "lite"]) == 1  # raft-small is not cached and cannot be fetched
    out = capsys.readouterr()
    assert f"depth-anything-v2-small: {cache / 'depth-anything-v2-small'}" in out.out
    assert "cannot pull 'raft-small'" in out.err


@pytest.mark.slow
def test_pull_fails_clearly_when_hub_unreachable(cache):
    result = cli("pull", "depth-anything-v2-small", OPENUNI_MODEL_CACHE=str(cache),
                 HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="0")
    assert result.returncode == 1
    assert "could not fetch 'depth-anything-v2-small'" in result.stderr and "online" in result.stderr
    with pytest.raises(ModelUnavailable):  # the partial download does not count as cached
        model_dir("depth-anything-v2-small")


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["openuni-models"] == "openuni_builder.commands.models:main"
    assert cli("--help").returncode == 0
