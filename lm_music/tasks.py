"""The task registry: one entry per kind of model, saying everything the edges ask of it.

`sample.py`, the page, the exporter and the loader ask a `Task` (its sampler, its LightningModule, how its
samples are drawn and written, what its card and the page need); none of them branches on a task's name.
Adding a kind of model means adding its sampler, its LightningModule and data module, its configs, and one
entry in `TASKS` below.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from lm_music import events, midi, mirex
from lm_music.errors import UserError
from lm_music.evaluation.kinds import EventKind, LyricsKind, MusicKind
from lm_music.io import atomic_path, write_text_atomic
from lm_music.samplers import EventSampler, LyricsSampler, PianoRollSampler, Sampler

log = logging.getLogger(__name__)


@dataclass
class TextSamples:
    """Drawn lyrics: one text per sample (the prime first), and the artist each was drawn as."""

    texts: list[str]
    artists: list[str] | None = None

    def __str__(self) -> str:
        blocks = []
        for i, text in enumerate(self.texts):
            header = f"=== sample {i}" + (f" ({self.artists[i]})" if self.artists else "") + " ==="
            blocks.append(f"{header}\n{text}\n")
        return "\n".join(blocks)


@dataclass
class RollSamples:
    """Drawn music: rolls (B, T, 88) uint8, each also as MIDI; `primed` frames of each came from a prime."""

    rolls: np.ndarray
    midis: list[pretty_midi.PrettyMIDI]
    primed: int = 0
    audio: list[np.ndarray] = field(default_factory=list)  # one per sample when rendered, at `sample_rate`
    sample_rate: int = 22050
    audio_backend: str = ""

    def __str__(self) -> str:
        primed = f" ({self.primed} of prime_midi, then {self.rolls.shape[1] - self.primed} drawn)"
        audio = f"; audio rendered with {self.audio_backend}" if self.audio else ""
        return (
            f"{len(self.rolls)} samples of {self.rolls.shape[1]} frames"
            + (primed if self.primed else "")
            + audio
        )


def refuse_option(key: str, options, takes: str) -> None:
    """A sample option given to a model that does not take it: one line saying which models do."""
    if options.get(key):
        raise UserError(f"{key}= is for {takes} models; this model does not take it: leave it out")


def draw_lyrics(sampler: LyricsSampler, options, generator: torch.Generator) -> TextSamples:
    """`options`: the sample options' keys (prime, artist, top_k, top_p, ...)."""
    refuse_option("prime_json", options, "event-token (e.g. pretrained=pop909)")
    refuse_option("prime_midi", options, "music")
    artists = [options.artist] * options.num_samples if options.get("artist") else None
    if artists is None and sampler.conditional:
        artists = [sampler.artists[i % len(sampler.artists)] for i in range(options.num_samples)]
        log.info("no artist= given: cycling through the model's artists")
    texts = sampler.sample(
        options.num_samples,
        options.length,
        temperature=options.temperature,
        prime=options.get("prime") or "",
        artists=artists,
        top_k=options.get("top_k"),
        top_p=options.get("top_p"),
        generator=generator,
    )
    return TextSamples(texts, artists)


def write_lyrics(samples: TextSamples, out_dir: Path) -> list[Path]:
    path = out_dir / "samples.txt"
    write_text_atomic(path, str(samples))
    return [path]


def draw_music(sampler: PianoRollSampler, options, generator: torch.Generator) -> RollSamples:
    """`options`: the sample options' keys (prime_midi, prime_frames, tempo, velocity, audio, ...)."""
    grid = {"frames_per_beat": sampler.frames_per_beat, "fs": sampler.fs}
    refuse_option("prime_json", options, "event-token (e.g. pretrained=pop909)")
    prime = None
    if options.get("prime_midi"):
        if not Path(options.prime_midi).is_file():
            raise UserError(f"prime_midi not found: {options.prime_midi}")
        roll, _ = midi.midi_to_roll(midi.load_midi(options.prime_midi), **grid)
        if len(roll) == 0:
            raise UserError(f"{options.prime_midi} has no notes to continue: give another prime_midi")
        prime = torch.from_numpy(roll[: options.prime_frames])
    rolls = sampler.sample(options.num_samples, options.length, options.temperature, prime, generator)
    rolls = rolls.cpu().numpy()
    midis = [
        midi.roll_to_midi(roll, **grid, tempo=options.tempo, velocity=options.velocity) for roll in rolls
    ]
    samples = RollSamples(rolls, midis, 0 if prime is None else len(prime), sample_rate=options.sample_rate)
    if options.get("audio"):
        for pm in midis:
            audio, samples.audio_backend = midi.render_audio(pm, options.sample_rate)
            samples.audio.append(audio)
    return samples


def write_music(samples: RollSamples, out_dir: Path) -> list[Path]:
    """`sample_NNN.mid`, its piano-roll picture `.png` and, when rendered, its `.wav`, sample by sample."""
    written = []
    for i, (roll, pm) in enumerate(zip(samples.rolls, samples.midis)):
        path = out_dir / f"sample_{i:03d}.mid"
        with atomic_path(path) as tmp:
            pm.write(str(tmp))
        midi.save_roll_png(roll, path.with_suffix(".png"), title=f"sample {i}")
        written += [path, path.with_suffix(".png")]
        if samples.audio:
            midi.write_wav(path.with_suffix(".wav"), samples.audio[i], samples.sample_rate)
            written.append(path.with_suffix(".wav"))
    return written


@dataclass
class EventSamples:
    """Drawn event tokens: each sample's ids (the prime's first), decoded to a symusic Score, its velocity
    roll (for the picture), and how many drawn tokens broke the grammar and were dropped in decoding."""

    ids: list[list[int]]
    scores: list
    rolls: list[np.ndarray]
    dropped: list[int]
    primed: int = 0
    audio: list[np.ndarray] = field(default_factory=list)
    sample_rate: int = 22050
    audio_backend: str = ""
    continuations: bool = False  # primed by a MIREX prompt: each continuation is also written in its format

    def __str__(self) -> str:
        notes = ", ".join(str(score.note_num()) for score in self.scores)
        primed = f" ({self.primed} of the prime)" if self.primed else ""
        audio = f"; audio rendered with {self.audio_backend}" if self.audio else ""
        return (
            f"{len(self.ids)} samples of {max(len(i) for i in self.ids)} tokens at most{primed}, notes {notes}; "
            f"{sum(self.dropped)} ungrammatical tokens dropped{audio}"
        )


def prime_score(path: str, tracks: str):
    """`prime_midi` read as the model's data was (tracks merged or kept), or one line why it cannot be."""
    if not Path(path).is_file():
        raise UserError(f"prime_midi not found: {path}")
    score = events.read_score(path, tracks)
    if events.note_count(score) == 0:
        raise UserError(f"{path} has no notes to continue: give another prime_midi")
    return score


def draw_events(sampler: EventSampler, options, generator: torch.Generator) -> EventSamples:
    """`options`: the sample options' keys (prime_midi or prime_json, prime_tokens, top_k, top_p, audio, ...)."""
    codec = sampler.codec
    prime = None
    if options.get("prime_json") and options.get("prime_midi"):
        raise UserError("give prime_midi or prime_json, not both")
    if options.get("prime_midi"):
        prime = codec.encode(prime_score(options.prime_midi, codec.tracks), eos=False)[
            : 1 + options.prime_tokens
        ]
    if options.get("prime_json"):  # the whole prompt: its bars fix where the continuation starts
        prime = codec.encode(mirex.read_prompt(options.prime_json, options.velocity), eos=False)
    ids = sampler.sample(
        options.num_samples,
        options.length,
        options.temperature,
        prime_ids=None if prime is None else prime.tolist(),
        top_k=options.get("top_k"),
        top_p=options.get("top_p"),
        generator=generator,
        grammar=options.get("grammar", True),
    )
    decoded = [codec.decode(row) for row in ids]
    scores, dropped = [score for score, _ in decoded], [n for _, n in decoded]
    log.info(
        "decoding dropped %d of %d tokens that break %s's grammar",
        sum(dropped),
        sum(map(len, ids)),
        codec.name,
    )
    samples = EventSamples(
        ids,
        scores,
        [events.velocity_roll(score) for score in scores],
        dropped,
        0 if prime is None else len(prime) - 1,
        sample_rate=options.sample_rate,
        continuations=bool(options.get("prime_json")),
    )
    if options.get("audio"):
        for score in scores:
            audio, samples.audio_backend = midi.render_audio(
                events.score_to_pretty_midi(score), options.sample_rate
            )
            samples.audio.append(audio)
    return samples


def write_events(samples: EventSamples, out_dir: Path) -> list[Path]:
    """`sample_NNN.mid` (velocities, timing, pedal and tempo as the tokenizer keeps them), its velocity-shaded
    roll `.png`, when rendered its `.wav`, and after a MIREX prompt its continuation `.json`, sample by sample."""
    written = []
    for i, (score, roll) in enumerate(zip(samples.scores, samples.rolls)):
        path = out_dir / f"sample_{i:03d}.mid"
        with atomic_path(path) as tmp:
            score.dump_midi(str(tmp))
        midi.save_roll_png(roll, path.with_suffix(".png"), title=f"sample {i} (shade: velocity)")
        written += [path, path.with_suffix(".png")]
        if samples.continuations:
            written.append(mirex.write_generation(score, path.with_suffix(".json")))
        if samples.audio:
            midi.write_wav(path.with_suffix(".wav"), samples.audio[i], samples.sample_rate)
            written.append(path.with_suffix(".wav"))
    return written


def describe_events(hyper: dict) -> str:
    return f"MIDI event tokens ({events.EventCodec(hyper['tokenizer']).describe()}), {_architecture(hyper)}"


def describe_lyrics(hyper: dict) -> str:
    line = f"lyrics, {_architecture(hyper)}"
    if hyper.get("conditional"):
        line += f", conditioned on {len(hyper.get('artists') or [])} artists"
    return line


def describe_music(hyper: dict) -> str:
    head = " + RNN-NADE head" if hyper.get("head") == "nade" else " + independent keys"
    return f"piano rolls, {_architecture(hyper)}{head}"


def _architecture(hyper: dict) -> str:
    if hyper.get("arch", "rnn") == "transformer":
        return f"Transformer {hyper.get('n_layer')}x{hyper.get('d_model')}"
    return f"{hyper.get('cell', 'lstm').upper()} {hyper.get('num_layers', 2)}x{hyper.get('hidden_size')}"


@dataclass(frozen=True)
class Task:
    """Everything the edges ask of one kind of model."""

    name: str  # the checkpoint's `lm_music_task`, config.json's `task`
    sampler: type[Sampler]  # the network and what drawing from it needs, without Lightning
    evaluation: type  # how `python -m lm_music.evaluate` reads, sets against real data and measures samples
    module: str  # "package.module:Class" of its LightningModule, imported only to train or score
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


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="lyrics",
            sampler=LyricsSampler,
            evaluation=LyricsKind,
            module="lm_music.modules.lyrics:LyricsLM",
            draw=draw_lyrics,
            write=write_lyrics,
            describe=describe_lyrics,
            unit="characters",
            max_page_length=5000,
            card_length=500,
            card_tags=("text-generation",),
            hub_task="text-generation",
            metrics=("test/bpc",),
            metrics_note="`bpc`: bits per character of the test songs.",
            page_controls=("prime", "artist", "top_k", "top_p"),
            page_shows="text",
        ),
        Task(
            name="pianoroll",
            sampler=PianoRollSampler,
            evaluation=MusicKind,
            module="lm_music.modules.pianoroll:PianoRollLM",
            draw=draw_music,
            write=write_music,
            describe=describe_music,
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
        ),
        Task(
            name="events",
            sampler=EventSampler,
            evaluation=EventKind,
            module="lm_music.modules.events:EventLM",
            draw=draw_events,
            write=write_events,
            describe=describe_events,
            unit="tokens",
            max_page_length=4096,
            card_length=1024,
            card_tags=("symbolic-music", "music-generation", "midi", "miditok"),
            hub_task="music-generation",
            metrics=("test/nll_token", "test/bits_per_note", "test/nats_per_second"),
            metrics_note="`nll_token`: nats per token of the test pieces (comparable only between models of the "
            "same tokenizer); `bits_per_note`: their total NLL in bits over their number of notes, and "
            "`nats_per_second`: over their seconds of music (both comparable across tokenizers).",
            page_controls=("prime_midi", "top_k", "top_p"),
        ),
    )
}
