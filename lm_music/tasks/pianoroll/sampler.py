"""Drawing piano rolls without Lightning: the roll model with its time grid and openings, the drawn rolls, and
how they are written (MIDI, pictures, audio) and described."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from lm_music import midi
from lm_music.audio import AudioRenderer, write_wav
from lm_music.decoding import generate
from lm_music.errors import UserError
from lm_music.io import atomic_path
from lm_music.midi import LOWEST_PITCH, NUM_KEYS
from lm_music.nets.roll import PianoRollRNN, PianoRollTransformer
from lm_music.tasks.sampler import NetworkSampler, network
from lm_music.tasks.task import architecture, refuse_option

ROLL_ARCHS = {"rnn": PianoRollRNN, "transformer": PianoRollTransformer}


class PianoRollSampler(NetworkSampler):
    """A piano-roll model (`arch`: rnn or transformer) with its time grid and, for a model without a learned
    start, the opening frames of training pieces to start from."""

    task_name = "pianoroll"

    def __init__(
        self,
        frames_per_beat: int | None = 2,
        fs: float | None = None,
        openings: list[list[int]] | None = None,
        arch: str = "rnn",
        **sizes,
    ) -> None:
        """`sizes`: the arguments of `PianoRollRNN` or `PianoRollTransformer` (sizes, head)."""
        self.frames_per_beat, self.fs = frames_per_beat, fs
        self.openings = [list(o) for o in (openings or [])]
        self.net = network(ROLL_ARCHS, arch, num_keys=NUM_KEYS, **sizes)

    def sample(
        self,
        num_samples: int,
        length: int,
        temperature: float = 1.0,
        prime: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`num_samples` rolls (B, P + length, 88) uint8 drawn as one batch: `prime` (P, 88) and `length` frames
        drawn after it; without a prime, `length` frames (P = 0), all drawn by a model with a learned start,
        else the first the opening frame of a training piece chosen at random."""
        learned_start = self.net.start is not None
        if prime is not None:
            frames = prime.to(self.device).float()[None].expand(num_samples, -1, -1)
        elif learned_start:
            frames = torch.zeros(num_samples, 0, NUM_KEYS, device=self.device)
        else:
            frames = torch.zeros(num_samples, 1, NUM_KEYS, device=self.device)
            if self.openings:
                picks = torch.randint(
                    len(self.openings), (num_samples,), generator=generator, device=self.device
                )
                for i, pick in enumerate(picks.tolist()):
                    frames[i, 0, [p - LOWEST_PITCH for p in self.openings[pick]]] = 1.0
            length -= 1
        if length > 0:
            drawn = generate(
                lambda x, state: self.net(x, state, start=learned_start and state is None),
                frames,
                length,
                lambda h: self.net.head.sample(h, temperature, generator),
            )
            frames = torch.cat([frames, drawn], dim=1)
        return frames.to(torch.uint8)


@dataclass
class RollSamples:
    """Drawn music: rolls (B, T, 88) uint8, each also as MIDI; `primed` frames of each came from a prime."""

    rolls: np.ndarray
    midis: list[pretty_midi.PrettyMIDI]
    primed: int = 0
    audio: list[np.ndarray] = field(default_factory=list)  # one per sample when rendered, at `sample_rate`
    sample_rate: int = 22050
    rendered_by: str = ""

    def __str__(self) -> str:
        primed = f" ({self.primed} of prime_midi, then {self.rolls.shape[1] - self.primed} drawn)"
        audio = f"; audio rendered with {self.rendered_by}" if self.audio else ""
        return (
            f"{len(self.rolls)} samples of {self.rolls.shape[1]} frames"
            + (primed if self.primed else "")
            + audio
        )


def draw(sampler: PianoRollSampler, options, generator: torch.Generator) -> RollSamples:
    """`options`: the sample options' keys (prime_midi, prime_frames, tempo, velocity, audio, ...)."""
    grid = {"frames_per_beat": sampler.frames_per_beat, "fs": sampler.fs}
    refuse_option("prime_json", options, "event-token (e.g. pretrained=pop909)")
    refuse_option("infill_bars", options, "infilling event-token (e.g. pretrained=pop909_infill)")
    refuse_option("controls", options, "infilling event-token (e.g. pretrained=pop909_infill)")
    refuse_option("cache_lambda", options, "token (lyrics and event-token)")
    refuse_option("refrain_start", options, "token (lyrics and event-token)")
    refuse_option("rhyme_candidates", options, "lyrics")
    refuse_option("min_length", options, "event-token (rolls have no end to draw)")
    renderer = AudioRenderer.from_options(options.get("audio"))  # a bad soundfont is refused before drawing
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
    samples = RollSamples(rolls, midis, 0 if prime is None else len(prime))
    if renderer:
        samples.audio = [renderer.render(pm) for pm in midis]
        samples.sample_rate, samples.rendered_by = renderer.sample_rate, renderer.description
    return samples


def write(samples: RollSamples, out_dir: Path) -> list[Path]:
    """`sample_NNN.mid`, its piano-roll picture `.png` and, when rendered, its `.wav`, sample by sample."""
    written = []
    for i, (roll, pm) in enumerate(zip(samples.rolls, samples.midis)):
        path = out_dir / f"sample_{i:03d}.mid"
        with atomic_path(path) as tmp:
            pm.write(str(tmp))
        midi.save_roll_png(roll, path.with_suffix(".png"), title=f"sample {i}", prime_end=samples.primed)
        written += [path, path.with_suffix(".png")]
        if samples.audio:
            write_wav(path.with_suffix(".wav"), samples.audio[i], samples.sample_rate)
            written.append(path.with_suffix(".wav"))
    return written


def describe(hyper: dict) -> str:
    head = " + RNN-NADE head" if hyper.get("head") == "nade" else " + independent keys"
    return f"piano rolls, {architecture(hyper)}{head}"
