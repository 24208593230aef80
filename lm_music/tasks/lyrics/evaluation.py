"""How the evaluator judges lyrics models: samples as texts, the features of `features` (memorisation
included), a conditional model's artist identification."""

import re
from pathlib import Path

import numpy as np

import lm_music.tasks.lyrics.features as lyrics_features
from lm_music.errors import UserError
from lm_music.evaluation.compare import check_reference
from lm_music.evaluation.sets import CEILING_OF, SPLIT_NAMES, Sets, data_settings

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


class LyricsEvaluation:
    """Character models of lyrics: samples as texts, the features of `features` (memorisation included)."""

    features = lyrics_features.FEATURES
    descriptions = lyrics_features.DESCRIPTIONS
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
        from lm_music.tasks.lyrics.datamodule import filter_artists, read_lyrics_csv, split_indices

        if args.get("reference_dir"):
            raise UserError("reference_dir= is a folder of MIDI files, for music: lyrics take data.path=CSV")
        data = data_settings(self.model.checkpoint, dict(args.get("data") or {}), " (the lyrics CSV)")
        columns = data.get("text_column", "text"), data.get("artist_column", "artist")
        songs = read_lyrics_csv(data["path"], *columns)
        songs = filter_artists(songs, data.get("artists"), int(data.get("min_songs", 0)), data.get("others"))
        known = self.model.sampler.artists
        if known and songs["artist"].isin(known).any():
            songs = songs[songs["artist"].isin(known)].reset_index(drop=True)
        fractions = float(data.get("valid_fraction", 0.05)), float(data.get("test_fraction", 0.05))
        split = split_indices(len(songs), *fractions, int(data.get("seed", 0)))
        texts, authors = songs["text"].tolist(), songs["artist"].tolist()
        splits = {name: [texts[i] for i in split[name]] for name in SPLIT_NAMES}
        name = str(args.get("reference", "test"))
        check_reference(len(splits[name]), f"the {name} split of {data['path']}")
        self.training = splits["train"]
        self.reference_songs = [(texts[i], authors[i]) for i in split[name]]
        return {"splits": splits, "where": data["path"]}

    def sets(self, samples: list, loaded: dict, args) -> Sets:
        splits, name = loaded["splits"], str(args.get("reference", "test"))
        longest = max(len(t) for t in samples)
        # real songs cut to the samples' length, so length-sensitive features (distinct-n) compare alike
        reference = [t[:longest] for t in splits[name]]
        ceiling = [t[:longest] for t in splits[CEILING_OF[name]]]
        chars, frequencies = lyrics_features.char_frequencies(splits["train"])
        return Sets(
            samples,
            reference,
            ceiling if len(ceiling) >= 2 else None,
            lyrics_features.floor_texts(
                chars, frequencies, [len(t) for t in samples], int(args.get("seed", 0))
            ),
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
        combined = lyrics_features.set_features(everything, self.training)
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
            out["reference_artists"] = lyrics_features.identification_accuracy(
                sampler, list(texts), list(artists)
            )
        if self.artists:
            out["artists"] = lyrics_features.artist_identification(sampler, named["samples"], self.artists)
        return out
