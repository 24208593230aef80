"""Features of piano rolls, one value per piece (MusPy's and Yang & Lerch's definitions, in numpy on rolls).

A roll is (T, 88) uint8, column j = MIDI pitch j + 21. A *note* is a run of consecutive active frames of one
key (as `lm_music.midi.roll_to_midi` writes it), so counting notes, their onsets and their lengths needs no
MIDI. The definitions follow MusPy 0.5.0 (Dong et al., ISMIR 2020) and MGEval (Yang & Lerch 2018); where
MusPy works on beats or bars, these work on the model's frames and on bars of `bar_frames` frames.

Why not MusPy itself: it installs beside the project's pins, but scoring a roll through it means building a
`muspy.Music` per piece (a Python object per note), its import pulls music21, pypianoroll and miditoolkit, and
its known oddities (groove on near-silent bars, arrays cut at the last note) would have to be worked around
anyway. These functions are a few numpy lines each, tested on hand-made rolls whose values are known.
"""

import numpy as np

from lm_music.midi import LOWEST_PITCH, estimate_major_tonic

MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])  # natural minor scales are rotations: the same 12 pitch sets
NOTE_WINDOW = 16  # notes: a run this long found verbatim in a training piece counts as a copied window
POLYPHONY_THRESHOLD = 2  # MusPy's polyphony_rate default: frames with MORE than 2 keys sounding
SCALES = np.zeros((12, 12), dtype=bool)  # SCALES[t]: the pitch classes of the major scale on tonic t
for _tonic in range(12):
    SCALES[_tonic, (_tonic + MAJOR_SCALE) % 12] = True


def notes(roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitches, onset frames, lengths in frames) of the notes of a roll, sorted by onset, then pitch."""
    padded = np.zeros((len(roll) + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll != 0
    change = np.diff(padded, axis=0)  # +1 at an onset frame, -1 at the frame after the note
    key_on, t_on = np.nonzero(change.T == 1)  # key-major: onsets and offsets of one key pair up in order
    _, t_off = np.nonzero(change.T == -1)
    order = np.lexsort((key_on, t_on))
    return key_on[order] + LOWEST_PITCH, t_on[order], (t_off - t_on)[order]


def note_symbols(pitches: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Notes (sorted by onset, then pitch) as one symbol each: the pitch and the frames since the previous
    onset (0 within a chord, capped at 255), what a run of notes copied from a training piece repeats."""
    intervals = np.minimum(np.diff(onsets, prepend=onsets[:1]), 255) if len(onsets) else onsets
    return (np.asarray(pitches, np.int64) << 8) | np.asarray(intervals, np.int64)


def roll_note_symbols(roll: np.ndarray) -> np.ndarray:
    """The note symbols of a roll (`note_symbols`)."""
    pitches, onsets, _ = notes(roll)
    return note_symbols(pitches, onsets)


def _entropy(counts: np.ndarray) -> float:
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def in_scale_rate(pitches: np.ndarray, tonic: int) -> float:
    """Share of notes whose pitch class is in the major scale on `tonic` (or its relative minor)."""
    if len(pitches) == 0:
        return float("nan")
    return float(np.isin((pitches - tonic) % 12, MAJOR_SCALE).mean())


def scale_shares(classes: np.ndarray) -> np.ndarray:
    """(12,) the share of the notes in the major scale on each tonic, from the notes' pitch-class counts."""
    return SCALES.astype(float) @ classes / classes.sum()


def groove_consistency(onsets: np.ndarray, length: int, bar_frames: int) -> float:
    """1 - mean Hamming distance between the onset patterns of neighbouring bars, over `bar_frames`
    (MusPy's groove_consistency on the frame grid); NaN for a piece shorter than two bars."""
    bars = length // bar_frames
    if bars < 2:
        return float("nan")
    pattern = np.zeros((bars, bar_frames), dtype=bool)
    onsets = onsets[onsets < bars * bar_frames]
    pattern[onsets // bar_frames, onsets % bar_frames] = True
    return float(1 - (pattern[1:] != pattern[:-1]).sum(1).mean() / bar_frames)


def pitch_class_transitions(pitches: np.ndarray) -> np.ndarray:
    """Yang & Lerch's pitch-class transition matrix: (12, 12) counts of pitch class i followed by j over the
    notes in onset order, divided by their sum (zeros for a piece of fewer than two notes)."""
    matrix = np.zeros((12, 12))
    if len(pitches) >= 2:
        np.add.at(matrix, (pitches[:-1] % 12, pitches[1:] % 12), 1)
        matrix /= matrix.sum()
    return matrix


FEATURES = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "polyphony",
    "polyphony_rate",
    "pitch_class_entropy",
    "pitch_entropy",
    "scale_consistency",
    "in_scale_rate",
    "empty_frame_rate",
    "note_density",
    "mean_note_length",
    "groove_consistency",
)
DESCRIPTIONS = {
    "pitch_range": "highest - lowest pitch, semitones",
    "n_pitches_used": "distinct pitches",
    "n_pitch_classes_used": "distinct pitch classes",
    "polyphony": "mean keys sounding in non-empty frames",
    "polyphony_rate": f"share of frames with more than {POLYPHONY_THRESHOLD} keys",
    "pitch_class_entropy": "entropy of the notes' pitch classes, bits",
    "pitch_entropy": "entropy of the notes' pitches, bits",
    "scale_consistency": "share of notes in the best-fitting major/minor scale",
    "in_scale_rate": "share of notes in the key estimated from the piece (Krumhansl-Schmuckler)",
    "empty_frame_rate": "share of frames with no key",
    "note_density": "note onsets per frame",
    "mean_note_length": "mean note length, frames",
    "groove_consistency": "1 - Hamming distance of neighbouring bars' onsets",
}


def roll_features(roll: np.ndarray, bar_frames: int) -> dict[str, float]:
    """Every feature of FEATURES for one roll; NaN where a piece has no notes to measure (an empty roll)."""
    roll = np.asarray(roll) != 0
    length = len(roll)
    pitches, onsets, lengths = notes(roll)
    sounding = roll.sum(1)
    nan = float("nan")
    if len(pitches) == 0:
        values = dict.fromkeys(FEATURES, nan)
        values["empty_frame_rate"] = 1.0 if length else nan
        values["note_density"] = 0.0 if length else nan
        return values
    used = np.unique(pitches)
    classes = np.bincount(pitches % 12, minlength=12).astype(float)
    shares = scale_shares(classes)
    durations = np.bincount(pitches % 12, weights=lengths, minlength=12)
    return {
        "pitch_range": float(used[-1] - used[0]),
        "n_pitches_used": float(len(used)),
        "n_pitch_classes_used": float(len(np.unique(used % 12))),
        "polyphony": float(sounding[sounding > 0].mean()),
        "polyphony_rate": float((sounding > POLYPHONY_THRESHOLD).mean()),
        "pitch_class_entropy": _entropy(classes),
        "pitch_entropy": _entropy(np.bincount(pitches, minlength=128)),
        "scale_consistency": float(shares.max()),
        "in_scale_rate": float(shares[estimate_major_tonic(durations)]),
        "empty_frame_rate": float((sounding == 0).mean()),
        "note_density": float(len(pitches) / length),
        "mean_note_length": float(lengths.mean()),
        "groove_consistency": groove_consistency(onsets, length, bar_frames),
    }


def set_features(rolls: list[np.ndarray], bar_frames: int) -> dict[str, np.ndarray]:
    """Each feature over a set of rolls: name -> (pieces,) values."""
    rows = [roll_features(roll, bar_frames) for roll in rolls]
    return {name: np.array([row[name] for row in rows], dtype=float) for name in FEATURES}


def mean_transitions(rolls: list[np.ndarray]) -> np.ndarray:
    """The set's mean pitch-class transition matrix (12, 12), over pieces with at least two notes."""
    matrices = [pitch_class_transitions(notes(np.asarray(r) != 0)[0]) for r in rolls]
    matrices = [m for m in matrices if m.sum() > 0]
    return np.mean(matrices, axis=0) if matrices else np.zeros((12, 12))


def bar_frames_of(frames_per_beat: int | None, fs: float | None) -> int:
    """Frames in a bar: four beats on the beat grid (the benchmarks' 4/4); on the time grid two seconds
    (a 4/4 bar at 120 beats a minute, the tempo sample.py writes)."""
    return int(frames_per_beat) * 4 if frames_per_beat else max(1, round(2 * float(fs)))


def key_frequencies(rolls: list[np.ndarray]) -> np.ndarray:
    """Per key, the share of frames in which it sounds, over a set of rolls: the floor's model."""
    stacked = np.concatenate([np.asarray(r) != 0 for r in rolls])
    return stacked.mean(0) if len(stacked) else np.zeros(rolls[0].shape[1] if rolls else 88)


def floor_rolls(frequencies: np.ndarray, lengths: list[int], seed: int) -> list[np.ndarray]:
    """Rolls whose keys are drawn independently frame by frame with `frequencies`: the floor anchor (what a
    model that knows only how often each key sounds would write)."""
    rng = np.random.default_rng(seed)
    return [(rng.random((n, len(frequencies))) < frequencies).astype(np.uint8) for n in lengths]
