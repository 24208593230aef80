"""Drawing MIDI event tokens without Lightning: the token model with its MidiTok tokenizer, the drawn pieces
(decoded to scores), and how they are written (MIDI, pictures, audio, MIREX continuations) and described."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import lm_music.tasks.events.codec as events
import lm_music.tasks.events.infill as infill
import lm_music.tasks.events.mirex as mirex
from lm_music import midi
from lm_music.audio import AudioRenderer, write_wav
from lm_music.cache import ContinuousCache, Refrain
from lm_music.errors import UserError
from lm_music.io import atomic_path
from lm_music.tasks.events.codec import EventCodec
from lm_music.tasks.sampler import TokenSampler
from lm_music.tasks.task import architecture, refuse_option

log = logging.getLogger(__name__)


class EventSampler(TokenSampler):
    """An event-token model (`arch`: rnn or transformer) with its MidiTok tokenizer: MIDI in, MIDI out."""

    task_name = "events"

    def __init__(self, tokenizer: dict, arch: str = "rnn", **sizes) -> None:
        """`tokenizer`: the tokenizer's full parameters (`events.tokenizer_params`); `sizes`: the arguments of
        `TokenRNN` or `TokenTransformer` other than the vocabulary."""
        self.codec = EventCodec(tokenizer)
        self.net = self.token_network(arch, **sizes)

    def sample(
        self,
        num_samples: int,
        length: int,
        temperature: float = 1.0,
        prime_ids: list[int] | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        grammar: bool = True,
        cache: ContinuousCache | None = None,
        min_length: int = 0,
        controls: list[list[int]] | None = None,
        refrain: Refrain | None = None,
    ) -> list[list[int]]:
        """`num_samples` id lists drawn as one batch: the prime's ids (the start id when none), then up to
        `length` drawn ids (fewer where the model ends the piece). Decode them with `codec.decode`. With
        `grammar`, each draw is kept to the ids MidiTok's grammar lets follow (`events.GrammarMask`; not for
        a BPE vocabulary); without it, what the model draws is what it gives. `cache`: drawn through a
        continuous cache (`lm_music.cache`), which can copy a section the piece has already played;
        `min_length`: no piece ends before that many drawn ids; `controls`: the attribute-control ids to give
        after each Bar drawn, bar by bar (`infill.BarControl`; a model trained with controls); `refrain`: a bar
        may be one the piece has played before (`lm_music.cache.Refrain`)."""
        if controls and refrain is not None:
            raise UserError("controls steer each new bar, and a refrain copies bars: give one or the other")
        prime = list(prime_ids) if prime_ids is not None else [self.codec.BOS]
        mask = self.codec.grammar(prime, num_samples) if grammar else None
        if controls:
            mask = infill.BarControl(self.codec, controls, num_samples, mask)
        rows = self.draw_ids(
            prime,
            num_samples,
            length,
            temperature,
            top_k,
            top_p,
            generator,
            processor=mask,
            cache=cache,
            min_length=min(min_length, length),
            refrain=refrain,
        )
        return [prime + row for row in rows]


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
    rendered_by: str = ""
    continuations: bool = False  # primed by a MIREX prompt: each continuation is also written in its format
    prime_end: float | None = None  # where the prime ends in the pictures (frames of `velocity_roll`)
    infilled: tuple[float, float] | None = None  # the infilled bars in the pictures (frames)
    excerpts: list = field(
        default_factory=list
    )  # infilling: the gap and the bars around it (pictures, audio)
    gap: str = ""  # infilling: the bars rewritten, as asked ("5-8") and in seconds

    def __str__(self) -> str:
        notes = ", ".join(str(score.note_num()) for score in self.scores)
        primed = f" ({self.primed} of the prime)" if self.primed else ""
        audio = f"; audio rendered with {self.rendered_by}" if self.audio else ""
        if self.gap:  # the new notes are on the last track (`infill.splice`)
            notes = ", ".join(str(score.tracks[-1].note_num()) for score in self.scores)
            return f"{len(self.ids)} pieces with bars {self.gap} infilled, new notes {notes}{audio}"
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


def draw(sampler: EventSampler, options, generator: torch.Generator) -> EventSamples:
    """`options`: the sample options' keys (prime_midi or prime_json, prime_tokens, top_k, top_p, audio, ...)."""
    codec = sampler.codec
    prime = None
    refuse_option("rhyme_candidates", options, "lyrics")
    renderer = AudioRenderer.from_options(options.get("audio"))  # a bad soundfont is refused before drawing
    if options.get("prime_json") and options.get("prime_midi"):
        raise UserError("give prime_midi or prime_json, not both")
    if options.get("infill_bars"):
        return draw_infilled(sampler, options, generator, renderer)
    controls = None  # every bar drawn steered, or the first ones (a list)
    if any(v is not None for v in (options.get("controls") or {}).values()):
        controls = infill.control_ids(codec, options.controls, options.length, exact=False)
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
        cache=ContinuousCache.from_options(options),
        min_length=options.get("min_length") or 0,
        controls=controls,
        refrain=Refrain.from_options(options),
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
        continuations=bool(options.get("prime_json")),
        # the prime's last note-off, on the pictures' grid
        prime_end=None if prime is None else len(events.velocity_roll(codec.decode(prime.tolist())[0])),
    )
    if renderer:
        samples.audio = [renderer.render(score) for score in scores]
        samples.sample_rate, samples.rendered_by = renderer.sample_rate, renderer.description
    return samples


def draw_infilled(
    sampler: EventSampler, options, generator: torch.Generator, renderer: AudioRenderer | None
) -> EventSamples:
    """Bars `infill_bars` of prime_midi (or a MIREX prime_json) drawn anew by a model trained to infill, with
    the `controls` asked for: each sample is the whole piece with its new bars spliced in (`infill.splice`),
    every other note as the file has it; its picture and audio are the gap and as many bars on either side."""
    import symusic

    codec = sampler.codec
    if not codec.infilling:
        raise UserError(
            "infill_bars= needs a model trained to infill (e.g. pretrained=pop909_infill); this one continues only"
        )
    if Refrain.from_options(options) is not None:
        raise UserError(
            "refrain_* repeats bars of a continuation; an infill's bars follow their controls: leave it out"
        )
    gap = infill.Gap.parse(options.infill_bars)
    if options.get("prime_midi"):
        view = prime_score(options.prime_midi, codec.tracks)
        original, source = symusic.Score(options.prime_midi), options.prime_midi
    elif options.get("prime_json"):
        view = original = mirex.read_prompt(options.prime_json, options.velocity)
        source = options.prime_json
    else:
        raise UserError(
            "infill_bars= rewrites bars of a piece: give it as prime_midi=SONG.mid or prime_json="
        )
    ids = codec.encode(view, eos=False)
    starts = infill.bar_starts(ids, codec.BAR)
    if gap.last >= len(starts):
        raise UserError(f"{source} has {len(starts)} bars: infill_bars={gap} asks for bars past its end")
    controls = infill.control_ids(codec, options.get("controls"), gap.bars)
    prime, _ = infill.layout(ids, starts, gap, (codec.INFILL, codec.FILL_START, codec.FILL_END))
    mask = codec.grammar(prime, options.num_samples) if options.get("grammar", True) else None
    rows = sampler.draw_ids(
        prime.tolist(),
        options.num_samples,
        options.length,
        options.temperature,
        options.get("top_k"),
        options.get("top_p"),
        generator,
        processor=infill.BarControl(codec, controls, options.num_samples, mask, gap=gap.bars),
        cache=ContinuousCache.from_options(options),
    )
    fills = [infill.fill_of(row, codec, gap.bars) for row in rows]
    short = sum(fill.count(codec.BAR) < gap.bars for fill in fills)
    if short:
        log.warning(
            "%d of %d fills stopped at length=%d before their last bar: raise length",
            short,
            len(fills),
            options.length,
        )
    ticks = infill.bar_ticks(original, gap.last + 1 + gap.bars)
    begin, end = ticks[gap.first], ticks[gap.last + 1]
    decoded = [codec.decode(fill) for fill in fills]
    step = infill.grid_step(original, codec.tokenizer)
    scores = [infill.splice(original, fill, begin, end, step) for fill, _ in decoded]
    # the excerpt heard and pictured: the gap and as many bars either side (its notes as the piece has them)
    around = ticks[max(0, gap.first - gap.bars)], ticks[gap.last + 1 + gap.bars]
    excerpts = [infill.excerpt(score, *around) for score in scores]
    frames = 4 / original.ticks_per_quarter  # `velocity_roll`'s frames (16ths) per tick
    seconds = infill.seconds_at(original, [begin, end])
    samples = EventSamples(
        [prime.tolist() + fill for fill in fills],
        scores,
        [events.velocity_roll(e) for e in excerpts],
        [dropped for _, dropped in decoded],
        len(prime),
        infilled=((begin - around[0]) * frames, (end - around[0]) * frames),
        excerpts=excerpts,
        gap=f"{gap} ({seconds[0]:.1f}-{seconds[1]:.1f} s)",
    )
    if renderer:
        samples.audio = [renderer.render(e) for e in excerpts]
        samples.sample_rate, samples.rendered_by = renderer.sample_rate, renderer.description
    return samples


def write(samples: EventSamples, out_dir: Path) -> list[Path]:
    """`sample_NNN.mid` (velocities, timing, pedal and tempo as the tokenizer keeps them), its velocity-shaded
    roll `.png`, when rendered its `.wav`, and after a MIREX prompt its continuation `.json`, sample by sample."""
    written = []
    for i, (score, roll) in enumerate(zip(samples.scores, samples.rolls)):
        path = out_dir / f"sample_{i:03d}.mid"
        with atomic_path(path) as tmp:
            score.dump_midi(str(tmp))
        midi.save_roll_png(
            roll,
            path.with_suffix(".png"),
            title=f"sample {i}, bars {samples.gap} (shade: velocity)"
            if samples.gap
            else f"sample {i} (shade: velocity)",
            prime_end=samples.prime_end,
            infilled=samples.infilled,
        )
        written += [path, path.with_suffix(".png")]
        if samples.continuations:
            written.append(mirex.write_generation(score, path.with_suffix(".json")))
        if samples.audio:
            write_wav(path.with_suffix(".wav"), samples.audio[i], samples.sample_rate)
            written.append(path.with_suffix(".wav"))
    return written


def describe(hyper: dict) -> str:
    return f"MIDI event tokens ({events.EventCodec(hyper['tokenizer']).describe()}), {architecture(hyper)}"
