"""What every task's evaluation shares: the sets it scores, where the reference comes from, copying of notes.

Each task's `evaluation.py` (its `Task.evaluation`) turns drawn samples or a folder into values (rolls,
texts, ids), builds the reference split, the ceiling (another real split against it) and the floor
(independent draws from the training set's unigram statistics), and computes the features of all the sets at
once; the evaluator never asks which task it has.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lm_music import run_folder
from lm_music.errors import UserError
from lm_music.evaluation import roll_features
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
    a `.ckpt`'s run folder's (`run_folder.data_settings`); {} for a .ckpt outside its run. Keys of the old
    layout are read under today's names."""
    if checkpoint.get("exported"):
        return run_folder.upgraded_data(checkpoint["exported"].get("data") or {})
    path = Path(checkpoint.get("path", ""))
    return run_folder.data_settings(run_folder.run_of(path)) if path.is_file() else {}


def data_settings(checkpoint: dict, overrides: dict, elsewhere: str = "") -> dict:
    """The run's data settings with the command's `data.*` over them; a clear line when there are none
    (`elsewhere`: the other way to give a reference, for the message)."""
    data = {**run_data_settings(checkpoint), **run_folder.upgraded_data(overrides)}
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


def halves(values: list, seed: int) -> tuple[list, list]:
    order = np.random.default_rng(seed).permutation(len(values))
    half = len(values) // 2
    return [values[i] for i in sorted(order[:half])], [values[i] for i in sorted(order[half:])]


def note_memorisation(symbols, training: list, named: dict[str, list]) -> dict:
    """Copying of notes (pitch and onset interval, `roll_features.roll_note_symbols`) from the training pieces, per set:
    the longest run found verbatim in one training piece and the share of NOTE_WINDOW-note windows found."""
    table = memorisation_table(
        [symbols(piece) for piece in training],
        {name: [symbols(piece) for piece in values] for name, values in named.items()},
        roll_features.NOTE_WINDOW,
    )
    return {"window": roll_features.NOTE_WINDOW, "unit": "notes", "sets": table}
