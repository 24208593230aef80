"""The package's shape: imports run one way (no cycles in lm_music/), and the edges ask the task registry
instead of branching on a task's name."""

import ast
import re
from pathlib import Path

import lm_music
from lm_music.tasks import TASKS

PACKAGE = Path(lm_music.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The lm_music modules a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lm_music"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lm_music"))
    return found


def module_graph() -> dict[str, set[str]]:
    modules = {
        ".".join(("lm_music", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }
    return {
        name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()
    }


def test_no_import_cycle_in_the_package():
    graph = module_graph()
    assert "lm_music.checkpoints" in graph["lm_music.generation"]  # the graph sees real imports
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_edges_ask_the_task_registry_not_a_task_name():
    names = "|".join(re.escape(name) for name in TASKS)
    branch = re.compile(rf"""(==|!=|\bin)\s*\(?["']({names})["']""")
    for edge in ("app.py", "export.py", "generation.py", "cards.py", "checkpoints.py"):
        for number, line in enumerate((PACKAGE / edge).read_text().splitlines(), 1):
            assert not branch.search(line), (
                f"lm_music/{edge}:{number} branches on a task name: {line.strip()}"
            )
