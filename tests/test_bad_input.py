"""Damaged and odd input, made from the real files: one clear error line, or handled and counted."""

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lm_music.checkpoints import load_checkpoint
from lm_music.errors import UserError
from lm_music.tasks.lyrics.datamodule import LyricsDataModule, read_lyrics_csv
from tests.conftest import LYRICS_CSV, ROOT, TINY_LYRICS, data_path, run_script, train_run


@pytest.fixture(scope="module")
def songs() -> pd.DataFrame:
    return read_lyrics_csv(LYRICS_CSV)


def test_latin1_csv_is_read(songs, tmp_path):
    path = tmp_path / "latin1.csv"
    sample = songs.head(50).copy()
    sample.loc[0, "text"] = "Café, naïve, über " + sample.loc[0, "text"]
    sample.to_csv(path, index=False, encoding="latin-1", errors="replace")
    read = read_lyrics_csv(path)
    assert len(read) == 50 and read["text"][0].startswith("Café, naïve, über")


def test_empty_numeric_duplicated_and_multiline_rows(songs, tmp_path, caplog):
    sample = songs.head(40).copy()
    rows = pd.DataFrame(
        {
            "artist": ["ABBA", "ABBA", "ABBA", "ABBA"],
            "text": ["", "   ", "12345", 'She said "hi",\nthen\n"bye"'],
        }
    )
    frame = pd.concat([sample, sample.head(5), rows], ignore_index=True)  # 5 duplicated songs
    frame.to_csv(tmp_path / "odd.csv", index=False)
    with caplog.at_level(logging.WARNING):
        read = read_lyrics_csv(tmp_path / "odd.csv")
    assert len(read) == 40 + 2  # the number and the quoted multi-line song are kept
    assert "2 empty text" in caplog.text and "5 duplicated" in caplog.text
    assert 'She said "hi",\nthen\n"bye"' in set(read["text"])
    assert "12345" in set(read["text"])


def test_non_latin_scripts_are_kept_or_unknown_never_a_crash(songs, tmp_path):
    frame = songs.head(30).copy()
    frame.loc[0, "text"] = "夜空ノムコウ\nНочь, улица, фонарь\nلا إله\n" + frame.loc[0, "text"]
    frame.to_csv(tmp_path / "scripts.csv", index=False)
    dm = LyricsDataModule(str(tmp_path / "scripts.csv"), valid_fraction=0.1, test_fraction=0.1, max_len=50)
    dm.setup()
    decoded = [
        dm.vocab.decode(seq) for seq in dm.datasets["train"].sequences + dm.datasets["valid"].sequences
    ]
    assert any("Ночь" in text or "\ufffd" in text for text in decoded)


def test_a_huge_song_is_cut_into_windows(songs, tmp_path):
    """A 20 MB song becomes max_len windows: no batch ever holds more than max_len + 1 characters."""
    frame = songs.head(20).copy()
    frame.loc[0, "text"] = (frame.loc[1, "text"] + "\n") * (20_000_000 // len(frame.loc[1, "text"]))
    frame.to_csv(tmp_path / "huge.csv", index=False)
    dm = LyricsDataModule(
        str(tmp_path / "huge.csv"), max_len=500, batch_size=32, valid_fraction=0.1, test_fraction=0.1
    )
    dm.setup()
    lengths = np.concatenate([dm.datasets[s].lengths() for s in ("train", "valid", "test")])
    assert lengths.max() == 501 and lengths.sum() > 20_000_000
    assert next(iter(dm.train_dataloader()))["sequences"].shape[1] <= 501


def test_empty_csv_and_filter_to_nothing(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="empty"):
        read_lyrics_csv(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("artist,song,link,text\n")
    with pytest.raises(UserError, match="no songs left"):
        LyricsDataModule(str(tmp_path / "header.csv")).setup()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size must be at least 1"),
        ("model.hidden_size=-4", "model.hidden_size must be at least 1"),
        ("model.num_layers=0", "model.num_layers must be at least 1"),
        ("model.dropout=1.5", "model.dropout must be in [0, 1)"),
        ("model.weight_dropout=-0.1", "model.weight_dropout must be in [0, 1)"),
        ("model.cell=transformer", "model.cell must be one of ['gru', 'lstm']"),
        ("data.max_len=0", "data.max_len must be at least 1"),
    ],
)
def test_bad_config_values_are_user_errors(tmp_path, override, message):
    with pytest.raises(UserError) as error:
        train_run(tmp_path, ["experiment=lyrics", *TINY_LYRICS, override])
    assert message in str(error.value)


def test_unknown_config_key_keeps_hydra_strict(tmp_path):
    result = run_script("train.py", "experiment=lyrics", "model.hiden_size=3", f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0 and "hiden_size" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_soundfont_is_one_line_before_anything_runs(tmp_path):
    """sample.py and train.py: `audio.soundfont` names a file that is not there."""
    missing = tmp_path / "grand.sf2"
    sample = run_script(
        "sample.py", "pretrained=nottingham", f"audio.soundfont={missing}", f"out_dir={tmp_path}/s"
    )
    assert (
        sample.stderr.strip().splitlines()[-1]
        == f"error: audio.soundfont={missing}: no such file; give an .sf2 or .sf3 SoundFont"
    )
    assert not (tmp_path / "s").exists()
    train = run_script(
        "train.py", "experiment=jsb_chorales", f"audio.soundfont={missing}", f"hydra.run.dir={tmp_path}/run"
    )
    assert train.returncode != 0 and "Traceback" not in train.stderr
    assert f"error: audio.soundfont={missing}: no such file" in train.stderr


@pytest.mark.parametrize(("args", "message"), [(["num_samples=0"], "num_samples must be at least 1")])
def test_sample_counts(tmp_path, args, message):
    result = run_script("sample.py", f"ckpt_path={tmp_path}/none.ckpt", *args)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_damaged_or_foreign_checkpoints_are_one_line(lyrics_run, tmp_path):
    good = (lyrics_run / "checkpoints" / "last.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 2])
    (tmp_path / "foreign.ckpt").write_bytes(data_path("polyphonic/JSB_Chorales.mat").read_bytes())
    for name in ("truncated.ckpt", "foreign.ckpt", "missing.ckpt"):
        with pytest.raises(UserError, match=name):
            load_checkpoint(tmp_path / name)
    # the command prints that error as one line (one process: every UserError takes the same way out)
    sample = run_script("sample.py", f"ckpt_path={tmp_path / 'foreign.ckpt'}", f"out_dir={tmp_path}/out")
    assert sample.returncode != 0 and "Traceback" not in sample.stderr, sample.stderr
    assert "error:" in sample.stderr and "foreign.ckpt" in sample.stderr
    assert not (tmp_path / "out").exists()
    resume = run_script(
        "train.py",
        "experiment=lyrics",
        *TINY_LYRICS,
        f"ckpt_path={tmp_path / 'truncated.ckpt'}",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert resume.returncode != 0 and "not a readable checkpoint" in resume.stderr


def test_a_lyrics_checkpoint_given_to_a_music_experiment(lyrics_run, tmp_path):
    result = run_script(
        "train.py",
        "experiment=jsb_chorales",
        f"data.path={data_path('polyphonic/JSB_Chorales.mat')}",
        f"ckpt_path={lyrics_run / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
    )
    assert result.returncode != 0 and "is a lyrics checkpoint" in result.stderr


def test_a_midi_folder_mixing_good_and_bad_files_trains_on_the_good_ones(tmp_path):
    """Good files train; unreadable, note-less and drums-only files are skipped and summed up in one line."""
    from tests.conftest import TINY_MUSIC

    folder = tmp_path / "midi"
    folder.mkdir()
    good = sorted((data_path("midi/nottingham_jukedeck/train")).glob("*.mid"))[:12]
    bad = list((data_path("midi/unreadable")).iterdir()) + [data_path("midi/odd_but_valid/tonejs/beat.mid")]
    for file in good + bad:
        (folder / file.name).symlink_to(file)
    (folder / "truncated.mid").write_bytes(good[0].read_bytes()[:40])
    (folder / "not_midi.mid").write_bytes(LYRICS_CSV.read_bytes()[:2000])
    result = run_script(
        "train.py",
        "experiment=midi_folder",
        f"data.path={folder}",
        *TINY_MUSIC,
        f"paths.data_dir={tmp_path}",
        "trainer.max_steps=2",
        f"hydra.run.dir={tmp_path}/run",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    log = (tmp_path / "run" / "train.log").read_text()
    summary = [line for line in log.splitlines() if "MIDI files from" in line and "skipped" in line]
    assert len(summary) == 1 and "read 12 MIDI files" in summary[0]
    assert "truncated.mid" in log and "not_midi.mid" in log
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_absurd_tempos_still_give_a_roll(tmp_path):
    import pretty_midi

    from lm_music.midi import midi_to_roll

    source = pretty_midi.PrettyMIDI(str(data_path("midi/nottingham_jukedeck/train/jigs318.mid")))
    for tempo in (4.0, 2_000.0, 100_000.0):  # MIDI holds tempos down to about 3.6 beats per minute
        pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
        pm.instruments = source.instruments
        pm.write(str(tmp_path / f"{tempo}.mid"))
    for tempo in (4.0, 2_000.0):
        beat_roll, _ = midi_to_roll(str(tmp_path / f"{tempo}.mid"), frames_per_beat=2)
        time_roll, _ = midi_to_roll(str(tmp_path / f"{tempo}.mid"), frames_per_beat=None, fs=10)
        assert beat_roll.sum() > 0 and time_roll.sum() > 0
    # At 100,000 beats per minute the file needs more ticks than pretty_midi accepts: a clear error.
    with pytest.raises(UserError, match=r"cannot read MIDI file .*100000.0.mid"):
        midi_to_roll(str(tmp_path / "100000.0.mid"), frames_per_beat=2)


class _RunsCode:
    """Pickled, it asks the unpickler to call os.system: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_whose_pickle_would_run_code_is_refused_in_lm_musics_words(tmp_path):
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "hostile.ckpt"
    torch.save({"lm_music_task": "lyrics", "payload": _RunsCode(marker)}, hostile)
    result = run_script("sample.py", f"ckpt_path={hostile}", f"out_dir={tmp_path}/out")
    assert result.returncode != 0 and not marker.exists(), result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        f"error: {hostile} holds Python objects that lm_music will not unpickle, because unpickling can run "
        "code; use a checkpoint lm_music wrote, or a model exported with python -m lm_music.export"
    )
    assert "weights_only=False" not in result.stderr and "Traceback" not in result.stderr
