"""The task registry: one line per kind of model. Each is a folder of `lm_music/tasks/` whose `TASK` says
everything the edges ask of it (`task.Task`); `sample.py`, the page, the exporter, the loader and the evaluator
look a model's task up here and never branch on its name."""

from lm_music.tasks import events, lyrics, pianoroll
from lm_music.tasks.task import Task

TASKS: dict[str, Task] = {task.name: task for task in (lyrics.TASK, pianoroll.TASK, events.TASK)}


def task_of_module(module_class: type) -> Task:
    """The task whose LightningModule `module_class` is (or subclasses)."""
    for task in TASKS.values():
        if issubclass(module_class, task.lightning_module()):
            return task
    raise ValueError(f"{module_class.__name__} is no task's LightningModule")
