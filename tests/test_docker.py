"""docker/ cannot be built here (no Docker engine), so check it stays consistent with the project:
the extras it installs exist, its pins satisfy pyproject and are the versions the tests run on,
it copies every package setuptools ships, and compose / KubeRay run that image at that Ray version."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMAGE = "openuni-builder:0.1.0"


def args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))


def test_installed_extras_exist_in_pyproject():
    extras = re.findall(r'pip install [^\n]*-e "\.\[([\w,]+)\]"', DOCKERFILE)
    assert extras, "the Dockerfile should install the package with its extras"
    for extra in extras[0].split(","):
        assert extra in PYPROJECT["optional-dependencies"], extra


def test_pins_satisfy_pyproject_and_match_the_tested_stack():
    pins = {"torch": args()["TORCH_VERSION"], "torchvision": args()["TORCHVISION_VERSION"],
            "transformers": args()["TRANSFORMERS_VERSION"], "ray": args()["RAY_VERSION"]}
    requirements = {Requirement(r).name: Requirement(r) for r in PYPROJECT["dependencies"]}
    for name, pinned in pins.items():
        assert pinned in requirements[name].specifier, (name, pinned, requirements[name])
        assert pinned == version(name), f"{name}: image pins {pinned}, tests run on {version(name)}"
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
    assert cluster["spec"]["rayVersion"] == args()["RAY_VERSION"]
    pods = [cluster["spec"]["headGroupSpec"]] + cluster["spec"]["workerGroupSpecs"]
    assert all(c["image"] == IMAGE for pod in pods for c in pod["template"]["spec"]["containers"])
    assert IMAGE in (ROOT / "docs" / "CLUSTER.md").read_text()
