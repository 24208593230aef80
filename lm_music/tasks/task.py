"""What a task is: everything the edges (`sample.py`, the page, the exporter, the loader, the evaluator) ask of
one kind of model. Each task folder builds one `Task` in its `__init__.py`; `registry.TASKS` lists them."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lm_music.errors import UserError
from lm_music.tasks.sampler import NetworkSampler


@dataclass(frozen=True)
class Task:
    """Everything the edges ask of one kind of model; none of them branches on a task's name."""

    sampler: type[NetworkSampler]  # the network and what drawing from it needs, without Lightning
    evaluation: type  # how `python -m lm_music.evaluate` reads, sets against real data and measures samples
    lightning_module: Callable[[], type]  # its LightningModule class, imported when called (to train, score)
    draw: Callable  # (sampler, options, generator) -> samples (values, no files)
    write: Callable[..., list[Path]]  # (samples, out_dir) -> the files written
    describe: Callable[[dict], str]  # hyperparameters -> "what, architecture[, extras]"
    unit: str  # what `length` counts
    max_page_length: int  # the page draws at most this many; longer belongs to sample.py
    card_length: int  # the `length` of the card's sample command
    card_tags: tuple[str, ...]
    hub_task: str  # the Hub's task type in the card's model-index
    metrics: tuple[str, ...]  # the test metrics a card reports, in order
    metrics_note: str = ""  # what the card says the metrics mean
    page_controls: tuple[str, ...] = ()  # the page's controls this task takes, beside the shared ones
    page_shows: str = (
        "files"  # "text": the page shows str(samples); "files": each sample's picture, audio, MIDI
    )

    @property
    def name(self) -> str:
        """The checkpoint's `lm_music_task`, config.json's `task`."""
        return self.sampler.task_name


def refuse_option(key: str, options, takes: str) -> None:
    """A sample option given to a model that does not take it: one line saying which models do. (A group of
    options, as `controls`, counts as given when any of its values is.)"""
    value = options.get(key)
    if value and (not hasattr(value, "values") or any(v is not None for v in value.values())):
        raise UserError(f"{key}= is for {takes} models; this model does not take it: leave it out")


def architecture(hyper: dict) -> str:
    """A model's network in a few words, for its description: "Transformer 4x256", "LSTM 2x512"."""
    if hyper.get("arch", "rnn") == "transformer":
        return f"Transformer {hyper.get('n_layer')}x{hyper.get('d_model')}"
    return f"{hyper.get('cell', 'lstm').upper()} {hyper.get('num_layers', 2)}x{hyper.get('hidden_size')}"
