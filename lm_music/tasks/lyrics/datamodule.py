"""Lyrics CSVs as people have them, and the lyrics data module (the vocabulary is in lm_music.tasks.lyrics.vocab)."""

import difflib
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lm_music.data.batching import SequenceDataModule, SequenceDataset, windows
from lm_music.errors import UserError
from lm_music.tasks.lyrics.vocab import CharVocab

log = logging.getLogger(__name__)

KAGGLE_URL = "https://www.kaggle.com/datasets/mousehead/songlyrics"


def _read_csv_any_encoding(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, encoding="utf-8", **kwargs)
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as Latin-1", path)
        return pd.read_csv(path, encoding="latin-1", **kwargs)


def read_lyrics_csv(
    path: str | Path, text_column: str = "text", artist_column: str | None = "artist"
) -> pd.DataFrame:
    """Songs of a lyrics CSV as a frame with columns `artist` and `text`.

    Damaged rows (a file cut off inside a quoted field, as the published `songdata.csv` heads are) are
    dropped and counted, as are rows with empty text and duplicated songs.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"lyrics CSV not found: {path}. Download songdata.csv from {KAGGLE_URL} "
            f"(or use any CSV with a text column) and pass data.path=PATH/songdata.csv"
        )
    damaged = 0
    try:
        frame = _read_csv_any_encoding(path, dtype=str, keep_default_na=False)
    except pd.errors.ParserError:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = _read_csv_any_encoding(
                path, dtype=str, keep_default_na=False, engine="python", on_bad_lines="warn"
            )
        damaged = sum(str(w.message).count("Skipping line") for w in caught)
    except pd.errors.EmptyDataError:
        raise UserError(f"lyrics CSV is empty: {path}") from None
    if text_column not in frame.columns:
        raise UserError(
            f"{path} has no text column {text_column!r}; its columns are {list(frame.columns)}: "
            f"set data.text_column=NAME"
        )
    if artist_column is not None and artist_column not in frame.columns:
        raise UserError(
            f"{path} has no artist column {artist_column!r}; its columns are {list(frame.columns)}: "
            f"set data.artist_column=NAME (or data.artist_column=null for unconditional models)"
        )
    songs = pd.DataFrame(
        {
            "artist": frame[artist_column].str.strip() if artist_column else "",
            "text": frame[text_column].astype(str),
        }
    )
    empty = songs["text"].str.strip() == ""
    songs = songs[~empty]
    duplicated = songs.duplicated(["artist", "text"])
    songs = songs[~duplicated].reset_index(drop=True)
    dropped = {"damaged": damaged, "empty text": int(empty.sum()), "duplicated": int(duplicated.sum())}
    if any(dropped.values()):
        log.warning(
            "%s: kept %d songs, dropped %s",
            path.name,
            len(songs),
            ", ".join(f"{n} {why}" for why, n in dropped.items() if n),
        )
    return songs


def filter_artists(
    songs: pd.DataFrame, artists: Sequence[str] | None, min_songs: int, others: str | None = None
) -> pd.DataFrame:
    """Keep the listed artists, then those with at least `min_songs` songs, as the original notebooks did.

    With `others`, the songs of artists below `min_songs` stay, credited to that one pooled name: a small
    corpus with a long tail of authors (598 for 1,505 public-domain songs) keeps all of its text.
    """
    if artists:
        known = set(songs["artist"])
        unknown = [a for a in artists if a not in known]
        if unknown:
            by_lower = {k.lower(): k for k in known}
            hints = {
                a: [by_lower[m] for m in difflib.get_close_matches(a.lower(), by_lower, n=3)] for a in unknown
            }
            raise UserError(f"artists not in the dataset: {hints} (name: closest matches); fix data.artists")
        songs = songs[songs["artist"].isin(list(artists))]
    if min_songs > 1:
        counts = songs["artist"].value_counts()
        kept = songs["artist"].isin(counts[counts >= min_songs].index)
        songs = songs.assign(artist=songs["artist"].where(kept, others)) if others else songs[kept]
    if len(songs) == 0:
        raise UserError(
            f"no songs left after filtering (data.artists={list(artists) if artists else None}, "
            f"data.min_songs={min_songs}): relax the filters"
        )
    return songs.reset_index(drop=True)


def split_indices(n: int, valid_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded split of n items into train/valid/test; valid and test get at least one item when n >= 3."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(int(round(n * valid_fraction)), 1 if n >= 3 and valid_fraction > 0 else 0)
    n_test = max(int(round(n * test_fraction)), 1 if n >= 3 and test_fraction > 0 else 0)
    return {
        "valid": np.sort(order[:n_valid]),
        "test": np.sort(order[n_valid : n_valid + n_test]),
        "train": np.sort(order[n_valid + n_test :]),
    }


class LyricsDataModule(SequenceDataModule):
    """Songs of one lyrics CSV, encoded once into id arrays, batched by length, padded and masked."""

    def __init__(
        self,
        path: str,
        text_column: str = "text",
        artist_column: str | None = "artist",
        artists: list[str] | None = None,
        min_songs: int = 0,
        others: str | None = None,
        max_len: int | None = 1000,
        batch_size: int = 50,
        valid_fraction: float = 0.05,
        test_fraction: float = 0.05,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        if max_len is not None and max_len < 1:
            raise UserError(f"data.max_len must be at least 1 (or null for whole songs), got {max_len}")
        self.path = path
        self.text_column = text_column
        self.artist_column = artist_column
        self.artists_filter = list(artists) if artists else None
        self.min_songs = min_songs
        self.others = others
        self.max_len = max_len
        self.valid_fraction = valid_fraction
        self.test_fraction = test_fraction
        self.vocab: CharVocab | None = None
        self.artists: list[str] = []

    def adopt(self, hparams: dict) -> None:
        """Use a checkpoint's vocabulary and artists (evaluating or resuming it) instead of building them."""
        self.vocab = CharVocab(hparams["vocab"])
        self.artists = list(hparams.get("artists") or [])

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        songs = read_lyrics_csv(self.path, self.text_column, self.artist_column)
        songs = filter_artists(songs, self.artists_filter, self.min_songs, self.others)
        if self.vocab is not None and self.artists:
            unknown = ~songs["artist"].isin(self.artists)
            if unknown.any():
                log.warning("dropping %d songs by artists the checkpoint does not know", int(unknown.sum()))
                songs = songs[~unknown].reset_index(drop=True)
        elif self.artist_column:
            self.artists = sorted(set(songs["artist"]))
        artist_ids = {a: i for i, a in enumerate(self.artists)}
        split = split_indices(len(songs), self.valid_fraction, self.test_fraction, self.seed)
        texts, song_artists = songs["text"].tolist(), songs["artist"].tolist()
        if self.vocab is None:
            self.vocab = CharVocab.build([texts[i] for i in split["train"]])
        for stage_name, indices in split.items():
            sequences, labels = [], []
            for i in indices:
                pieces = windows(self.vocab.encode(texts[i], bos=True, eos=True), self.max_len)
                sequences += pieces
                labels += [artist_ids.get(song_artists[i], -1)] * len(pieces)
            self.datasets[stage_name] = SequenceDataset(sequences, labels if self.artist_column else None)
        log.info(
            "lyrics: %d songs by %d artists, %d characters in the vocabulary; sequences train/valid/test %d/%d/%d",
            len(songs),
            len(self.artists),
            len(self.vocab.chars),
            *(len(self.datasets[s]) for s in ("train", "valid", "test")),
        )

    def pieces(self, stage: str) -> list[str]:
        """The split's texts (its windows) as the sample evaluator reads them."""
        return [self.vocab.decode(ids) for ids in self.datasets[stage].sequences]

    def model_kwargs(self) -> dict:
        """What the model takes from the data; saved in the checkpoint, so sampling needs nothing else."""
        return {"vocab": self.vocab.chars, "artists": list(self.artists)}
