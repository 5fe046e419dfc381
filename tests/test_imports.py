"""The import graph keeps the layers of docs/ARCHITECTURE.md: no cycles (function-level imports
included: a cycle hidden in a function is still a tangle), argparse only in console-script modules,
and a trainer that needs only the shard format, not the builder."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("openuni_builder", "annotators", "pipelines")
CLI_MODULES = ("openuni_builder.commands",)
# What the trainer may import of ours: the shard format (modality records, video decoding,
# locations), the clip spec and the model cache, never the build.
TRAINER_MAY_IMPORT = ("openuni_builder.trainer", "openuni_builder.modalities", "openuni_builder.video_io",
                      "openuni_builder.location", "openuni_builder.clip", "openuni_builder.models")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """Every absolute import in the file, at any depth, except `if TYPE_CHECKING:` blocks."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names.add(child.module)
                names.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def graph() -> dict[str, set[str]]:
    known = modules()

    def ours(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {t for n in imports(p) if (t := ours(n)) and t != m} for m, p in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_import_graph_has_no_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_argparse_only_in_console_script_modules():
    users = {m for m, p in modules().items() if "argparse" in imports(p)}
    assert {m for m in users if not m.startswith(CLI_MODULES)} == set()


def test_the_trainer_depends_only_on_the_shard_format():
    edges = graph()
    reached = {t for m, ts in edges.items() if m.startswith("openuni_builder.trainer") for t in ts}
    assert {t for t in reached if not t.startswith(TRAINER_MAY_IMPORT)} == set()
