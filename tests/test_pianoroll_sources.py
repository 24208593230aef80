"""Every piano-roll source on the real files, the seeded split, the cache and `load_splits`."""

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from lm_music.errors import UserError
from lm_music.midi import LOWEST_PITCH, NUM_KEYS
from lm_music.tasks.pianoroll.datamodule import (
    SPLITS,
    cached_splits,
    load_splits,
    read_bach_chorales,
    read_benchmark,
    read_midi_folder,
)
from tests.conftest import data_path

# From the data README: (sequences, time steps) per split.
JSB = {"train": (229, 13807), "valid": (76, 4602), "test": (77, 4725)}
NOTTINGHAM = {"train": (694, 176561), "valid": (173, 45513), "test": (170, 44463)}
PIANO_MIDI = {"train": (87, 75911), "valid": (12, 8540), "test": (25, 19036)}


def sizes(splits) -> dict:
    return {split: (len(rolls), sum(len(roll) for roll in rolls)) for split, rolls in splits.items()}


def assert_rolls(splits) -> None:
    assert set(splits) == set(SPLITS)
    for rolls in splits.values():
        for roll in rolls:
            assert roll.dtype == np.uint8 and roll.ndim == 2 and roll.shape[1] == NUM_KEYS
            assert roll.max(initial=0) <= 1


def assert_same(a, b) -> None:
    assert sizes(a) == sizes(b)
    for split in SPLITS:
        for x, y in zip(a[split], b[split]):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "file, expected",
    [
        ("polyphonic/JSB_Chorales.mat", JSB),
        ("polyphonic/Nottingham.mat", NOTTINGHAM),
        ("polyphonic/Piano_midi.mat", PIANO_MIDI),
        ("polyphonic/bl_pickles/JSB Chorales.pickle", JSB),
        ("polyphonic/bl_pickles/Nottingham.pickle", NOTTINGHAM),
        ("polyphonic/bl_pickles/Piano-midi.de.pickle", PIANO_MIDI),
        (
            "polyphonic/bl_pickles/jsb-chorales-quarter-original.pkl",
            JSB,
        ),  # numpy int64 pitches, Python 2 pickle
    ],
)
def test_benchmark_files(file, expected):
    splits = read_benchmark(data_path(file))
    assert sizes(splits) == expected
    assert_rolls(splits)


def test_jsb_pickles_and_mat_are_identical():
    mat = read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))
    assert_same(mat, read_benchmark(data_path("polyphonic/bl_pickles/JSB Chorales.pickle")))
    assert_same(mat, read_benchmark(data_path("polyphonic/bl_pickles/jsb-chorales-quarter-original.pkl")))


def test_benchmark_format_is_told_from_content_not_name(tmp_path):
    renamed = tmp_path / "jsb.download"
    renamed.write_bytes((data_path("polyphonic/JSB_Chorales.mat")).read_bytes())
    assert sizes(read_benchmark(renamed)) == JSB


def test_bad_benchmark_files_are_user_errors(tmp_path):
    jsb = read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))
    cases = {
        "no_test.pickle": lambda f: pickle.dump({"train": [], "valid": []}, f),
        "pitch_200.pickle": lambda f: pickle.dump({"train": [[(60, 200)]], "valid": [], "test": []}, f),
        "code.pickle": lambda f: pickle.dump({"train": logging.getLogger}, f),
        "notes.txt": lambda f: f.write(b"C4 E4 G4\n"),
    }
    messages = {
        "no_test.pickle": "dict with keys",
        "pitch_200.pickle": "outside 21..108",
        "code.pickle": "refers to logging.getLogger",
        "notes.txt": "neither a MATLAB .mat file nor a readable pickle",
    }
    for name, write in cases.items():
        with open(tmp_path / name, "wb") as f:
            write(f)
        with pytest.raises(UserError, match=messages[name]):
            read_benchmark(tmp_path / name)

    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = jsb["train"][0]
    scipy.io.savemat(tmp_path / "no_valid.mat", {"traindata": cells, "testdata": cells})
    with pytest.raises(UserError, match="no 'validdata'"):
        read_benchmark(tmp_path / "no_valid.mat")
    cells[0, 0] = jsb["train"][0][:, :80]
    scipy.io.savemat(tmp_path / "narrow.mat", {"traindata": cells, "validdata": cells, "testdata": cells})
    with pytest.raises(UserError, match="T x 88"):
        read_benchmark(tmp_path / "narrow.mat")
    with pytest.raises(UserError, match="does not exist"):
        read_benchmark(tmp_path / "missing.mat")


@pytest.mark.slow
def test_nottingham_midi_folder_as_benchmark():
    splits = read_benchmark(data_path("midi/nottingham_jukedeck"), frames_per_beat=2)
    assert [len(splits[split]) for split in SPLITS] == [136, 32, 32]
    assert_rolls(splits)


@pytest.mark.slow
def test_piano_midi_de_folder_reads_every_file_including_upper_case_suffix():
    splits, skipped = read_midi_folder(data_path("midi/piano_midi_de"), frames_per_beat=2)
    assert [len(splits[split]) for split in SPLITS] == [207, 44, 44]  # three of them end in .MID
    assert skipped == []


@pytest.mark.slow
def test_odd_but_valid_all_load():
    splits, skipped = read_midi_folder(data_path("midi/odd_but_valid"), seed=0)
    assert_rolls(splits)
    # 55 files; two have no notes on the keyboard (only drums; only pitches 1-3)
    assert sorted(Path(path).name for path, _ in skipped) == ["beat.mid", "example_event_order.mid"]
    assert all("no notes" in reason for _, reason in skipped)
    assert [len(splits[split]) for split in SPLITS] == [43, 5, 5]


def test_flat_folder_split_is_seeded(tmp_path):
    for file in sorted((data_path("midi/nottingham_jukedeck/valid")).iterdir())[:20]:
        (tmp_path / file.name).symlink_to(file)
    splits, _ = read_midi_folder(tmp_path, seed=0)
    assert [len(splits[split]) for split in SPLITS] == [16, 2, 2]
    assert_same(read_midi_folder(tmp_path, seed=0)[0], splits)
    other = read_midi_folder(tmp_path, seed=1)[0]
    assert any(not np.array_equal(a, b) for a, b in zip(other["train"], splits["train"]))


def test_unreadable_files_are_skipped_with_one_warning_each(tmp_path, caplog):
    for file in (data_path("midi/unreadable")).iterdir():
        (tmp_path / file.name).symlink_to(file)
    for name in ("ashover2.mid", "ashover27.mid", "ashover30.mid"):
        (tmp_path / name).symlink_to(data_path("midi/nottingham_jukedeck/train") / name)
    with caplog.at_level(logging.WARNING, logger="lm_music"):
        splits, skipped = read_midi_folder(tmp_path, seed=0)
    assert [len(splits[split]) for split in SPLITS] == [1, 1, 1]
    assert sorted(Path(path).name for path, _ in skipped) == sorted(
        p.name for p in (data_path("midi/unreadable")).iterdir()
    )
    assert all(reason for _, reason in skipped)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 5 and all("\n" not in w for w in warnings)
    for path, _ in skipped:
        assert sum(path in w for w in warnings) == 1


def test_folder_with_only_unreadable_files_is_a_user_error():
    with pytest.raises(UserError, match="no readable MIDI file"):
        read_midi_folder(data_path("midi/unreadable"))


def test_split_subfolders_need_train_and_valid_and_test_is_optional(tmp_path, caplog):
    tune = data_path("midi/nottingham_jukedeck/train/ashover2.mid")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.mid").symlink_to(tune)
    with pytest.raises(UserError, match="not both train/ and valid/"):
        read_midi_folder(tmp_path)
    (tmp_path / "valid").mkdir()
    (tmp_path / "valid" / "b.mid").symlink_to(tune)
    (tmp_path / "stray.mid").symlink_to(tune)
    with caplog.at_level(logging.WARNING, logger="lm_music"):
        splits, _ = read_midi_folder(tmp_path)
    assert [len(splits[split]) for split in SPLITS] == [1, 1, 0]
    assert "ignoring 1 MIDI files outside" in caplog.text


def test_bach_chorales_few():
    splits = read_bach_chorales(limit=12)
    assert [len(splits[split]) for split in SPLITS] == [10, 1, 1]
    assert_rolls(splits)
    notes = np.concatenate([np.nonzero(roll)[1] for rolls in splits.values() for roll in rolls])
    white = np.isin((notes + LOWEST_PITCH) % 12, [0, 2, 4, 5, 7, 9, 11]).mean()
    assert white > 0.9  # transposed to C major / A minor


def test_cache_hit_does_not_build_and_keeps_rolls(tmp_path):
    jsb = read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))
    jsb["test"] = []  # an empty split survives the cache too
    key = {"source": "test", "frames_per_beat": 1}
    built = cached_splits(tmp_path, key, lambda: jsb)
    (cache_file,) = tmp_path.iterdir()
    assert (
        cache_file.suffix == ".npz"
        and cache_file.stat().st_size < 0.2 * sum(sizes(jsb)[s][1] for s in SPLITS) * 88
    )

    def must_not_build():
        raise AssertionError("cache hit expected")

    assert_same(cached_splits(tmp_path, key, must_not_build), built)
    assert_rolls(cached_splits(tmp_path, key, must_not_build))
    assert len(list(tmp_path.iterdir())) == 1


def test_corrupt_cache_is_rebuilt(tmp_path, caplog):
    jsb = read_benchmark(data_path("polyphonic/JSB_Chorales.mat"))
    key = {"source": "test"}
    cached_splits(tmp_path, key, lambda: jsb)
    (cache_file,) = tmp_path.iterdir()
    good = cache_file.read_bytes()
    builds = []

    def build():
        builds.append(1)
        return jsb

    for damaged in (good[: len(good) // 2], b"not a cache file"):
        cache_file.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lm_music"):
            splits = cached_splits(tmp_path, key, build)
        assert len(builds) == 1 and "rebuilding" in caplog.text
        builds.clear()
        assert_same(splits, jsb)
        assert_same(cached_splits(tmp_path, key, lambda: pytest.fail("rebuilt twice")), jsb)


def test_load_splits_sources(tmp_path):
    grid = {"frames_per_beat": 2, "fs": None, "transpose_to_c": False, "seed": 0}
    mat = load_splits("benchmark", str(data_path("polyphonic/Nottingham.mat")), tmp_path, **grid)
    assert sizes(mat) == NOTTINGHAM
    assert not list(tmp_path.iterdir())  # benchmark files are read directly, not cached

    folder = load_splits("midi_folder", str(data_path("midi/nottingham_jukedeck")), tmp_path, **grid)
    assert [len(folder[split]) for split in SPLITS] == [136, 32, 32]
    assert len(list(tmp_path.glob("rolls-*.npz"))) == 1
    assert_same(
        load_splits("midi_folder", str(data_path("midi/nottingham_jukedeck")), tmp_path, **grid), folder
    )


@pytest.mark.parametrize(
    "source, path, change, message",
    [
        ("benchmark", "missing/JSB_Chorales.mat", {}, "not found: get JSB_Chorales.mat"),
        (
            "benchmark",
            str(data_path("polyphonic/JSB_Chorales.mat")),
            {"frames_per_beat": None, "fs": 100.0},
            "fs=null",
        ),
        ("midi_folder", None, {}, "needs a path"),
        ("midi_folder", "missing_folder", {}, "does not exist"),
        ("bach_chorales", None, {"frames_per_beat": None, "fs": 100.0}, "fs=null"),
        ("midi_folder", str(data_path("midi/nottingham_jukedeck")), {"fs": 100.0}, "exactly one"),
        ("lakh", None, {}, "unknown data source"),
    ],
)
def test_load_splits_user_errors(tmp_path, source, path, change, message):
    settings = {"frames_per_beat": 2, "fs": None, "transpose_to_c": False, "seed": 0, **change}
    with pytest.raises(UserError, match=message):
        load_splits(source, path, tmp_path, **settings)
