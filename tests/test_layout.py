"""The package's shape (the README's code map): imports run one way (no cycles in lm_music/), the edges ask the
task registry instead of branching on a task's name, a task is one folder and one registry line, nets know
nothing of data or Lightning, and nothing `sample.py` loads imports Lightning."""

import ast
import re
from pathlib import Path

import lm_music
from lm_music.tasks.registry import TASKS

PACKAGE = Path(lm_music.__file__).parent


def imports_of(path: Path, top_level_only: bool = False, prefix: str = "lm_music") -> set[str]:
    """The modules (of `prefix`) a file imports, at the top or inside a function (at the top only, when
    `top_level_only`: what importing the file runs)."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(prefix))
    return found


def module_files() -> dict[str, Path]:
    return {
        ".".join(("lm_music", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in PACKAGE.rglob("*.py")
    }


def module_graph() -> dict[str, set[str]]:
    modules = module_files()
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
    for edge in (
        "app.py",
        "export.py",
        "generation.py",
        "cards.py",
        "checkpoints.py",
        "evaluate.py",
        "callbacks.py",
        "training.py",
    ):
        for number, line in enumerate((PACKAGE / edge).read_text().splitlines(), 1):
            assert not branch.search(line), (
                f"lm_music/{edge}:{number} branches on a task name: {line.strip()}"
            )


TASK_FOLDERS = sorted(p.parent.name for p in (PACKAGE / "tasks").glob("*/__init__.py"))
TASK_FILES = ("__init__.py", "sampler.py", "datamodule.py", "lit_module.py", "evaluation.py")


def test_a_task_is_one_folder_and_one_registry_line():
    assert sorted(["lyrics", "pianoroll", "events"]) == TASK_FOLDERS  # the glob sees the folders
    registered = {task.sampler.__module__.split(".")[2]: name for name, task in TASKS.items()}
    assert sorted(registered) == TASK_FOLDERS, "every task folder is in registry.TASKS, and nothing else is"
    for folder in TASK_FOLDERS:
        missing = [f for f in TASK_FILES if not (PACKAGE / "tasks" / folder / f).is_file()]
        assert not missing, f"lm_music/tasks/{folder}/ lacks {missing}"
        task = TASKS[registered[folder]]
        for part in (task.evaluation, task.lightning_module(), task.draw, task.write, task.describe):
            assert part.__module__.startswith(f"lm_music.tasks.{folder}."), (
                f"{part.__qualname__} of the {task.name} task lives outside lm_music/tasks/{folder}/"
            )


def test_no_task_folder_imports_another():
    for folder in TASK_FOLDERS:
        others = [f"lm_music.tasks.{other}" for other in TASK_FOLDERS if other != folder]
        for path in (PACKAGE / "tasks" / folder).rglob("*.py"):
            crossing = sorted(m for m in imports_of(path) if m.startswith(tuple(others)))
            assert not crossing, f"{path.relative_to(PACKAGE)} imports another task's {crossing[0]}"


def test_nets_import_no_data_training_or_files():
    allowed = ("lm_music.nets", "lm_music.errors")
    for path in (PACKAGE / "nets").rglob("*.py"):
        ours = sorted(m for m in imports_of(path) if not m.startswith(allowed))
        assert not ours, (
            f"lm_music/nets/{path.name} imports {ours[0]}: nets import torch and lm_music.errors only"
        )
        for heavy in ("pytorch_lightning", "lightning", "torchmetrics", "miditok", "pandas", "numpy"):
            assert not imports_of(path, prefix=heavy), f"lm_music/nets/{path.name} imports {heavy}"


def test_nothing_sample_py_loads_imports_lightning():
    """What importing sample.py's modules runs (top-level imports, each module's packages' __init__ too)
    never imports Lightning: a sampler is built and drawn from without it."""
    files = module_files()
    seen, todo = set(), ["lm_music.options", "lm_music.generation", "lm_music.checkpoints"]
    while todo:
        name = todo.pop()
        if name in seen or name not in files:
            continue
        seen.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo += parents + sorted(imports_of(files[name], top_level_only=True))
    assert {"lm_music.tasks.registry", "lm_music.tasks.events.sampler", "lm_music.nets.token"} <= seen
    for name in sorted(seen):
        for heavy in ("pytorch_lightning", "lightning", "torchmetrics"):
            assert not imports_of(files[name], top_level_only=True, prefix=heavy), (
                f"{name} imports {heavy} at its top, and sample.py loads it"
            )
