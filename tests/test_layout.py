"""The package's shape: every module imports on its own, and the imports between modules form the DAG the README's
layout section draws (imports inside functions and TYPE_CHECKING blocks count too)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "hf_rtp").glob("*.py") if p.stem != "__init__")


def import_graph() -> dict[str, set[str]]:
    """module -> the hf_rtp modules it imports (relative `from .x import` or `from hf_rtp.x import`, anywhere)."""
    graph = {}
    for name in MODULES:
        tree = ast.parse((ROOT / "hf_rtp" / f"{name}.py").read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 1 and not module:  # from . import hub, viz
                    found |= {alias.name for alias in node.names}
                elif node.level == 1:
                    found.add(module.split(".")[0])
                elif module.startswith("hf_rtp."):
                    found.add(module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("hf_rtp.")}
        graph[name] = (found & set(MODULES)) - {name}
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


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({**{m: set() for m in MODULES}, MODULES[0]: {MODULES[1]}, MODULES[1]: {MODULES[0]}}) is not None


def test_the_readme_draws_the_graph_as_it_is():
    """Every edge in the README's layout drawing exists, and every import is drawn (`a -> b, c` lines)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    edge = re.compile(r"\s*([a-z_]+)\s+->\s+(.*?)\s*$")
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
