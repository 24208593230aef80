"""MIDI event tokens: models of MidiTok token sequences (velocities, timing, pedal and tempo kept).

The task's folder: `sampler.py` (drawing without Lightning, the samples, how they are written), `datamodule.py`,
`lit_module.py` (its LightningModule), `evaluation.py` (how the evaluator judges its samples) and what else it
alone needs. `TASK` is what `registry.TASKS` lists.
"""

from lm_music.tasks.events.evaluation import EventEvaluation
from lm_music.tasks.events.sampler import EventSampler, describe, draw, write
from lm_music.tasks.task import Task


def lightning_module() -> type:
    """`EventLitModule`, imported when asked for: sampling never imports Lightning."""
    from lm_music.tasks.events.lit_module import EventLitModule

    return EventLitModule


TASK = Task(
    sampler=EventSampler,
    evaluation=EventEvaluation,
    lightning_module=lightning_module,
    draw=draw,
    write=write,
    describe=describe,
    unit="tokens",
    max_page_length=4096,
    card_length=1024,
    card_tags=("symbolic-music", "music-generation", "midi", "miditok"),
    hub_task="music-generation",
    metrics=(
        "test/nll_token",
        "test/bits_per_note",
        "test/nats_per_second",
        "test/nll_token_cache",
        "test/bits_per_note_cache",
    ),
    metrics_note="`nll_token`: nats per token of the test pieces (comparable only between models of the "
    "same tokenizer); `bits_per_note`: their total NLL in bits over their number of notes, and "
    "`nats_per_second`: over their seconds of music (both comparable across tokenizers); `_cache`: the same "
    "through the continuous cache and/or the refrain of the model's decoding defaults (`lm_music/cache.py`), "
    "the distribution sample.py draws from.",
    page_controls=("prime_midi", "top_k", "top_p"),
)
