"""The package's shape: every module imports on its own, and the imports between modules form the DAG the README's
layout section draws (imports inside functions and TYPE_CHECKING blocks count too)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_rtp"


def module_name(path: Path) -> str:
    """hf_rtp/continual/learners.py -> continual.learners; a package's __init__.py is the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p != PACKAGE / "__init__.py"}
MODULES = sorted(FILES)


def import_graph() -> dict[str, set[str]]:
    """module -> the hf_rtp modules it imports (relative `from .x import`, `from ..x import`, `from . import x`, or
    `from hf_rtp.x import`, anywhere in the file); a module of a subpackage is named `package.module`."""
    graph = {}
    for name, path in FILES.items():
        here = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")  # the package it sits in
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    targets = [".".join(base + [a.name]) for a in node.names] if not module else [".".join(base + module.split("."))]
                elif module.startswith("hf_rtp."):
                    targets = [module[len("hf_rtp."):]]
                else:
                    continue
            elif isinstance(node, ast.Import):
                targets = [a.name[len("hf_rtp."):] for a in node.names if a.name.startswith("hf_rtp.")]
            else:
                continue
            for target in targets:  # the longest known module the import names (a.b.c -> a.b when a.b is a module)
                parts = target.split(".")
                while parts and ".".join(parts) not in FILES:
                    parts.pop()
                if parts:
                    found.add(".".join(parts))
        graph[name] = found - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [node])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for node in MODULES:
        if node not in state:
            cycle = visit(node, [])
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_import_graph_is_the_packages_own():
    """The graph this file's tests check is read from the code, each kind of import included: an empty or partial
    graph (a parser that misses a form) would pass the no-cycle test whatever the code imports."""
    import graphlib

    graph = import_graph()
    assert set(graph) == set(MODULES) and "modeling_memory" in graph and "distill" in graph
    known = {
        ("modeling_memory", "configuration_memory"),  # from .configuration_memory import ..., at the top
        ("modeling_memory", "hub"), ("modeling_memory", "queries"),  # from . import hub; from . import queries as checks
        ("configuration_memory", "query_head"),  # from .query_head import QueryHead, inside a method
        ("episodes", "evaluate"),  # from .evaluate import ..., inside a function
        ("distill", "modeling_memory"),
    }
    missing = {(a, b) for a, b in known if b not in graph[a]}
    assert not missing, missing
    assert sum(len(deps) for deps in graph.values()) >= 30  # the package's modules lean on each other
    # acyclic by the standard library's topological sort too, not only by this file's own search
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("configuration_memory") < order.index("modeling_memory") < order.index("distill")


def test_the_readme_draws_the_graph_as_it_is():
    """Every edge in the README's layout drawing exists, and every import is drawn (`a -> b, c` lines)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    edge = re.compile(r"\s*([a-z_.]+)\s+->\s+(.*?)\s*$")
    # the code block made only of `module -> imports` lines
    block = [b for b in section.split("```")[1::2] if all(edge.match(line) for line in b.strip().splitlines())][0]
    drawn: dict[str, set[str]] = {}
    for line in block.strip().splitlines():
        match = edge.match(line)
        drawn[match.group(1)] = {m.strip() for m in match.group(2).split(",") if m.strip()}
    graph = {m: deps for m, deps in import_graph().items() if deps}
    assert drawn == graph


ALONE = """
import importlib, sys, traceback
import accelerate, datasets, timm, torch, transformers  # third-party start-up once; hf_rtp is what is tested
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "hf_rtp" or m.startswith("hf_rtp.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module("hf_rtp." + name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3))
print("\\n".join(failed) or "all imported")
"""


def test_each_module_imports_alone_in_a_fresh_interpreter():
    """A fresh interpreter, and for each module a clean slate of hf_rtp modules: no module needs another to have been
    imported first."""
    done = subprocess.run([sys.executable, "-c", ALONE, *MODULES], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "all imported", done.stdout + done.stderr[-2000:]
