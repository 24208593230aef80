import logging

import numpy as np
import pytest

from lm_music.data.batching import LengthGroupedBatchSampler, padding_share
from lm_music.errors import UserError
from lm_music.tasks.lyrics.datamodule import (
    CharVocab,
    LyricsDataModule,
    filter_artists,
    read_lyrics_csv,
    split_indices,
    windows,
)
from tests.conftest import LYRICS_CSV, data_path


def test_truncated_kaggle_head_keeps_complete_songs(caplog):
    with caplog.at_level(logging.WARNING):
        songs = read_lyrics_csv(LYRICS_CSV)
    assert len(songs) == 873
    assert songs["artist"].nunique() == 24
    assert "1 damaged" in caplog.text
    assert songs["text"].iloc[-1].rstrip().endswith("Dad's hairy back") is False  # the cut-off song is gone


def test_text_column_is_configurable():
    songs = read_lyrics_csv(data_path("lyrics/beatles.csv"), text_column="lyrics")
    assert 150 < len(songs) <= 175
    assert set(songs["artist"]) == {"The Beatles"} or songs["artist"].nunique() == 1


def test_missing_column_names_the_columns_found():
    with pytest.raises(UserError, match=r"no text column 'text'.*'lyrics'.*data.text_column"):
        read_lyrics_csv(data_path("lyrics/beatles.csv"))
    with pytest.raises(UserError, match=r"no artist column 'singer'.*'artist'"):
        read_lyrics_csv(LYRICS_CSV, artist_column="singer")


def test_missing_file_says_where_to_get_it(tmp_path):
    with pytest.raises(UserError, match="kaggle.com/datasets/mousehead/songlyrics"):
        read_lyrics_csv(tmp_path / "songdata.csv")


def test_artist_filters():
    songs = read_lyrics_csv(LYRICS_CSV)
    abba = filter_artists(songs, ["ABBA"], 0)
    assert set(abba["artist"]) == {"ABBA"} and len(abba) > 50
    counts = songs["artist"].value_counts()
    many = filter_artists(songs, None, 60)
    assert set(many["artist"]) == set(counts[counts >= 60].index)
    pooled = filter_artists(songs, None, 60, others="Others")  # the long tail kept under one name
    assert len(pooled) == len(songs) and set(pooled["artist"]) == set(many["artist"]) | {"Others"}
    assert (pooled["artist"] == "Others").sum() == len(songs) - len(many)
    with pytest.raises(UserError, match="'Abba'.*ABBA"):
        filter_artists(songs, ["Abba"], 0)
    with pytest.raises(UserError, match="no songs left"):
        filter_artists(songs, ["ABBA"], 10_000)


def test_vocab_round_trip_and_unknown_characters():
    vocab = CharVocab.build(["hello world\n"])
    ids = vocab.encode("hello", bos=True, eos=True)
    assert ids[0] == CharVocab.BOS and ids[-1] == CharVocab.EOS
    assert vocab.decode(ids) == "hello"
    unknown = vocab.encode("hé字😀")
    assert unknown.tolist()[1:] == [CharVocab.UNK] * 3
    assert vocab.decode(unknown) == "h\ufffd\ufffd\ufffd"


def test_windows_cover_the_song_with_one_character_overlap():
    ids = np.arange(25)
    pieces = windows(ids, 10)
    assert [len(p) for p in pieces] == [11, 11, 5]
    targets = np.concatenate([p[1:] for p in pieces])
    assert targets.tolist() == list(range(1, 25))  # every character after the first is predicted once
    assert windows(ids, None)[0] is ids


def test_split_is_seeded_disjoint_and_complete():
    a, b = split_indices(100, 0.1, 0.1, seed=3), split_indices(100, 0.1, 0.1, seed=3)
    assert all((a[k] == b[k]).all() for k in a)
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    assert len(a["valid"]) == len(a["test"]) == 10
    assert (split_indices(100, 0.1, 0.1, seed=4)["valid"] != a["valid"]).any()


def test_length_grouping_cuts_padding_and_covers_every_sequence():
    lengths = np.random.default_rng(0).integers(10, 1000, size=2000)
    grouped = LengthGroupedBatchSampler(lengths, 50, shuffle=True, seed=0)
    batches = list(grouped)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    random_batches = np.random.default_rng(0).permutation(2000).reshape(-1, 50)
    assert padding_share(lengths, batches) < 0.1 < padding_share(lengths, random_batches)
    grouped.set_epoch(1)
    assert list(grouped) != batches  # a new order every epoch


def test_ranks_get_disjoint_batches_of_equal_count():
    lengths = np.arange(1, 103)
    ranks = [list(LengthGroupedBatchSampler(lengths, 10, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(LengthGroupedBatchSampler(lengths, 10, num_replicas=2))
    seen = [i for rank in ranks for batch in rank for i in batch]
    assert set(seen) == set(range(102))


def test_datamodule_builds_vocab_from_train_split_only():
    dm = LyricsDataModule(str(LYRICS_CSV), max_len=300, batch_size=8, seed=0)
    dm.setup("fit")
    assert len(dm.artists) == 24
    train_chars = set(dm.vocab.chars)
    val_ids = np.concatenate(dm.datasets["valid"].sequences)
    assert (val_ids < len(dm.vocab)).all()
    assert max(len(s) for s in dm.datasets["train"].sequences) == 301
    batch = next(iter(dm.train_dataloader()))
    assert batch["sequences"].shape[0] == 8 and batch["labels"].shape == (8,)
    assert len(train_chars) > 60


def test_evaluation_batches_are_split_across_ranks_without_repeats():
    lengths = np.arange(1, 104)
    ranks = [
        list(LengthGroupedBatchSampler(lengths, 10, shuffle=False, num_replicas=2, rank=r)) for r in (0, 1)
    ]
    assert (len(ranks[0]), len(ranks[1])) == (6, 5)
    seen = sorted(i for rank in ranks for batch in rank for i in batch)
    assert seen == list(range(103))
