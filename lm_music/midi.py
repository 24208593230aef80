"""MIDI <-> piano roll on a beat grid or a time grid, roll -> PNG (audio: `lm_music/audio.py`).

A roll is a uint8 array of shape (T, 88): row t is one frame, column j is MIDI pitch j + 21 (A0 .. C8).
This module knows nothing of torch or Lightning, so sampling and data reading share it freely.
"""

import logging
import warnings
from pathlib import Path

import numpy as np
import pretty_midi

from lm_music.errors import UserError
from lm_music.io import atomic_path

log = logging.getLogger(__name__)

LOWEST_PITCH = 21
NUM_KEYS = 88
HIGHEST_PITCH = LOWEST_PITCH + NUM_KEYS - 1

# Krumhansl-Kessler key profiles (probe-tone ratings), index 0 = the tonic.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def check_grid(frames_per_beat: int | None, fs: float | None) -> None:
    """A roll has one grid: beats (follows the tempo map) or seconds. Refuse both or neither."""
    if (frames_per_beat is None) == (fs is None):
        raise UserError(
            f"set exactly one of frames_per_beat (beat grid) or fs (frames per second), "
            f"got frames_per_beat={frames_per_beat} and fs={fs}: set the other one to null"
        )
    if frames_per_beat is not None and (int(frames_per_beat) != frames_per_beat or frames_per_beat < 1):
        raise UserError(f"frames_per_beat must be a positive whole number, got {frames_per_beat}")
    if fs is not None and fs <= 0:
        raise UserError(f"fs (frames per second) must be positive, got {fs}")


class UnreadableMidi(UserError):
    """A file pretty_midi cannot parse; `reason` says why, for readers that skip it and say so once."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read MIDI file {path} ({reason})")
        self.path, self.reason = str(path), reason


def load_midi(path: str | Path) -> pretty_midi.PrettyMIDI:
    """Parse a MIDI file, without pretty_midi's warning about meta events on non-zero tracks.

    That warning fires on most real files (Nottingham, type-1 files from notation programs) and says
    nothing a user can act on; the tempo map pretty_midi builds is still the right one.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tempo, Key or Time signature change events")
        try:
            return pretty_midi.PrettyMIDI(str(path))
        except Exception as error:  # mido and pretty_midi raise many kinds of error on damaged files
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise UnreadableMidi(path, reason) from None


def seconds_to_frames(
    pm: pretty_midi.PrettyMIDI, times: np.ndarray, frames_per_beat: int | None, fs: float | None
) -> np.ndarray:
    """Frame positions (fractional) of times in seconds.

    The beat grid counts quarter notes through the tempo map (pretty_midi's tempo is in quarter notes
    per minute), so a frame is 1/frames_per_beat of a quarter note whatever the time signature.
    `pm.get_beats()` would follow the time signature instead (dotted quarters in 6/8, half notes in 2/2),
    which gives frames of different lengths across a dataset (a third of the Nottingham tunes are in 6/8).
    Times past the last tempo change continue at the last tempo.
    """
    times = np.asarray(times, dtype=np.float64)
    if fs is not None:
        return times * fs
    change_times, tempi = pm.get_tempo_changes()
    beats_at_change = np.concatenate([[0.0], np.cumsum(np.diff(change_times) * tempi[:-1] / 60.0)])
    i = np.searchsorted(change_times, times, side="right") - 1
    beats = beats_at_change[i] + (times - change_times[i]) * tempi[i] / 60.0
    return beats * frames_per_beat


def notes_to_roll(pitches: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Roll from notes whose start and end are fractional frame positions; pitches must be 21..108.

    Note boundaries round to the nearest frame (halves round up); a note is on in frames [start, end),
    and a note shorter than a frame still gets one frame. The roll ends at the last note-off.
    """
    start = np.floor(np.asarray(starts) + 0.5).astype(np.int64)
    end = np.maximum(np.floor(np.asarray(ends) + 0.5).astype(np.int64), start + 1)
    roll = np.zeros((int(end.max()) if len(end) else 0, NUM_KEYS), dtype=np.uint8)
    for key, s, e in zip(np.asarray(pitches) - LOWEST_PITCH, start, end):
        roll[s:e, key] = 1
    return roll


def _zscore(rows: np.ndarray) -> np.ndarray:
    centred = rows - rows.mean(-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(-1, keepdims=True))


ROTATED = np.array([np.roll(np.arange(12), -t) for t in range(12)])  # ROTATED[t]: classes from tonic t
PROFILES = _zscore(np.stack([MAJOR_PROFILE, MINOR_PROFILE]))


def estimate_major_tonic(histogram: np.ndarray) -> int:
    """Pitch class of the major key whose signature fits the notes best (Krumhansl-Schmuckler): the (12,)
    pitch-class histogram (weighted by duration) correlated with the 24 rotated key profiles at once. A minor
    key counts as its relative major: both move to the same place (A minor / C major)."""
    histogram = np.asarray(histogram, dtype=float)
    if histogram.sum() == 0 or np.ptp(histogram) == 0:
        return 0
    scores = _zscore(histogram[ROTATED]) @ PROFILES.T / 12  # (tonic, major|minor) correlations
    tonic, minor = divmod(int(np.argmax(scores)), 2)
    return (tonic + 3 * minor) % 12


def transpose_shift(major_tonic: int, lowest: int, highest: int) -> int:
    """Semitones that move a key with this major tonic to C major / A minor.

    The smallest interval (-6..+5) is taken, unless it pushes a note off the keyboard and the
    shift an octave the other way does not.
    """
    shift = (-major_tonic) % 12
    if shift > 5:
        shift -= 12
    for candidate in (shift, shift - 12 if shift > 0 else shift + 12):
        if lowest + candidate >= LOWEST_PITCH and highest + candidate <= HIGHEST_PITCH:
            return candidate
    return shift


def _major_tonic(pm: pretty_midi.PrettyMIDI, pitches: np.ndarray, durations: np.ndarray) -> int:
    """The file's first key signature when it has one, else the estimate from the notes."""
    if pm.key_signature_changes:
        key = pm.key_signature_changes[0].key_number
        return key if key < 12 else (key - 12 + 3) % 12
    return estimate_major_tonic(np.bincount(np.asarray(pitches) % 12, weights=durations, minlength=12))


def midi_to_roll(
    source: str | Path | pretty_midi.PrettyMIDI,
    frames_per_beat: int | None = 2,
    fs: float | None = None,
    transpose_to_c: bool = False,
) -> tuple[np.ndarray, dict]:
    """Roll of the pitched notes of a MIDI file or object, and counts of what was left out.

    Drums are dropped; notes outside A0..C8 (after transposing) are dropped and counted. The roll
    starts at time 0 and ends at the last note-off (not at `get_end_time()`, which counts tempo and
    meta events that some files carry long after the music). No notes gives a (0, 88) roll.
    Set frames_per_beat=None to use fs.
    """
    check_grid(frames_per_beat, fs)
    pm = source if isinstance(source, pretty_midi.PrettyMIDI) else load_midi(source)
    notes = [note for inst in pm.instruments if not inst.is_drum for note in inst.notes]
    pitches = np.array([note.pitch for note in notes], dtype=np.int64)
    starts = np.array([note.start for note in notes], dtype=np.float64)
    ends = np.array([note.end for note in notes], dtype=np.float64)

    shift = 0
    if transpose_to_c and len(notes):
        tonic = _major_tonic(pm, pitches, ends - starts)
        shift = transpose_shift(tonic, int(pitches.min()), int(pitches.max()))
        pitches = pitches + shift

    keep = (pitches >= LOWEST_PITCH) & (pitches <= HIGHEST_PITCH)
    roll = notes_to_roll(
        pitches[keep],
        seconds_to_frames(pm, starts[keep], frames_per_beat, fs),
        seconds_to_frames(pm, ends[keep], frames_per_beat, fs),
    )
    stats = {
        "notes": int(keep.sum()),
        "dropped_out_of_range": int((~keep).sum()),
        "dropped_drum_notes": sum(len(inst.notes) for inst in pm.instruments if inst.is_drum),
        "transposed_by": shift,
    }
    return roll, stats


def roll_to_midi(
    roll: np.ndarray,
    frames_per_beat: int | None = 2,
    fs: float | None = None,
    tempo: float = 120.0,
    velocity: int = 80,
    program: int = 0,
) -> pretty_midi.PrettyMIDI:
    """One-instrument MIDI where each run of consecutive active frames of a key is one held note.

    `midi_to_roll` on the same grid gives the roll back, except trailing empty frames: a MIDI file
    has no notion of silence after its last note, so they are trimmed. On the beat grid a frame
    lasts 60 / (tempo * frames_per_beat) seconds; on the time grid 1 / fs seconds.
    Set frames_per_beat=None to use fs.
    """
    check_grid(frames_per_beat, fs)
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise ValueError(f"a roll has shape (T, {NUM_KEYS}), got {roll.shape}")
    frame_seconds = 1.0 / fs if fs is not None else 60.0 / (tempo * frames_per_beat)
    # 960 ticks per quarter note divides evenly into 1, 2, 3, 4, 5, 6, 8, 10, 12, 16 frames per beat.
    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=tempo)
    piano = pretty_midi.Instrument(program=program)
    edges = np.diff(np.pad(roll.astype(np.int8) != 0, ((1, 1), (0, 0))).astype(np.int8), axis=0)
    on_keys, on_frames = np.nonzero(edges.T == 1)  # sorted by key, then frame
    _, off_frames = np.nonzero(edges.T == -1)
    for key, on, off in zip(on_keys, on_frames, off_frames):
        piano.notes.append(
            pretty_midi.Note(
                velocity=velocity,
                pitch=int(key) + LOWEST_PITCH,
                start=on * frame_seconds,
                end=off * frame_seconds,
            )
        )
    piano.notes.sort(key=lambda note: (note.start, note.pitch))
    pm.instruments.append(piano)
    return pm


def _roll_canvas(
    roll: np.ndarray,
    title: str | None,
    prime_end: float | None = None,
    infilled: tuple[float, float] | None = None,
):
    """A drawn matplotlib canvas of the roll (Agg, no pyplot: no global state, no display needed); a dashed
    line at `prime_end` (frames) where the prime ends and the drawn music begins; `infilled` (frames from,
    to): the bars a model wrote into a piece, shaded and framed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image = roll.T if len(roll) else np.zeros((NUM_KEYS, 1), dtype=np.uint8)
    fig = Figure(figsize=(max(4.0, min(16.0, image.shape[1] / 25)), 4.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(
        image,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        cmap="gray_r",
        vmin=0,
        vmax=1,
        extent=(0, image.shape[1], LOWEST_PITCH - 0.5, HIGHEST_PITCH + 0.5),
    )
    if prime_end:
        ax.axvline(prime_end, color="tab:red", linestyle="--", linewidth=1.5)
        ax.text(prime_end, HIGHEST_PITCH, " drawn \u2192", color="tab:red", va="top", ha="left")
        ax.text(prime_end, HIGHEST_PITCH, "\u2190 prime ", color="tab:red", va="top", ha="right")
    if infilled:
        ax.axvspan(*infilled, color="tab:red", alpha=0.12)
        for x in infilled:
            ax.axvline(x, color="tab:red", linestyle="--", linewidth=1.5)
        ax.text(sum(infilled) / 2, HIGHEST_PITCH, "infilled", color="tab:red", va="top", ha="center")
    ax.set_xlabel("frame")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    canvas.draw()
    return canvas


def roll_image(roll: np.ndarray, title: str | None = None) -> np.ndarray:
    """The piano-roll picture as an H x W x 3 uint8 array, for experiment trackers."""
    return np.asarray(_roll_canvas(roll, title).buffer_rgba())[..., :3].copy()


def save_roll_png(
    roll: np.ndarray,
    path: str | Path,
    title: str | None = None,
    prime_end: float | None = None,
    infilled: tuple[float, float] | None = None,
) -> None:
    """Piano-roll picture (time on x, pitch on y), for sample logs and eyeballing data; `prime_end` marks
    where a prime ends, `infilled` the bars a model wrote into a piece (frames)."""
    canvas = _roll_canvas(roll, title, prime_end, infilled)
    with atomic_path(path) as tmp:
        canvas.figure.savefig(tmp, format="png")
