"""The audio renderer (lm_music/audio.py): a SoundFont piano by default, told apart from sine waves by its
spectrum and envelope; velocity, the sustain pedal and a late first note heard as they should be; bad
SoundFonts refused in one line."""

import numpy as np
import pretty_midi
import pytest
import scipy.io.wavfile
import symusic

from lm_music.audio import AudioRenderer, held_through_pedals, write_wav
from lm_music.errors import UserError
from lm_music.midi import roll_to_midi

RATE = 22050
MIDDLE_C = 261.63


def piece(*notes: tuple[int, float, float, int]) -> pretty_midi.PrettyMIDI:
    """A piano part of (pitch, start, end, velocity) notes."""
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(velocity, pitch, start, end) for pitch, start, end, velocity in notes]
    pm.instruments.append(piano)
    return pm


def harmonic_energy(audio: np.ndarray, f0: float) -> np.ndarray:
    """Spectral energy within 3 % of f0, 2 f0, 3 f0, relative to the fundamental's."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    energy = np.array([spectrum[np.abs(freqs - k * f0) < 0.03 * k * f0].sum() for k in (1, 2, 3)])
    return energy / energy[0]


def sounds_like_an_instrument(audio: np.ndarray, f0: float) -> bool:
    """Overtones (2nd and 3rd harmonics at least 1 % of the fundamental's energy) and a decaying envelope
    (the held note's last tenth of a second under half the loudness of its first): a sine wave has neither."""
    held = audio[int(0.05 * RATE) : int(1.0 * RATE)]
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    decays = rms(held[-int(0.1 * RATE) :]) < 0.5 * rms(held[: int(0.1 * RATE)])
    return bool((harmonic_energy(held, f0)[1:] > 0.01).all() and decays)


def test_the_default_renderer_is_a_soundfont_piano_not_sine_waves():
    default = AudioRenderer.from_options(True)
    assert default.renderer == "soundfont" and "TimGM6mb.sf2" in default.description
    middle_c = piece((60, 0.0, 1.5, 100))
    assert sounds_like_an_instrument(default.render(middle_c), MIDDLE_C)
    assert not sounds_like_an_instrument(
        AudioRenderer("sine").render(middle_c), MIDDLE_C
    )  # the check can fail


@pytest.mark.parametrize("key", [33, 48, 55, 60, 65, 72, 84, 96])
def test_each_key_sounds_its_own_pitch(key):
    """Every partial of the strongest five is a whole multiple of the key's frequency (symusic's synthesizer
    fails this: it plays G3 as A4 and C4 as G#5 with this SoundFont)."""
    f0 = 440 * 2 ** ((key - 69) / 12)
    audio = AudioRenderer().render(piece((key, 0.0, 1.0, 100)))[:RATE]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peaks = np.fft.rfftfreq(len(audio), 1 / RATE)[np.argsort(spectrum)[::-1][:5]]
    harmonic = peaks / f0
    assert (np.abs(harmonic - np.round(harmonic)) < 0.03 * np.maximum(np.round(harmonic), 1)).all(), peaks
    assert (np.round(harmonic) >= 1).all()


def test_a_chord_sounds_each_of_its_notes():
    audio = AudioRenderer().render(piece((60, 0, 1, 90), (64, 0, 1, 90), (67, 0, 1, 90)))
    spectrum = np.abs(np.fft.rfft(audio[: RATE // 2])) ** 2
    freqs = np.fft.rfftfreq(RATE // 2, 1 / RATE)
    band = lambda f: spectrum[np.abs(freqs - f) < 4].sum()  # noqa: E731
    between = band(295.0)  # between C4 and E4: no note there
    for f in (261.63, 329.63, 392.00):
        assert band(f) > 20 * between


def test_velocity_is_heard_and_audio_starts_at_the_first_note():
    audio = AudioRenderer().render(piece((60, 5.0, 5.5, 30), (60, 6.0, 6.5, 110)))
    assert np.abs(audio[: int(0.05 * RATE)]).max() > 0.01  # 5 s of rest before the first note: not heard
    soft, loud = np.abs(audio[: int(0.5 * RATE)]).max(), np.abs(audio[RATE : int(1.5 * RATE)]).max()
    assert loud > 4 * soft  # (110 / 30) ** 2 = 13 in General MIDI's loudness


def test_the_sustain_pedal_holds_notes_until_it_lifts():
    starts, ends, pitches = np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5, 2.2]), np.array([60, 60, 64])
    pedals = {"time": np.array([0.2]), "duration": np.array([1.8])}  # down 0.2 .. 2.0
    held = held_through_pedals(starts, ends, pitches, pedals)
    # C released at 0.5 under the pedal: held until C is struck again at 1.0; the second C until the pedal
    # lifts at 2.0; E released after the lift: as played
    np.testing.assert_allclose(held, [1.0, 2.0, 2.2])

    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    track.notes.append(symusic.Note(0, 240, 60, 100))  # an eighth note at 120 bpm: 0.25 s
    score.tracks.append(track)
    dry = AudioRenderer().render(score)
    track.pedals.append(symusic.Pedal(0, 1920))  # held for 2 s
    assert len(AudioRenderer().render(score)) > len(dry) + RATE


def test_a_roll_renders_to_a_readable_wav(tmp_path):
    roll = np.zeros((8, 88), dtype=np.uint8)
    roll[:, 39] = roll[4:, 43] = 1
    audio = AudioRenderer(sample_rate=8000).render(roll_to_midi(roll, frames_per_beat=1))
    assert audio.dtype == np.float32 and 0.99 < np.abs(audio).max() <= 1.0
    assert len(audio) >= 8000 * 4  # 8 quarter notes at 120 BPM
    write_wav(tmp_path / "piece.wav", audio, 8000)
    rate, pcm = scipy.io.wavfile.read(tmp_path / "piece.wav")
    assert rate == 8000 and pcm.dtype == np.int16 and len(pcm) == len(audio)
    assert AudioRenderer().render(pretty_midi.PrettyMIDI()).size == 0  # no notes, no sound


def test_bad_audio_options_are_one_line_each(tmp_path):
    (tmp_path / "notes.sf2").write_text("not a soundfont")
    cases = {
        "no such file": {"soundfont": str(tmp_path / "missing.sf2")},
        "not a readable SoundFont": {"soundfont": str(tmp_path / "notes.sf2")},
        "is not one of soundfont, fluidsynth, sine": {"renderer": "mp3"},
        "unknown audio option": {"soundfount": "x.sf2"},
    }
    for message, options in cases.items():
        with pytest.raises(UserError, match=message) as error:
            AudioRenderer.from_options(options)
        assert "\n" not in str(error.value)
    assert AudioRenderer.from_options(False) is None


def test_fluidsynth_is_used_only_where_installed():
    try:
        import fluidsynth

        fluidsynth.Synth  # noqa: B018
    except (ImportError, OSError, AttributeError):
        with pytest.raises(UserError, match="needs pyfluidsynth and the libfluidsynth library"):
            AudioRenderer.from_options({"renderer": "fluidsynth"})
    else:
        renderer = AudioRenderer.from_options({"renderer": "fluidsynth"})
        assert sounds_like_an_instrument(renderer.render(piece((60, 0.0, 1.5, 100))), MIDDLE_C)
