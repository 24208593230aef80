"""Lyrics: character models of song lyrics, optionally conditioned on the artist.

The task's folder: `sampler.py` (drawing without Lightning, the samples, how they are written), `datamodule.py`,
`lit_module.py` (its LightningModule), `evaluation.py` (how the evaluator judges its samples) and what else it
alone needs. `TASK` is what `registry.TASKS` lists.
"""

from lm_music.tasks.lyrics.evaluation import LyricsEvaluation
from lm_music.tasks.lyrics.sampler import LyricsSampler, describe, draw, write
from lm_music.tasks.task import Task


def lightning_module() -> type:
    """`LyricsLitModule`, imported when asked for: sampling never imports Lightning."""
    from lm_music.tasks.lyrics.lit_module import LyricsLitModule

    return LyricsLitModule


TASK = Task(
    sampler=LyricsSampler,
    evaluation=LyricsEvaluation,
    lightning_module=lightning_module,
    draw=draw,
    write=write,
    describe=describe,
    unit="characters",
    max_page_length=5000,
    card_length=500,
    card_tags=("text-generation",),
    hub_task="text-generation",
    metrics=("test/bpc", "test/bpc_cache"),
    metrics_note="`bpc`: bits per character of the test songs; `bpc_cache`: the same through the continuous "
    "cache and/or the refrain of the model's decoding defaults (`lm_music/cache.py`), the distribution sample.py "
    "draws from.",
    page_controls=("prime", "artist", "top_k", "top_p"),
    page_shows="text",
)
