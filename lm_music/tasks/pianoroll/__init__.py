"""Piano rolls: models of 88-key frames on a time grid (the benchmark datasets, MIDI folders).

The task's folder: `sampler.py` (drawing without Lightning, the samples, how they are written), `datamodule.py`,
`lit_module.py` (its LightningModule), `evaluation.py` (how the evaluator judges its samples) and what else it
alone needs. `TASK` is what `registry.TASKS` lists.
"""

from lm_music.tasks.pianoroll.evaluation import PianoRollEvaluation
from lm_music.tasks.pianoroll.sampler import PianoRollSampler, describe, draw, write
from lm_music.tasks.task import Task


def lightning_module() -> type:
    """`PianoRollLitModule`, imported when asked for: sampling never imports Lightning."""
    from lm_music.tasks.pianoroll.lit_module import PianoRollLitModule

    return PianoRollLitModule


TASK = Task(
    sampler=PianoRollSampler,
    evaluation=PianoRollEvaluation,
    lightning_module=lightning_module,
    draw=draw,
    write=write,
    describe=describe,
    unit="frames",
    max_page_length=2048,
    card_length=256,
    card_tags=("symbolic-music", "music-generation", "piano-roll"),
    hub_task="music-generation",
    metrics=("test/nll", "test/nll_all", "test/frame_acc"),
    metrics_note="`nll`: nats per frame over frames 2..T (Bai et al. 2018, TCN); `nll_all`: frames "
    "1..T, frame 1 predicted from the learned start (Boulanger-Lewandowski et al. 2012, Krishnan et "
    "al. 2017).",
    page_controls=("prime_midi",),
)
