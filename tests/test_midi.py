"""MIDI <-> roll on real files: grids, round trips, trimming, drums, transposition, PNG and WAV output."""

import numpy as np
import pretty_midi
import pytest
import scipy.io
import scipy.io.wavfile

from lm_music.errors import UserError
from lm_music.midi import (
    LOWEST_PITCH,
    NUM_KEYS,
    load_midi,
    midi_to_roll,
    roll_image,
    roll_to_midi,
    save_roll_png,
    seconds_to_frames,
)
from tests.conftest import data_path

WHITE_KEYS = [0, 2, 4, 5, 7, 9, 11]


@pytest.fixture(scope="module")
def jsb_roll() -> np.ndarray:
    """A real benchmark piece (the first JSB training chorale), with rests inside."""
    return scipy.io.loadmat(data_path("polyphonic/JSB_Chorales.mat"))["traindata"][0][0].astype(np.uint8)


def white_key_share(roll: np.ndarray) -> float:
    pitch_classes = (np.nonzero(roll)[1] + LOWEST_PITCH) % 12
    return float(np.isin(pitch_classes, WHITE_KEYS).mean())


@pytest.mark.parametrize(
    "grid",
    [
        {"frames_per_beat": 1},
        {"frames_per_beat": 2},
        {"frames_per_beat": 3},
        {"frames_per_beat": None, "fs": 10.0},
    ],
)
def test_round_trip_is_identity_up_to_trailing_silence(jsb_roll, grid, tmp_path):
    roll = np.concatenate([jsb_roll, np.zeros((5, NUM_KEYS), np.uint8)])  # trailing rest: trimmed
    pm = roll_to_midi(roll, **grid)
    in_memory, _ = midi_to_roll(pm, **grid)
    pm.write(str(tmp_path / "piece.mid"))
    from_file, _ = midi_to_roll(tmp_path / "piece.mid", **grid)
    np.testing.assert_array_equal(in_memory, jsb_roll)
    np.testing.assert_array_equal(from_file, jsb_roll)


def test_beat_grid_does_not_depend_on_tempo(jsb_roll):
    slow, _ = midi_to_roll(roll_to_midi(jsb_roll, tempo=70.0))
    fast, _ = midi_to_roll(roll_to_midi(jsb_roll, tempo=180.0))
    np.testing.assert_array_equal(slow, fast)


def test_beat_grid_follows_an_expressive_tempo_map():
    # piano-midi.de files change tempo hundreds of times; notes still sit on sixteenths of the beat grid.
    pm = load_midi(data_path("midi/piano_midi_de/valid/chpn-p13.mid"))
    assert len(pm.get_tempo_changes()[0]) > 100
    starts = np.array([note.start for inst in pm.instruments for note in inst.notes])
    positions = seconds_to_frames(pm, starts, frames_per_beat=4, fs=None)
    assert np.mean(np.abs(positions - np.round(positions)) < 0.01) > 0.95


def test_roll_ends_at_last_note_off_not_at_last_event():
    # DEB_PASS.MID has tempo events 200 s after its last note.
    pm = load_midi(data_path("midi/piano_midi_de/valid/DEB_PASS.MID"))
    last_note_off = max(note.end for inst in pm.instruments for note in inst.notes)
    assert pm.get_end_time() > last_note_off + 100
    roll, _ = midi_to_roll(pm, frames_per_beat=None, fs=10.0)
    assert len(roll) == round(last_note_off * 10)
    assert roll[-1].any()


def test_drums_and_notes_off_the_keyboard_are_dropped_and_counted():
    roll, stats = midi_to_roll(data_path("midi/odd_but_valid/pretty_midi/example.mid"))
    assert stats["dropped_drum_notes"] == 888 and stats["notes"] == 4068
    assert roll.dtype == np.uint8 and roll.shape[1] == NUM_KEYS

    # pitches 1-3
    roll, stats = midi_to_roll(data_path("midi/odd_but_valid/note_seq/example_event_order.mid"))
    assert roll.shape == (0, NUM_KEYS) and stats["dropped_out_of_range"] == 3
    assert midi_to_roll(pretty_midi.PrettyMIDI())[0].shape == (0, NUM_KEYS)


def test_note_shorter_than_a_frame_gets_one_frame():
    # 0.023 s notes at time 0 (a quarter of a 0.25 s frame)
    roll, _ = midi_to_roll(data_path("midi/odd_but_valid/note_seq/example_is_drum.mid"))
    assert roll.shape == (1, NUM_KEYS) and roll.sum() == 38


@pytest.mark.parametrize(
    "file",
    [
        "midi/nottingham_jukedeck/train/ashover2.mid",  # D major key signature
        "midi/piano_midi_de/valid/chpn-p13.mid",  # F# major key signature
        "midi/odd_but_valid/pretty_midi/example.mid",  # no key signature: the key is estimated from the notes
    ],
)
def test_transpose_to_c_puts_notes_on_white_keys(file):
    plain, _ = midi_to_roll(data_path(file))
    moved, stats = midi_to_roll(data_path(file), transpose_to_c=True)
    assert stats["transposed_by"] != 0
    assert white_key_share(plain) < 0.8 < white_key_share(moved)
    assert moved.sum() == plain.sum()


def test_exactly_one_grid():
    with pytest.raises(UserError, match="exactly one"):
        midi_to_roll(pretty_midi.PrettyMIDI(), frames_per_beat=2, fs=100.0)
    with pytest.raises(UserError, match="exactly one"):
        roll_to_midi(np.zeros((3, NUM_KEYS), np.uint8), frames_per_beat=None, fs=None)


def test_png_is_written(jsb_roll, tmp_path):
    save_roll_png(jsb_roll, tmp_path / "roll.png", title="JSB train 0")
    save_roll_png(np.zeros((0, NUM_KEYS), np.uint8), tmp_path / "empty.png")
    for name in ("roll.png", "empty.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "roll.png"]  # no temporary files left


def test_roll_image_for_trackers(jsb_roll):
    image = roll_image(jsb_roll)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.min() < 50 and image.max() > 200  # black notes on white
