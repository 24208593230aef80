"""How the evaluator judges piano-roll models: samples as rolls, MIDI read onto the model's grid, the roll
features of `evaluation.roll_features`."""

from pathlib import Path

import numpy as np

from lm_music.evaluation import roll_features
from lm_music.evaluation.compare import check_reference
from lm_music.evaluation.sets import CEILING_OF, Sets, data_settings, halves, note_memorisation


class PianoRollEvaluation:
    """Piano-roll models: samples as rolls, MIDI read onto the model's grid, the features of `music`."""

    features = roll_features.FEATURES
    descriptions = roll_features.DESCRIPTIONS
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
        self.bar_frames = roll_features.bar_frames_of(**self.grid)
        self.training = None  # the training split's rolls: what copying is measured against

    def drawn(self, samples) -> list[np.ndarray]:
        return list(samples.rolls)

    def draw_in_training(self, module, num_samples: int, length: int, temperature: float, generator) -> list:
        """Rolls drawn by a LightningModule during training (`callbacks.SampleQuality`)."""
        return list(module.sample(num_samples, length, temperature, generator=generator).cpu().numpy())

    def read_folder(self, folder: Path) -> list[np.ndarray]:
        """The MIDI files of a folder (sample.py's output, a reference_dir: every file), on the model's grid."""
        from lm_music.data.midi_folder import read_folder
        from lm_music.midi import midi_to_roll

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
        from lm_music.tasks.pianoroll.datamodule import load_splits

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
            first, second = halves(reference, seed) if len(reference) >= 4 else (None, None)
            sets = Sets(
                samples,
                reference,
                first,
                roll_features.floor_rolls(roll_features.key_frequencies(reference), lengths, seed),
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
            roll_features.floor_rolls(roll_features.key_frequencies(splits["train"]), lengths, seed),
            splits["train"],
            {
                "reference": f"the {name} split of {loaded['where']} ({len(reference)} pieces, cut to {longest} "
                "frames; each sample cut to a piece's length)",
                "ceiling": f"the {CEILING_OF[name]} split ({len(ceiling)} pieces) against the {name} split",
                "floor": "keys drawn independently frame by frame with the training split's key frequencies",
            },
        )

    def features_of(self, named: dict[str, list]) -> dict[str, dict[str, np.ndarray]]:
        return {name: roll_features.set_features(values, self.bar_frames) for name, values in named.items()}

    def extras(self, named: dict[str, list]) -> dict:
        """Yang & Lerch's pitch-class transition matrices: each set's mean, and its L1 distance to the
        reference's."""
        means = {name: roll_features.mean_transitions(values) for name, values in named.items()}
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
            out["memorisation"] = note_memorisation(roll_features.roll_note_symbols, self.training, named)
        return out
