"""What each kind of model's samples are judged as: how they are read, the reference sets, the features.

Each task's entry in `lm_music.tasks.TASKS` names its kind (`Task.evaluation`), so the evaluator never asks
which task it has. A kind turns drawn samples or a folder into values (rolls, texts), builds the reference split,
the ceiling (another real split against it) and the floor (independent draws from the training set's
unigram statistics), and computes the features of all the sets at once.
"""

import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from lm_music import run_folder
from lm_music.errors import UserError
from lm_music.evaluation import events as event_features
from lm_music.evaluation import lyrics, music
from lm_music.evaluation.compare import check_reference
from lm_music.evaluation.copying import memorisation_table

SPLIT_NAMES = ("train", "valid", "test")
CEILING_OF = {"test": "valid", "valid": "test", "train": "valid"}  # the real split scored against each


@dataclass
class Sets:
    """The values to score: samples, the reference, the ceiling and floor anchors, and what each is."""

    samples: list
    reference: list
    ceiling: list | None
    floor: list
    training: list  # the training split (lyrics: the memorisation index is built over it)
    described: dict = field(default_factory=dict)  # set name -> one line saying what it is
    notes: list[str] = field(default_factory=list)
    ceiling_against: list | None = None  # what the ceiling is scored against, when not the reference


def run_data_settings(checkpoint: dict) -> dict:
    """The data settings of the model's run: an exported model's (the split and filters, not the data's path),
    a `.ckpt`'s run folder's (`run_folder.data_settings`); {} for a .ckpt outside its run."""
    if checkpoint.get("exported"):
        return dict(checkpoint["exported"].get("data") or {})
    path = Path(checkpoint.get("path", ""))
    return run_folder.data_settings(run_folder.run_of(path)) if path.is_file() else {}


def data_settings(checkpoint: dict, overrides: dict, elsewhere: str = "") -> dict:
    """The run's data settings with the command's `data.*` over them; a clear line when there are none
    (`elsewhere`: the other way to give a reference, for the message)."""
    data = {**run_data_settings(checkpoint), **overrides}
    if not data.get("path") and data.get("source") != "bach_chorales":
        raise UserError(
            f"{checkpoint.get('path', 'the model')} carries no data settings (an exported or shipped model, or "
            "a .ckpt without its run's .hydra/config.yaml): give the reference with data.path=FILE_OR_FOLDER"
            + elsewhere
        )
    if data.get("path") and not Path(str(data["path"])).expanduser().exists():
        raise UserError(
            f"the model's data {data['path']} is not there: give data.path=WHERE_IT_IS" + elsewhere
        )
    return data


def _halves(values: list, seed: int) -> tuple[list, list]:
    order = np.random.default_rng(seed).permutation(len(values))
    half = len(values) // 2
    return [values[i] for i in sorted(order[:half])], [values[i] for i in sorted(order[half:])]


# ---------------------------------------------------------------------------------------------------------
# Music: rolls on the model's grid


class MusicKind:
    """Piano-roll models: samples as rolls, MIDI read onto the model's grid, the features of `music`."""

    features = music.FEATURES
    descriptions = music.DESCRIPTIONS
    folder_files = "*.mid / *.midi"
    telling = {
        "polyphony": "mean",
        "in_scale_rate": "mean",
        "pitch_range": "mean",
        "mean_note_length": "mean",
    }

    def __init__(self, model) -> None:
        self.model = model
        self.grid = {"frames_per_beat": model.sampler.frames_per_beat, "fs": model.sampler.fs}
        self.bar_frames = music.bar_frames_of(**self.grid)
        self.training = None  # the training split's rolls: what copying is measured against

    def drawn(self, samples) -> list[np.ndarray]:
        return list(samples.rolls)

    def draw_in_training(self, module, num_samples: int, length: int, temperature: float, generator) -> list:
        """Rolls drawn by a LightningModule during training (`callbacks.SampleQuality`)."""
        return list(module.sample(num_samples, length, temperature, generator=generator).cpu().numpy())

    def read_folder(self, folder: Path) -> list[np.ndarray]:
        """The MIDI files of a folder (sample.py's output, a reference_dir: every file), on the model's grid."""
        from lm_music.midi import midi_to_roll
        from lm_music.midi_folder import read_folder

        def read(file: Path) -> np.ndarray | None:
            roll, _ = midi_to_roll(file, **self.grid)
            return roll if len(roll) else None

        return list(read_folder(folder, read, by_split=False)[0].values())

    def load_reference(self, args) -> dict:
        """The real pieces: reference_dir's (all of them), or the model's data split by split."""
        if args.get("reference_dir"):
            folder = Path(str(args.reference_dir)).expanduser()
            pieces = self.read_folder(folder)
            check_reference(len(pieces), f"reference_dir {folder}")
            return {"folder": folder, "pieces": pieces}
        from lm_music.data.pianoroll import load_splits

        elsewhere = " (data.source=bach_chorales for music21's chorales) or reference_dir=MIDI_FOLDER"
        data = data_settings(self.model.checkpoint, dict(args.get("data") or {}), elsewhere)
        path = data.get("path")
        folder_of_pieces = path and Path(path).is_dir() and not (Path(path) / "train").is_dir()
        source = data.get("source") or ("midi_folder" if folder_of_pieces else "benchmark")
        splits = load_splits(
            source,
            path,
            data.get("cache_dir") or "data/cache",
            self.grid["frames_per_beat"],
            self.grid["fs"],
            bool(data.get("transpose_to_c", False)),
            int(data.get("seed", 0)),
        )
        name = str(args.get("reference", "test"))
        where = path if source != "bach_chorales" else "music21's Bach chorales"
        check_reference(len(splits[name]), f"the {name} split of {where}")
        return {"splits": splits, "where": where}

    def sets(self, samples: list, loaded: dict, args) -> Sets:
        """The samples, the reference, the ceiling and the floor (as long as the samples). Pitch range,
        pitches used and the like grow with a piece's length, so lengths are matched: sample i is cut to the
        length of real piece i (cycled; a JSB chorale is ~60 frames, a card's sample 256) and the real
        pieces to the longest sample."""
        seed = int(args.get("seed", 0))
        real = (
            loaded["pieces"] if "folder" in loaded else loaded["splits"][str(args.get("reference", "test"))]
        )
        samples = [roll[: len(real[i % len(real)])] for i, roll in enumerate(samples)]
        lengths = [len(r) for r in samples]
        longest = max(lengths)
        if "folder" in loaded:
            reference = [roll[:longest] for roll in loaded["pieces"]]
            first, second = _halves(reference, seed) if len(reference) >= 4 else (None, None)
            sets = Sets(
                samples,
                reference,
                first,
                music.floor_rolls(music.key_frequencies(reference), lengths, seed),
                reference,
                {
                    "reference": f"{len(reference)} pieces of {loaded['folder']} (cut to {longest} frames; each "
                    "sample cut to a piece's length)",
                    "ceiling": "half of reference_dir's pieces against the other half",
                    "floor": "keys drawn independently frame by frame with reference_dir's key frequencies",
                },
                ceiling_against=second,
            )
            if first is None:
                sets.notes.append("no ceiling: reference_dir has fewer than 4 pieces to halve")
            return sets
        splits, name = loaded["splits"], str(args.get("reference", "test"))
        reference = [roll[:longest] for roll in splits[name]]
        ceiling = [roll[:longest] for roll in splits[CEILING_OF[name]]]
        self.training = splits["train"]
        return Sets(
            samples,
            reference,
            ceiling if len(ceiling) >= 2 else None,
            music.floor_rolls(music.key_frequencies(splits["train"]), lengths, seed),
            splits["train"],
            {
                "reference": f"the {name} split of {loaded['where']} ({len(reference)} pieces, cut to {longest} "
                "frames; each sample cut to a piece's length)",
                "ceiling": f"the {CEILING_OF[name]} split ({len(ceiling)} pieces) against the {name} split",
                "floor": "keys drawn independently frame by frame with the training split's key frequencies",
            },
        )

    def features_of(self, named: dict[str, list]) -> dict[str, dict[str, np.ndarray]]:
        return {name: music.set_features(values, self.bar_frames) for name, values in named.items()}

    def extras(self, named: dict[str, list]) -> dict:
        """Yang & Lerch's pitch-class transition matrices: each set's mean, and its L1 distance to the
        reference's."""
        means = {name: music.mean_transitions(values) for name, values in named.items()}
        reference = means.get("reference")
        out = {
            "pitch_class_transitions": {
                name: {
                    "mean": matrix.round(5).tolist(),
                    "l1_to_reference": float(np.abs(matrix - reference).sum()),
                }
                for name, matrix in means.items()
            }
        }
        if self.training is not None:
            out["memorisation"] = note_memorisation(music.roll_note_symbols, self.training, named)
        return out


def note_memorisation(symbols, training: list, named: dict[str, list]) -> dict:
    """Copying of notes (pitch and onset interval, `music.note_symbols`) from the training pieces, per set:
    the longest run found verbatim in one training piece and the share of NOTE_WINDOW-note windows found."""
    table = memorisation_table(
        [symbols(piece) for piece in training],
        {name: [symbols(piece) for piece in values] for name, values in named.items()},
        music.NOTE_WINDOW,
    )
    return {"window": music.NOTE_WINDOW, "unit": "notes", "sets": table}


# ---------------------------------------------------------------------------------------------------------
# Lyrics: texts, the training split behind the memorisation index


SAMPLE_HEADER = re.compile(r"^=== sample (\d+)(?: \((.*)\))? ===$", re.M)


def parse_samples_txt(text: str) -> tuple[list[str], list[str] | None]:
    """The texts (and artists, when given) of a samples.txt as sample.py writes it (`TextSamples.__str__`)."""
    headers = list(SAMPLE_HEADER.finditer(text))
    texts, artists = [], []
    for i, header in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[header.end() + 1 : end]
        body = body[:-2] if i + 1 < len(headers) and body.endswith("\n\n") else body.removesuffix("\n")
        texts.append(body)
        artists.append(header.group(2))
    return texts, artists if artists and all(a is not None for a in artists) else None


class LyricsKind:
    """Character models of lyrics: samples as texts, the features of `lyrics` (memorisation included)."""

    features = lyrics.FEATURES
    descriptions = lyrics.DESCRIPTIONS
    folder_files = "samples.txt"
    telling = {"longest_copy": "max", "distinct_2": "mean", "rhyme_rate": "mean", "repeated_lines": "mean"}

    def __init__(self, model) -> None:
        self.model = model
        self.artists: list[str] | None = None
        self.training: list[str] = []
        self.reference_songs: list[tuple[str, str]] = []  # (text, artist) of the reference split

    def drawn(self, samples) -> list[str]:
        self.artists = samples.artists
        return list(samples.texts)

    def draw_in_training(self, module, num_samples: int, length: int, temperature: float, generator) -> list:
        """Texts drawn by a LightningModule during training; a conditional model's cycle through its artists."""
        artists = None
        if module.conditional:
            artists = [module.artists[i % len(module.artists)] for i in range(num_samples)]
        return module.sample(num_samples, length, temperature, artists=artists, generator=generator)

    def read_folder(self, folder: Path) -> list[str]:
        path = folder / "samples.txt" if folder.is_dir() else folder
        if not path.is_file():
            raise UserError(f"no samples.txt in {folder}: give the out_dir of sample.py for a lyrics model")
        texts, self.artists = parse_samples_txt(path.read_text(encoding="utf-8", errors="replace"))
        if not texts:
            raise UserError(f"{path} holds no samples (no '=== sample N ===' line): write it with sample.py")
        return texts

    def load_reference(self, args) -> dict:
        """The songs of the model's data, split as its training run split them."""
        from lm_music.data.lyrics import filter_artists, read_lyrics_csv, split_indices

        if args.get("reference_dir"):
            raise UserError("reference_dir= is a folder of MIDI files, for music: lyrics take data.path=CSV")
        data = data_settings(self.model.checkpoint, dict(args.get("data") or {}), " (the lyrics CSV)")
        columns = data.get("text_column", "text"), data.get("artist_column", "artist")
        songs = read_lyrics_csv(data["path"], *columns)
        songs = filter_artists(songs, data.get("artists"), int(data.get("min_songs", 0)), data.get("others"))
        known = self.model.sampler.artists
        if known and songs["artist"].isin(known).any():
            songs = songs[songs["artist"].isin(known)].reset_index(drop=True)
        fractions = float(data.get("val_fraction", 0.05)), float(data.get("test_fraction", 0.05))
        split = split_indices(len(songs), *fractions, int(data.get("seed", 0)))
        texts, authors = songs["text"].tolist(), songs["artist"].tolist()
        splits = {
            name: [texts[i] for i in split[key]] for name, key in zip(SPLIT_NAMES, ("train", "val", "test"))
        }
        name = str(args.get("reference", "test"))
        check_reference(len(splits[name]), f"the {name} split of {data['path']}")
        self.training = splits["train"]
        reference = dict(zip(SPLIT_NAMES, ("train", "val", "test")))[name]
        self.reference_songs = [(texts[i], authors[i]) for i in split[reference]]
        return {"splits": splits, "where": data["path"]}

    def sets(self, samples: list, loaded: dict, args) -> Sets:
        splits, name = loaded["splits"], str(args.get("reference", "test"))
        longest = max(len(t) for t in samples)
        # real songs cut to the samples' length, so length-sensitive features (distinct-n) compare alike
        reference = [t[:longest] for t in splits[name]]
        ceiling = [t[:longest] for t in splits[CEILING_OF[name]]]
        chars, frequencies = lyrics.char_frequencies(splits["train"])
        return Sets(
            samples,
            reference,
            ceiling if len(ceiling) >= 2 else None,
            lyrics.floor_texts(chars, frequencies, [len(t) for t in samples], int(args.get("seed", 0))),
            splits["train"],
            {
                "reference": f"the {name} split of {loaded['where']} ({len(reference)} songs, cut to {longest} "
                "characters)",
                "ceiling": f"the {CEILING_OF[name]} split ({len(ceiling)} songs) against the {name} split",
                "floor": "characters drawn independently with the training split's unigram frequencies",
            },
        )

    def features_of(self, named: dict[str, list]) -> dict[str, dict[str, np.ndarray]]:
        """All sets at once: one memorisation index over the training split for every text."""
        everything = [t for values in named.values() for t in values]
        combined = lyrics.set_features(everything, self.training)
        out, start = {}, 0
        for name, values in named.items():
            out[name] = {k: v[start : start + len(values)] for k, v in combined.items()}
            start += len(values)
        return out

    def extras(self, named: dict[str, list]) -> dict:
        """A conditional model's artist identification: of the reference songs (whole, their true artist
        known), and of the samples (the artist asked for)."""
        sampler = self.model.sampler
        if not getattr(sampler, "conditional", False):
            return {}
        out = {}
        known = [(text, artist) for text, artist in self.reference_songs if artist in sampler.artists]
        if known:
            texts, artists = zip(*known)
            out["reference_artists"] = lyrics.identification_accuracy(sampler, list(texts), list(artists))
        if self.artists:
            out["artists"] = lyrics.artist_identification(sampler, named["samples"], self.artists)
        return out


# ---------------------------------------------------------------------------------------------------------
# Event tokens: pieces as token ids of the model's tokenizer, decoded to measure them


class EventKind:
    """Event-token models: samples and real pieces as ids of the model's MidiTok tokenizer (a reference cut to
    the samples' number of tokens compares alike), the roll features on a 16th-note grid and the expressive
    ones of `lm_music.evaluation.events` (velocity spread, off-grid onsets, grammar errors)."""

    features = event_features.FEATURES
    descriptions = event_features.DESCRIPTIONS
    folder_files = "*.mid / *.midi"
    telling = {
        "velocity_spread": "mean",
        "off_grid_onsets": "mean",
        "grammar_errors": "mean",
        "polyphony": "mean",
    }

    def __init__(self, model) -> None:
        self.model = model
        self.codec = model.sampler.codec
        self.training = None  # the training pieces' ids: what copying is measured against

    def drawn(self, samples) -> list[np.ndarray]:
        return [np.asarray(ids, dtype=np.int32) for ids in samples.ids]

    def draw_in_training(self, module, num_samples: int, length: int, temperature: float, generator) -> list:
        """Ids drawn by a LightningModule during training (`callbacks.SampleQuality`)."""
        rows = module.sample(num_samples, length, temperature, generator=generator)
        return [np.asarray(ids, dtype=np.int32) for ids in rows]

    def read_folder(self, folder: Path) -> list[np.ndarray]:
        """The MIDI files of a folder (sample.py's output, a reference_dir: every file) as the model's ids,
        tokenized again (their grammar is then the tokenizer's own)."""
        from lm_music.events import read_notes
        from lm_music.midi_folder import read_folder

        scores = read_folder(folder, lambda file: read_notes(file, self.codec.tracks), by_split=False)[0]
        return [self.codec.encode(score) for score in scores.values()]

    def load_reference(self, args) -> dict:
        """The real pieces: reference_dir's, or the model's data folder tokenized with the model's tokenizer."""
        if args.get("reference_dir"):
            folder = Path(str(args.reference_dir)).expanduser()
            pieces = self.read_folder(folder)
            check_reference(len(pieces), f"reference_dir {folder}")
            return {"splits": {name: pieces for name in SPLIT_NAMES}, "where": str(folder)}
        from lm_music.data.events import EventDataModule

        data = data_settings(
            self.model.checkpoint, dict(args.get("data") or {}), " or reference_dir=MIDI_FOLDER"
        )
        keys = ("valid_fraction", "test_fraction", "seed", "cache_dir")
        module = EventDataModule(str(data["path"]), **{k: data[k] for k in keys if data.get(k) is not None})
        module.adopt(self.model.checkpoint["hyper_parameters"])
        module.setup()
        splits = {
            name: [np.asarray(ids) for ids in module.datasets[stage].sequences]
            for name, stage in zip(SPLIT_NAMES, ("train", "val", "test"))
        }
        name = str(args.get("reference", "test"))
        check_reference(len(splits[name]), f"the {name} split of {data['path']}")
        return {"splits": splits, "where": data["path"]}

    def sets(self, samples: list, loaded: dict, args) -> Sets:
        splits, name = loaded["splits"], str(args.get("reference", "test"))
        longest = max(len(ids) for ids in samples)
        reference = [ids[:longest] for ids in splits[name]]
        ceiling = [ids[:longest] for ids in splits[CEILING_OF[name]]]
        same = splits[name] is splits[CEILING_OF[name]]  # reference_dir: one set of pieces
        lengths = [len(ids) for ids in samples]
        self.training = None if same else splits["train"]
        sets = Sets(
            samples,
            reference,
            None if same or len(ceiling) < 2 else ceiling,
            event_features.floor_pieces(splits["train"], lengths, int(args.get("seed", 0))),
            splits["train"],
            {
                "reference": f"the {name} split of {loaded['where']} ({len(reference)} pieces, cut to {longest} "
                "tokens)",
                "ceiling": f"the {CEILING_OF[name]} split against the {name} split",
                "floor": "tokens drawn independently with the training pieces' token frequencies",
            },
        )
        if same:
            sets.notes.append("no ceiling: reference_dir is one set of pieces")
        return sets

    def features_of(self, named: dict[str, list]) -> dict[str, dict[str, np.ndarray]]:
        return {name: event_features.set_features(self.codec, values) for name, values in named.items()}

    def extras(self, named: dict[str, list]) -> dict:
        if self.training is None:
            return {}
        symbols = partial(event_features.note_symbols, self.codec)
        return {"memorisation": note_memorisation(symbols, self.training, named)}
