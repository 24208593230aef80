"""Features of event-token pieces, one value per piece: the roll features of `evaluation.roll_features` on a 16th-note grid, and
what a roll cannot show: the spread of velocities, the share of onsets off the 16th-note grid, and MidiTok's
token-grammar error rate. A piece is its token ids; it is decoded with the model's codec (ungrammatical
tokens dropped, as sample.py decodes) before its notes are measured.
"""

import numpy as np

from lm_music.evaluation import roll_features as rolls
from lm_music.tasks.events.codec import EventCodec, velocity_roll

FRAMES_PER_BEAT = 4  # the roll grid of the music features: 16th notes
BAR_FRAMES = rolls.bar_frames_of(FRAMES_PER_BEAT, None)
EXPRESSIVE = ("velocity_spread", "off_grid_onsets", "grammar_errors")
FEATURES = (*rolls.FEATURES, *EXPRESSIVE)
DESCRIPTIONS = {
    **{name: f"{text} (16th-note frames)" for name, text in rolls.DESCRIPTIONS.items()},
    "velocity_spread": "standard deviation of the notes' velocities",
    "off_grid_onsets": "share of onsets off the 16th-note grid",
    "grammar_errors": "MidiTok's token-grammar error rate (errors per token)",
}


def piece_features(codec: EventCodec, ids: np.ndarray) -> dict[str, float]:
    """Every feature of FEATURES for one piece of ids."""
    score, _ = codec.decode(ids)
    roll = (velocity_roll(score, FRAMES_PER_BEAT) > 0).astype(np.uint8)
    values = rolls.roll_features(roll, BAR_FRAMES)
    notes = [track.notes.numpy() for track in score.tracks if not track.is_drum and track.note_num()]
    velocities = np.concatenate([n["velocity"] for n in notes]) if notes else np.zeros(0)
    onsets = np.concatenate([n["time"] for n in notes]) if notes else np.zeros(0)
    sixteenth = score.ticks_per_quarter / FRAMES_PER_BEAT
    nan = float("nan")
    values["velocity_spread"] = float(velocities.std()) if len(velocities) >= 2 else nan
    values["off_grid_onsets"] = float((onsets % sixteenth != 0).mean()) if len(onsets) else nan
    values["grammar_errors"] = codec.error_rate(ids)
    return values


def note_symbols(codec: EventCodec, ids: np.ndarray) -> np.ndarray:
    """A piece's notes as `rolls.note_symbols`, onsets on the 16th-note grid."""
    score, _ = codec.decode(ids)
    notes = [track.notes.numpy() for track in score.tracks if not track.is_drum and track.note_num()]
    if not notes:
        return np.zeros(0, np.int64)
    pitches = np.concatenate([n["pitch"] for n in notes])
    onsets = np.round(np.concatenate([n["time"] for n in notes]) * FRAMES_PER_BEAT / score.ticks_per_quarter)
    order = np.lexsort((pitches, onsets))
    return rolls.note_symbols(pitches[order], onsets[order].astype(np.int64))


def set_features(codec: EventCodec, pieces: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each feature over a set of pieces: name -> (pieces,) values."""
    rows = [piece_features(codec, ids) for ids in pieces]
    return {name: np.array([row[name] for row in rows], dtype=float) for name in FEATURES}


def floor_pieces(training: list[np.ndarray], lengths: list[int], seed: int) -> list[np.ndarray]:
    """Ids drawn independently with the training pieces' token unigram frequencies: the floor anchor."""
    tokens, counts = np.unique(np.concatenate(training), return_counts=True)
    rng = np.random.default_rng(seed)
    return [rng.choice(tokens, size=n, p=counts / counts.sum()).astype(np.int32) for n in lengths]
