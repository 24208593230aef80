"""How the evaluator judges event-token models: samples and real pieces as ids of the model's tokenizer, the
roll and expressive features of `features`, copying of notes from the training pieces."""

from functools import partial
from pathlib import Path

import numpy as np

import lm_music.tasks.events.features as event_features
from lm_music.data.midi_folder import read_folder
from lm_music.evaluation.compare import check_reference
from lm_music.evaluation.sets import CEILING_OF, SPLIT_NAMES, Sets, data_settings, note_memorisation
from lm_music.tasks.events.codec import read_notes


class EventEvaluation:
    """Event-token models: samples and real pieces as ids of the model's MidiTok tokenizer (a reference cut to
    the samples' number of tokens compares alike), the roll features on a 16th-note grid and the expressive
    ones of `lm_music.tasks.events.features` (velocity spread, off-grid onsets, grammar errors)."""

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
        scores = read_folder(folder, lambda file: read_notes(file, self.codec.tracks), by_split=False)[0]
        return [self.codec.encode(score) for score in scores.values()]

    def load_reference(self, args) -> dict:
        """The real pieces: reference_dir's, or the model's data folder tokenized with the model's tokenizer."""
        if args.get("reference_dir"):
            folder = Path(str(args.reference_dir)).expanduser()
            pieces = self.read_folder(folder)
            check_reference(len(pieces), f"reference_dir {folder}")
            return {"splits": {name: pieces for name in SPLIT_NAMES}, "where": str(folder)}
        from lm_music.tasks.events.datamodule import EventDataModule

        data = data_settings(
            self.model.checkpoint, dict(args.get("data") or {}), " or reference_dir=MIDI_FOLDER"
        )
        keys = ("valid_fraction", "test_fraction", "seed", "cache_dir")
        module = EventDataModule(str(data["path"]), **{k: data[k] for k in keys if data.get(k) is not None})
        module.adopt(self.model.checkpoint["hyper_parameters"])
        module.setup()
        splits = {name: [np.asarray(ids) for ids in module.datasets[name].sequences] for name in SPLIT_NAMES}
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
