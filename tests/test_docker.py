"""docker/ cannot be built here (no Docker engine), so check it stays consistent with the project:
the extras it installs exist, the versions it installs come from the lock (constraints.txt) and satisfy pyproject,
it copies every package setuptools ships, and compose / KubeRay run that image at that Ray version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.test_lock import read_lock

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMAGE = "openuni-builder:0.1.0"


def test_installed_extras_exist_in_pyproject():
    extras = re.findall(r'pip install [^\n]*-e "\.\[([\w,]+)\]"', DOCKERFILE)
    assert extras, "the Dockerfile should install the package with its extras"
    for extra in extras[0].split(","):
        assert extra in PYPROJECT["optional-dependencies"], extra


def test_image_installs_the_locked_stack_on_a_python_pyproject_allows():
    """The pins themselves live in constraints.txt (tests/test_lock.py checks the installs use it);
    here: the packages the image names are locked, inside pyproject's ranges, on its Python."""
    pins = read_lock()
    requirements = {Requirement(r).name: Requirement(r) for r in PYPROJECT["dependencies"]}
    for name in ("torch", "torchvision", "transformers", "ray"):
        assert re.search(rf"pip install[^\n]*\b{name}\b", DOCKERFILE), f"the image should install {name}"
        assert pins[name] in requirements[name].specifier, (name, pins[name], requirements[name])
    for extra in re.findall(r'-e "\.\[([\w,]+)\]"', DOCKERFILE)[0].split(","):
        for text in PYPROJECT["optional-dependencies"][extra]:
            assert canonicalize_name(Requirement(text).name) in pins, (extra, text)
    assert "ARG " not in DOCKERFILE, "versions come from the lock, not build args"
    python = re.search(r"^FROM python:(\d+\.\d+)", DOCKERFILE, re.M).group(1)
    assert f"{python}.0" in SpecifierSet(PYPROJECT["requires-python"])


def test_copies_every_shipped_package_and_the_model_registry():
    copied = set(re.findall(r"^COPY (\S+) \1$", DOCKERFILE, re.M))
    shipped = {p.rstrip("*") for p in tomllib.loads((ROOT / "pyproject.toml").read_text())
               ["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert shipped | {"manifests"} <= copied
    for path in copied:
        assert (ROOT / path).exists(), path
    assert "OPENUNI_MODEL_CACHE=/models" in DOCKERFILE


def test_compose_and_kuberay_run_this_image_at_this_ray_version():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    for service in compose["services"].values():
        assert service["image"] == IMAGE
        assert service["environment"]["RAY_AUTH_MODE"] == "token"
    assert compose["services"]["head"]["ports"] == ["127.0.0.1:8265:8265"]
    cluster = yaml.safe_load((ROOT / "docker" / "kuberay.yaml").read_text())
    assert cluster["spec"]["rayVersion"] == read_lock()["ray"]
    pods = [cluster["spec"]["headGroupSpec"]] + cluster["spec"]["workerGroupSpecs"]
    assert all(c["image"] == IMAGE for pod in pods for c in pod["template"]["spec"]["containers"])
    assert IMAGE in (ROOT / "docs" / "CLUSTER.md").read_text()
