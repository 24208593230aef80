"""MIDI -> audio, one renderer for every music task (piano rolls and event tokens), for sample.py, the page,
the trackers and the cards.

- `soundfont` (the default): the SoundFont sampler of `lm_music/soundfont.py` (numpy only; it says why no
  library does it here), with the General MIDI set pretty_midi ships (`TimGM6mb.sf2`, an acoustic grand
  piano) unless `audio.soundfont=PATH` names a user's own `.sf2`/`.sf3`.
- `fluidsynth`: FluidSynth through pretty_midi, where a user has pyfluidsynth and libfluidsynth and asks.
- `sine`: pretty_midi's sine waves, the last fallback.

What every renderer hears is the same note table: pitched notes only, notes held through the sustain pedal,
and the piece moved to start at its first note, so that a sample never opens with bars of rest.
"""

import functools
import io
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm_music import soundfont
from lm_music.errors import UserError
from lm_music.io import atomic_path

log = logging.getLogger(__name__)

RENDERERS = ("soundfont", "fluidsynth", "sine")


def default_soundfont() -> Path:
    """The General MIDI SoundFont pretty_midi installs beside itself (6 MB, its piano is program 0)."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


@dataclass
class Notes:
    """A piece as arrays (seconds), what every renderer is given: one row per pitched note."""

    program: np.ndarray
    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    @classmethod
    def of(cls, music) -> "Notes":
        """From a PrettyMIDI or a symusic Score: pitched notes, held through each track's sustain pedal, the
        whole moved so that the first note starts at 0."""
        import pretty_midi
        import symusic

        if isinstance(music, pretty_midi.PrettyMIDI):  # through MIDI bytes, which symusic parses with pedals
            buffer = io.BytesIO()
            music.write(buffer)
            music = symusic.Score.from_midi(buffer.getvalue())
        columns = {name: [] for name in ("program", "start", "end", "pitch", "velocity")}
        for track in music.to("second").tracks:
            if track.is_drum or not track.notes:
                continue
            notes = track.notes.numpy()
            start = notes["time"].astype(np.float64)
            end = held_through_pedals(start, start + notes["duration"], notes["pitch"], track.pedals.numpy())
            columns["program"].append(np.full(len(start), track.program, dtype=np.int64))
            columns["start"].append(start)
            columns["end"].append(end)
            columns["pitch"].append(notes["pitch"].astype(np.int64))
            columns["velocity"].append(notes["velocity"].astype(np.int64))
        table = {k: np.concatenate(v) if v else np.zeros(0) for k, v in columns.items()}
        if len(table["start"]):
            first = table["start"].min()
            table["start"], table["end"] = table["start"] - first, table["end"] - first
        return cls(**table)

    def __len__(self) -> int:
        return len(self.start)

    def pretty_midi(self, rows: np.ndarray | None = None):
        """These notes (or some rows) as a PrettyMIDI, an instrument a program, for pretty_midi's renderers."""
        import pretty_midi

        rows = np.arange(len(self)) if rows is None else rows
        pm = pretty_midi.PrettyMIDI()
        for program in np.unique(self.program[rows]):
            instrument = pretty_midi.Instrument(program=int(program))
            for i in rows[self.program[rows] == program]:
                instrument.notes.append(
                    pretty_midi.Note(int(self.velocity[i]), int(self.pitch[i]), self.start[i], self.end[i])
                )
            pm.instruments.append(instrument)
        return pm


def held_through_pedals(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, pedals: dict) -> np.ndarray:
    """Note ends as heard with the sustain pedal: a note released while the pedal is down sounds until the
    pedal lifts, or until the same key is struck again, whichever comes first."""
    end = end.astype(np.float64).copy()
    down = np.asarray(pedals["time"], dtype=np.float64)
    up = down + np.asarray(pedals["duration"], dtype=np.float64)
    if not len(down) or not len(end):
        return end
    order = np.argsort(down)
    down, up = down[order], up[order]
    pedal = np.searchsorted(down, end, side="right") - 1  # the last pedal pressed by each release
    held = (pedal >= 0) & (end < up[np.maximum(pedal, 0)])
    end[held] = up[pedal[held]]
    for key in np.unique(pitch[held]):  # a key struck again cuts its held note
        rows = np.flatnonzero(pitch == key)
        rows = rows[np.argsort(start[rows])]
        end[rows[:-1]] = np.minimum(end[rows[:-1]], np.maximum(start[rows[1:]], start[rows[:-1]] + 1e-3))
    return end


@functools.cache
def _say_once(message: str) -> None:
    """The sample logger renders every few epochs and the page at every click: one line a process."""
    log.info(message)


@dataclass(frozen=True)
class AudioRenderer:
    """Renders MIDI (a PrettyMIDI or a symusic Score) to peak-normalised mono float32 at `sample_rate`."""

    renderer: str = "soundfont"
    soundfont: str | None = None  # None: default_soundfont()
    sample_rate: int = 22050

    @classmethod
    def from_options(cls, audio) -> "AudioRenderer | None":
        """From the `audio` option: false/null (no audio), true (the defaults), or a mapping of these fields."""
        if not audio:
            return None
        if audio is True:
            return cls()
        unknown = set(audio) - {"renderer", "soundfont", "sample_rate"}
        if unknown:
            raise UserError(
                f"unknown audio option(s) {sorted(unknown)}: use audio.renderer, audio.soundfont, audio.sample_rate"
            )
        renderer = cls(
            audio.get("renderer") or "soundfont",
            str(audio["soundfont"]) if audio.get("soundfont") else None,
            int(audio.get("sample_rate") or 22050),
        )
        renderer.check()
        return renderer

    @property
    def soundfont_path(self) -> Path:
        return Path(self.soundfont).expanduser() if self.soundfont else default_soundfont()

    def check(self) -> None:
        """Refuse, in one line, what cannot render: an unknown renderer, a missing or unreadable SoundFont,
        FluidSynth asked for where it is not installed."""
        if self.renderer not in RENDERERS:
            raise UserError(f"audio.renderer={self.renderer} is not one of {', '.join(RENDERERS)}")
        if self.sample_rate < 8000:
            raise UserError(
                f"audio.sample_rate={self.sample_rate} is too low to hear a piano: use 8000 or more"
            )
        path = self.soundfont_path
        if self.renderer != "sine" and not path.is_file():
            raise UserError(f"audio.soundfont={path}: no such file; give an .sf2 or .sf3 SoundFont")
        if self.renderer == "soundfont":
            try:
                soundfont.load(str(path))
            except (soundfont.SoundFontError, struct.error, IndexError) as error:
                raise UserError(
                    f"audio.soundfont={path} is not a readable SoundFont ({error}): give an .sf2 or .sf3 file"
                ) from None
        if self.renderer == "fluidsynth":
            try:
                import fluidsynth

                fluidsynth.Synth  # noqa: B018  (PyPI's unrelated "fluidsynth" package has no Synth)
            except (ImportError, OSError, AttributeError) as error:
                raise UserError(
                    f"audio.renderer=fluidsynth needs pyfluidsynth and the libfluidsynth library ({error}): "
                    "install them, or use audio.renderer=soundfont"
                ) from None

    @property
    def description(self) -> str:
        """What renders the audio, for log lines, sample summaries and the page."""
        if self.renderer == "sine":
            return "sine waves (pretty_midi)"
        engine = "lm_music's sampler" if self.renderer == "soundfont" else "FluidSynth"
        return f"the SoundFont {self.soundfont_path.name} ({engine})"

    def render(self, music) -> np.ndarray:
        """The piece's audio, starting at its first note; silence (zero samples) when it has no note."""
        notes = Notes.of(music)
        if not len(notes):
            audio = np.zeros(0, dtype=np.float32)
        elif self.renderer == "soundfont":
            audio = soundfont.render(
                str(self.soundfont_path),
                notes.program,
                notes.pitch,
                notes.start,
                notes.end,
                notes.velocity,
                self.sample_rate,
            )
        elif self.renderer == "fluidsynth":
            audio = notes.pretty_midi().fluidsynth(fs=self.sample_rate, sf2_path=str(self.soundfont_path))
        else:
            audio = notes.pretty_midi().synthesize(fs=self.sample_rate)
        _say_once(f"audio rendered with {self.description}")
        audio = np.asarray(audio, dtype=np.float32)
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        return audio / peak if peak > 0 else audio


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV, which every player and experiment tracker reads."""
    import scipy.io.wavfile  # 0.2 s to import: only runs that write audio pay it

    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        scipy.io.wavfile.write(tmp, sample_rate, pcm)
