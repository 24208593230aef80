"""Judging samples (lm_music.evaluation, python -m lm_music.evaluate): every feature on hand-made rolls and
texts whose values are known, the comparison's extremes, the anchors on JSB, memorisation on the real lyrics
file, the command on trained and shipped models and on folders, and bad input as one line each."""

import json
import logging
import math

import numpy as np
import pytest

from lm_music.errors import UserError
from lm_music.evaluate import main
from lm_music.evaluation import copying
from lm_music.evaluation import roll_features as music
from lm_music.evaluation.compare import check_reference, compare, compare_sets, mean_oa
from lm_music.midi import LOWEST_PITCH, estimate_major_tonic
from lm_music.tasks.lyrics import features as lyrics
from lm_music.tasks.lyrics.evaluation import LyricsEvaluation, parse_samples_txt
from lm_music.tasks.lyrics.sampler import TextSamples
from lm_music.tasks.pianoroll.datamodule import read_benchmark
from tests.conftest import LYRICS_CSV, data_path, run_script

JSB = data_path("polyphonic/JSB_Chorales.mat")


def roll_of(length: int, notes: list[tuple[int, int, int]]) -> np.ndarray:
    """A roll with each (MIDI pitch, first frame, frames) held."""
    roll = np.zeros((length, 88), dtype=np.uint8)
    for pitch, start, frames in notes:
        roll[start : start + frames, pitch - LOWEST_PITCH] = 1
    return roll


# A C major triad for four frames, two empty frames, D4 for two: values worked out by hand below.
TRIAD_THEN_D = roll_of(8, [(60, 0, 4), (64, 0, 4), (67, 0, 4), (62, 6, 2)])


def test_notes_of_a_roll_are_runs_of_frames_in_onset_order():
    pitches, onsets, lengths = music.notes(TRIAD_THEN_D)
    assert pitches.tolist() == [60, 64, 67, 62]
    assert onsets.tolist() == [0, 0, 0, 6]
    assert lengths.tolist() == [4, 4, 4, 2]
    # a key struck again right after it ends is two notes
    pitches, onsets, lengths = music.notes(roll_of(6, [(60, 0, 2), (60, 3, 3)]))
    assert (pitches.tolist(), onsets.tolist(), lengths.tolist()) == ([60, 60], [0, 3], [2, 3])


def test_every_music_feature_on_a_hand_made_roll():
    values = music.roll_features(TRIAD_THEN_D, bar_frames=4)
    expected = {
        "pitch_range": 7,  # G4 - C4
        "n_pitches_used": 4,
        "n_pitch_classes_used": 4,
        "polyphony": 14 / 6,  # 3 keys in 4 frames, 1 in 2; the 2 empty frames left out
        "polyphony_rate": 4 / 8,  # frames with more than 2 keys
        "pitch_class_entropy": 2.0,  # 4 notes, 4 pitch classes: log2(4)
        "pitch_entropy": 2.0,
        "scale_consistency": 1.0,  # all in C major
        "in_scale_rate": 1.0,
        "empty_frame_rate": 2 / 8,
        "note_density": 4 / 8,
        "mean_note_length": 14 / 4,
        "groove_consistency": 0.5,  # bar 1 onsets at position 0, bar 2 at position 2: 2 of 4 differ
    }
    assert set(values) == set(music.FEATURES) == set(expected)
    for name, value in expected.items():
        assert values[name] == pytest.approx(value), name


def test_scale_features_on_a_chromatic_run_and_a_key():
    chromatic = roll_of(12, [(60 + i, i, 1) for i in range(12)])
    values = music.roll_features(chromatic, bar_frames=4)
    assert values["scale_consistency"] == pytest.approx(7 / 12)  # the best major scale holds 7 of 12
    assert values["pitch_class_entropy"] == pytest.approx(math.log2(12))
    assert values["polyphony"] == 1 and values["polyphony_rate"] == 0
    # G major's notes, one out-of-key F natural: in-scale for the estimated key (G) is 7 of 8
    g_major = [67, 69, 71, 72, 74, 76, 78, 79]
    roll = roll_of(9, [(p, i, 1) for i, p in enumerate(g_major[:-1])] + [(65, 7, 1), (79, 8, 1)])
    assert music.roll_features(roll, 4)["in_scale_rate"] == pytest.approx(8 / 9)


def test_features_agree_with_muspy_where_it_is_installed():
    """MusPy is not a dependency (README, "Evaluate samples"): where it is installed, its functions give the
    same values on JSB pieces and random rolls (resolution 1: one frame a beat, as JSB). Groove consistency
    and empty frames are left out on purpose: MusPy counts bars and beats up to the last note-off plus one
    (an extra, empty bar when a piece ends on a bar line); here they are the roll's complete bars, its frames."""
    muspy = pytest.importorskip("muspy")
    from lm_music.tasks.pianoroll.datamodule import read_benchmark

    rng = np.random.default_rng(0)
    rolls = read_benchmark(JSB)["test"][:20] + [
        (rng.random((64, 88)) < 0.04).astype(np.uint8) for _ in range(5)
    ]
    same = {
        "pitch_range": muspy.pitch_range,
        "n_pitches_used": muspy.n_pitches_used,
        "n_pitch_classes_used": muspy.n_pitch_classes_used,
        "polyphony": muspy.polyphony,
        "polyphony_rate": muspy.polyphony_rate,  # threshold 2 in both
        "pitch_entropy": muspy.pitch_entropy,
        "pitch_class_entropy": muspy.pitch_class_entropy,
        "scale_consistency": muspy.scale_consistency,
    }
    for roll in rolls:
        wide = np.zeros((len(roll), 128), dtype=bool)
        wide[:, LOWEST_PITCH : LOWEST_PITCH + 88] = roll != 0
        piece = muspy.from_pianoroll_representation(wide, resolution=1, encode_velocity=False)
        ours = music.roll_features(roll, bar_frames=4)
        for name, metric in same.items():
            assert ours[name] == pytest.approx(metric(piece), abs=1e-9), name


def test_key_estimate_is_krumhansl_schmuckler_over_the_24_keys():
    """The one key estimator against the textbook loop: correlate the duration-weighted pitch-class
    histogram with each of the 24 rotated profiles, keep the best (a minor key as its relative major)."""
    from lm_music.midi import MAJOR_PROFILE, MINOR_PROFILE

    def textbook(histogram):
        best, tonic_of_best = -np.inf, 0
        for tonic in range(12):
            rotated = np.roll(histogram, -tonic)
            for profile, major in ((MAJOR_PROFILE, tonic), (MINOR_PROFILE, (tonic + 3) % 12)):
                score = np.corrcoef(rotated, profile)[0, 1]
                if score > best:
                    best, tonic_of_best = score, major
        return tonic_of_best

    rng = np.random.default_rng(0)
    for _ in range(50):
        pitches = rng.integers(40, 90, size=int(rng.integers(3, 40)))
        durations = rng.integers(1, 5, size=len(pitches)).astype(float)
        histogram = np.bincount(pitches % 12, weights=durations, minlength=12)
        assert estimate_major_tonic(histogram) == textbook(histogram)
    d_major = np.bincount([2, 4, 6, 7, 9, 11, 1, 2, 9, 6], minlength=12)  # the D major scale, D A F# again
    assert estimate_major_tonic(d_major) == 2
    assert estimate_major_tonic(np.zeros(12)) == 0 and estimate_major_tonic(np.ones(12)) == 0


def test_groove_and_empty_pieces():
    same_bars = roll_of(12, [(60, 0, 1), (64, 2, 1), (60, 4, 1), (64, 6, 1), (60, 8, 1), (64, 10, 1)])
    assert music.roll_features(same_bars, 4)["groove_consistency"] == 1.0
    assert math.isnan(music.roll_features(same_bars[:6], 4)["groove_consistency"])  # under two bars
    empty = music.roll_features(np.zeros((16, 88), np.uint8), 4)
    assert empty["empty_frame_rate"] == 1.0 and empty["note_density"] == 0.0
    assert math.isnan(empty["polyphony"]) and math.isnan(empty["pitch_range"])
    assert music.bar_frames_of(1, None) == 4 and music.bar_frames_of(2, None) == 8
    assert music.bar_frames_of(None, 3.0) == 6


def test_pitch_class_transition_matrix():
    matrix = music.pitch_class_transitions(music.notes(TRIAD_THEN_D)[0])  # C E G D
    expected = np.zeros((12, 12))
    expected[0, 4] = expected[4, 7] = expected[7, 2] = 1 / 3
    np.testing.assert_allclose(matrix, expected)
    assert music.pitch_class_transitions(np.array([60])).sum() == 0


def test_floor_rolls_follow_the_key_frequencies():
    frequencies = np.zeros(88)
    frequencies[39] = 0.5  # C4 half the time, nothing else
    rolls = music.floor_rolls(frequencies, [4000, 10], seed=0)
    assert [len(r) for r in rolls] == [4000, 10]
    assert rolls[0][:, 39].mean() == pytest.approx(0.5, abs=0.03)
    assert rolls[0].sum() == rolls[0][:, 39].sum()


def test_overlapping_area_of_a_set_with_itself_is_one_and_with_a_disjoint_set_near_zero():
    rng = np.random.default_rng(0)
    values = rng.normal(size=200)
    same = compare(values, values)
    assert same["oa"] == pytest.approx(1.0, abs=1e-6) and same["kl"] == pytest.approx(0.0, abs=1e-6)
    apart = compare(values, values + 100)
    assert apart["oa"] < 0.01 and apart["kl"] > 10
    half = compare(rng.normal(size=2000), rng.normal(1.0, size=2000))
    assert 0.55 < half["oa"] < 0.7  # two unit Gaussians a standard deviation apart overlap by 0.617
    # sets with no spread: equal constants overlap fully, different ones not at all, NaNs are left out
    assert compare(np.zeros(10), np.zeros(5))["oa"] == pytest.approx(1.0, abs=1e-3)
    assert compare(np.zeros(10), np.ones(5))["oa"] < 0.01
    assert compare(np.ones(10), np.r_[np.ones(30), 0.9])["oa"] > 0.5  # always 1 against mostly 1
    partial = compare(np.r_[values, np.nan], values)
    assert partial["n_samples"] == 200 and partial["oa"] == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(compare(values[:1], values)["oa"])
    assert mean_oa(compare_sets({"a": values, "b": values}, {"a": values, "b": values + 100})) == (
        pytest.approx(0.5, abs=0.01)
    )


def test_the_density_is_scipys_gaussian_kde():
    from scipy.stats import gaussian_kde

    from lm_music.evaluation.compare import kde_density

    values, grid = np.random.default_rng(0).gamma(2.0, size=77), np.linspace(-1, 12, 200)
    np.testing.assert_allclose(
        kde_density(values, 1.0)(grid), gaussian_kde(values)(grid), rtol=1e-10, atol=1e-14
    )


def test_a_reference_of_one_piece_is_refused_in_one_line():
    with pytest.raises(UserError, match="cannot be estimated from fewer than two"):
        check_reference(1, "reference_dir x")


def test_every_lyrics_feature_on_hand_made_texts():
    text = "I see the night\nyou hold me tight\n\nwe walk along\nand sing a song\nI see the night\n"
    values = lyrics.text_features(text, vocabulary={"i", "see", "the", "night", "you", "hold", "me"})
    assert values["distinct_1"] == pytest.approx(15 / 19)  # 19 words, 15 different
    assert values["distinct_3"] == pytest.approx(15 / 17)  # "i see the", "see the night" come twice
    assert values["repeated_lines"] == pytest.approx(1 / 5)  # the last line repeats the first
    assert values["words_per_line"] == pytest.approx(19 / 5)
    # tight~night, song~along rhyme; "night" (line 5) with "song"/"along" does not
    assert values["rhyme_rate"] == pytest.approx(2 / 4)
    assert values["new_words"] == pytest.approx(8 / 19)  # tight we walk along and sing a song
    la = lyrics.text_features("la la la", vocabulary={"la"})
    assert (la["distinct_1"], la["distinct_2"], la["distinct_3"]) == pytest.approx((1 / 3, 1 / 2, 1.0))
    assert la["new_words"] == 0 and math.isnan(la["rhyme_rate"])


def test_rhyme_rule():
    assert [lyrics.rhyme_part(w) for w in ("night", "light", "love", "above", "me", "song")] == [
        "ight",
        "ight",
        "ov",
        "ov",
        "e",
        "ong",
    ]
    assert lyrics.rhymes("love", "above") and not lyrics.rhymes("love", "love")
    assert not lyrics.rhymes("night", "song")


def test_rhymes_are_heard_by_pronunciation_and_spelled_only_for_unknown_words():
    # CMUdict: sea and me rhyme though spelled apart, love and move are spelled alike and do not
    assert lyrics.rhymes("sea", "me") and lyrics.rhymes("heart", "apart") and lyrics.rhymes("through", "blue")
    assert not lyrics.rhymes("love", "move") and not lyrics.rhymes("bough", "cough")
    assert lyrics.rhyme_part("love") == lyrics.rhyme_part("move")  # what the suffix rule alone would say
    # a word CMUdict lacks falls back to the suffix rule for the pair
    assert lyrics.sounded_rhymes("glorth") == frozenset() and lyrics.sounded_rhymes("night")
    assert lyrics.rhymes("glorth", "forth") and not lyrics.rhymes("glorth", "night")


def brute_matching_statistics(training: list[str], text: str) -> list[int]:
    out = []
    for p in range(len(text)):
        length = 0
        while p + length < len(text) and any(text[p : p + length + 1] in song for song in training):
            length += 1
        out.append(length)
    return out


def test_matching_statistics_are_exact():
    rng = np.random.default_rng(1)
    for _ in range(100):
        training = ["".join(rng.choice(list("ab\n"), size=int(rng.integers(0, 60)))) for _ in range(3)]
        texts = ["".join(rng.choice(list("abd"), size=int(rng.integers(1, 40)))) for _ in range(2)]
        got = [m.tolist() for m in copying.matching_statistics(training, texts)]
        assert got == [brute_matching_statistics(training, t) for t in texts], (training, texts)
        # the same sequences as symbols (ints, as notes are): the same statistics
        symbols = [
            m.tolist()
            for m in copying.matching_statistics([codes(s) for s in training], [codes(s) for s in texts])
        ]
        assert symbols == got
    # a span never runs from one training song into the next
    assert copying.matching_statistics(["abc", "def"], ["cdef"])[0].tolist() == [1, 3, 2, 1]


def codes(text: str) -> np.ndarray:
    return np.array([1000 + ord(c) for c in text], dtype=np.int64)  # symbols past the characters' range


def test_a_run_of_notes_copied_from_a_training_piece_is_found():
    """A sample that quotes 30 frames of a JSB training chorale inside random chords: the run of notes it
    shares with that chorale is found (its first note's interval differs, the rest match); the random chords
    alone share a few notes at most."""
    splits = read_benchmark(JSB)
    training = splits["train"]
    noise = music.floor_rolls(music.key_frequencies(training), [60, 60], seed=0)
    quoted = training[5][10:40]
    sample = np.concatenate([noise[0][:30], quoted, noise[0][30:]])
    table = copying.memorisation_table(
        [music.roll_note_symbols(r) for r in training],
        {"quoting": [music.roll_note_symbols(sample)], "noise": [music.roll_note_symbols(noise[1])]},
        music.NOTE_WINDOW,
    )
    notes_quoted = len(music.notes(quoted)[0])
    assert notes_quoted > 40
    assert table["quoting"]["longest_copy_max"] >= notes_quoted - 4  # the notes held over the cut differ
    assert table["quoting"]["copied_windows"] > 0.1  # the windows inside the quote, of the whole sample
    assert table["noise"]["longest_copy_max"] < 8 and table["noise"]["copied_windows"] == 0


@pytest.fixture(scope="module")
def songs() -> list[str]:
    from lm_music.tasks.lyrics.datamodule import read_lyrics_csv

    return read_lyrics_csv(LYRICS_CSV)["text"].tolist()


def test_a_passage_copied_from_the_training_file_is_found(songs):
    source = next(s for s in songs if len(s) > 400)
    chars, frequencies = lyrics.char_frequencies(songs)
    noise = lyrics.floor_texts(chars, frequencies, [1000, 1000], seed=0)
    copied = noise[0][:300] + source[50:350] + noise[0][300:700]
    values = lyrics.set_features([copied, noise[1]], songs)
    assert values["longest_copy"][0] >= 300
    assert values["copied_windows"][0] == pytest.approx(251 / 951, abs=0.01)  # the windows inside the copy
    assert values["longest_copy"][1] < 20 and values["copied_windows"][1] == 0


def test_samples_txt_reads_back_as_written(tmp_path):
    written = TextSamples(["Why, oh why\n\nme\n", "second\nsong"], ["ABBA", "Adele"])
    texts, artists = parse_samples_txt(str(written))
    assert texts == written.texts and artists == written.artists
    assert parse_samples_txt(str(TextSamples(["one"]))) == (["one"], None)
    (tmp_path / "samples.txt").write_text("nothing here\n")
    with pytest.raises(UserError, match="holds no samples"):
        LyricsEvaluation(None).read_folder(tmp_path)
    with pytest.raises(UserError, match="no samples.txt"):
        LyricsEvaluation(None).read_folder(tmp_path / "missing")


def test_on_jsb_the_validation_split_beats_the_floor():
    from lm_music.tasks.pianoroll.datamodule import read_benchmark

    splits = read_benchmark(JSB)
    floor = music.floor_rolls(music.key_frequencies(splits["train"]), [256] * 64, seed=0)
    test, valid, drawn = (music.set_features(s, 4) for s in (splits["test"], splits["valid"], floor))
    ceiling, bottom = mean_oa(compare_sets(valid, test)), mean_oa(compare_sets(drawn, test))
    assert ceiling > 0.8 and bottom < 0.4 and ceiling > bottom + 0.4


def test_roll_samples_are_judged_at_the_real_pieces_lengths():
    """Pitch range and pitches used grow with length: 256-frame samples against ~60-frame chorales would be
    judged on their length. Sample i is cut to real piece i's length (cycled), the real pieces (and the
    ceiling's) to the longest sample, and the floor is drawn at the cut lengths."""
    from omegaconf import OmegaConf

    from lm_music.generation import load_model

    model = load_model("pretrained:jsb_chorales", "cpu")
    kind = model.task.evaluation(model)
    args = OmegaConf.create({"data": {"path": str(JSB)}, "reference": "test", "seed": 0})
    loaded = kind.load_reference(args)
    test = loaded["splits"]["test"]
    rng = np.random.default_rng(0)
    samples = [(rng.random((length, 88)) < 0.05).astype(np.uint8) for length in [256] * 80 + [20]]
    sets = kind.sets(samples, loaded, args)
    cut = [min(len(roll), len(test[i % len(test)])) for i, roll in enumerate(samples)]
    assert [len(roll) for roll in sets.samples] == cut and cut[-1] == 20 and max(cut) == max(map(len, test))
    assert all((a == b[: len(a)]).all() for a, b in zip(sets.samples, samples))
    assert [len(roll) for roll in sets.floor] == cut
    short = kind.sets([roll[:32] for roll in samples], loaded, args)
    assert max(len(roll) for roll in short.reference + short.ceiling) == 32


# --- the command


def error_of(args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    message = str(exit_.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def midi_folder(root, names: list[str]):
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).symlink_to(data_path("midi/nottingham_jukedeck/test") / name)
    return root


def test_bad_input_is_one_line_each(tmp_path, caplog):
    four = midi_folder(tmp_path / "four", ["ashover12.mid", "ashover15.mid", "hpps45.mid", "hpps52.mid"])
    base = ["pretrained=bach_chorales", "num_samples=2", "length=8", f"out_dir={tmp_path / 'out'}"]
    assert "unknown: colour" in error_of([*base, "colour=red"])
    (tmp_path / "empty").mkdir()
    assert "found 0 .mid/.midi files" in error_of(
        [*base, f"reference_dir={four}", f"samples_dir={tmp_path / 'empty'}"]
    )
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    for file in (data_path("midi/unreadable")).iterdir():
        (unreadable / file.name).symlink_to(file)
    with caplog.at_level(logging.WARNING, logger="lm_music"):
        message = error_of([*base, f"reference_dir={four}", f"samples_dir={unreadable}"])
    assert "no readable MIDI file" in message
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for file in (data_path("midi/unreadable")).iterdir():
        assert sum(file.name in w for w in warnings) == 1, file.name
    one = midi_folder(tmp_path / "one", ["jigs1.mid"])
    assert "cannot be estimated from fewer than two" in error_of([*base, f"reference_dir={one}"])
    assert "carries no data settings" in error_of(["pretrained=jsb_chorales", *base[1:]])
    assert "is not there" in error_of([*base, f"data.path={tmp_path / 'gone.mat'}"])
    assert "reference must be one of" in error_of([*base, f"reference_dir={four}", "reference=dev"])
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.slow
def test_command_on_a_short_trained_jsb_model(jsb_run, tmp_path):
    out = tmp_path / "eval"
    args = [f"ckpt_path={jsb_run / 'checkpoints' / 'last.ckpt'}", f"data.path={JSB}", "num_samples=16"]
    main([*args, "length=128", "threads=1", f"out_dir={out}"])
    result = json.loads((out / "evaluation.json").read_text())
    assert (out / "evaluation.png").stat().st_size > 10_000
    mean = result["summary"]["mean_oa"]
    assert mean["ceiling"] > mean["floor"] and 0 <= mean["model"] <= 1
    assert set(result["features"]) == {"samples", "reference", "ceiling", "floor"}
    assert len(result["features"]["samples"]["pitch_range"]) == 16
    assert len(result["features"]["reference"]["pitch_range"]) == 77
    assert set(result["comparisons"]["model"]) == set(music.FEATURES)
    assert result["pitch_class_transitions"]["reference"]["l1_to_reference"] == 0
    copied = result["memorisation"]["sets"]
    assert (
        set(copied) == {"samples", "reference", "ceiling", "floor"} and result["memorisation"]["window"] == 16
    )
    assert (
        copied["reference"]["longest_copy_max"] > copied["floor"]["longest_copy_max"]
    )  # JSB repeats chorales


@pytest.mark.slow
def test_command_on_the_shipped_bach_model_and_on_a_folder(tmp_path):
    names = sorted(p.name for p in (data_path("midi/nottingham_jukedeck/test")).glob("*.mid"))[:12]
    reference = midi_folder(tmp_path / "reference", names)
    out = tmp_path / "drawn"
    args = ["-m", "lm_music.evaluate", "pretrained=bach_chorales", f"reference_dir={reference}", "threads=1"]
    done = run_script(*args, "num_samples=8", "length=64", f"out_dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mean OA over features" in done.stdout
    assert (out / "evaluation.png").is_file()
    assert json.loads((out / "evaluation.json").read_text())["summary"]["mean_oa"]["ceiling"] is not None
    folder_out = tmp_path / "folder"
    done = run_script(*args, f"samples_dir={reference}", f"out_dir={folder_out}")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((folder_out / "evaluation.json").read_text())
    assert (
        len(result["features"]["samples"]["pitch_range"]) == 12 and (folder_out / "evaluation.png").is_file()
    )


@pytest.mark.slow
def test_command_on_a_conditional_lyrics_model(lyrics_run, tmp_path):
    out = tmp_path / "eval"
    ckpt = lyrics_run / "checkpoints" / "last.ckpt"
    main([f"ckpt_path={ckpt}", f"data.path={LYRICS_CSV}", "num_samples=4", "length=200", f"out_dir={out}"])
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result["comparisons"]["model"]) == set(lyrics.FEATURES)
    assert len(result["artists"]["picked"]) == 4 and 0 <= result["artists"]["match_rate"] <= 1
    known = result["reference_artists"]  # the test songs, each scored under every artist
    assert known["songs"] == len(result["features"]["reference"]["distinct_1"])
    assert known["chance_top1"] == 1 / known["artists"] and 0 <= known["top1"] <= known["top3"] <= 1
    assert (out / "evaluation.png").is_file()


@pytest.mark.slow
def test_on_songdata_the_validation_songs_beat_the_floor(songs):
    from lm_music.tasks.lyrics.datamodule import split_indices

    split = split_indices(len(songs), 0.05, 0.05, seed=0)
    train, valid, test = ([songs[i] for i in split[name]] for name in ("train", "valid", "test"))
    chars, frequencies = lyrics.char_frequencies(train)
    floor = lyrics.floor_texts(chars, frequencies, [1000] * 64, seed=0)
    test_f, valid_f, floor_f = (
        lyrics.set_features([t[:1000] for t in s], train) for s in (test, valid, floor)
    )
    ceiling, bottom = mean_oa(compare_sets(valid_f, test_f)), mean_oa(compare_sets(floor_f, test_f))
    assert ceiling > 0.75 and bottom < 0.45
    assert np.nanmean(floor_f["repeated_lines"]) < 0.01 < np.nanmean(test_f["repeated_lines"])


def test_a_runs_data_settings_come_from_its_hydra_folder(tmp_path):
    from lm_music.evaluation.sets import data_settings, run_data_settings

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / ".hydra" / "config.yaml").write_text(
        "seed: 3\npaths:\n  data_dir: data\n  output_dir: ${hydra:runtime.output_dir}\n"
        "data:\n  path: ${paths.data_dir}/JSB_Chorales.mat\n  seed: ${seed}\n  frames_per_beat: 1\n"
    )
    launched = tmp_path / "checkout"
    (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    cwd: {launched}\n")
    checkpoint = {"path": str(run / "checkpoints" / "last.ckpt")}
    data = run_data_settings(checkpoint)
    assert data == {"path": str(launched / "data" / "JSB_Chorales.mat"), "seed": 3, "frames_per_beat": 1}
    with pytest.raises(UserError, match="JSB_Chorales.mat is not there: give data.path="):
        data_settings(checkpoint, {})
    assert data_settings(checkpoint, {"path": str(JSB)})["path"] == str(JSB)  # data.path= where it moved
    assert run_data_settings({"path": str(JSB)}) == {}  # no run folder around it


def test_in_training_the_sample_judgement_goes_to_the_trackers_and_ranks_models(tmp_path):
    """callbacks.sample_quality: every validation of a fit (not the validation after it) logs samples/oa_mean
    and the telling features once; on JSB's validation split the shipped model's samples score a higher mean
    OA than those of a model trained for one epoch."""
    import csv

    from hydra.utils import instantiate

    from lm_music.callbacks import SampleQuality
    from lm_music.checkpoints import load_checkpoint, module_from_checkpoint
    from tests.conftest import TINY_MUSIC, compose_train, train_run

    overrides = ["experiment=jsb_chorales", f"data.path={JSB}", *TINY_MUSIC, "logger=csv"]
    quality = ["callbacks.sample_quality.every_n_epochs=1", "callbacks.sample_quality.num_samples=8"]
    train_run(tmp_path / "run", [*overrides, *quality, "trainer.max_epochs=2"])
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()))
    judged = [r for r in rows if r.get("samples/oa_mean")]
    validated = [r for r in rows if r.get("val/loss")]
    assert [r["step"] for r in judged] == [r["step"] for r in validated][:2]  # each epoch's, not the final
    for row in judged:
        assert 0 <= float(row["samples/oa_mean"]) <= 1
        assert {"samples/polyphony", "samples/in_scale_rate"} <= {k for k, v in row.items() if v}

    datamodule = instantiate(compose_train(tmp_path / "x", overrides).data)
    datamodule.setup("fit")
    judge = SampleQuality(num_samples=16, length=128).judge
    short = judge(
        module_from_checkpoint(load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")), datamodule
    )
    shipped = judge(module_from_checkpoint(load_checkpoint("pretrained:jsb_chorales")).eval(), datamodule)
    assert shipped["samples/oa_mean"] > short["samples/oa_mean"] + 0.2, (shipped, short)
