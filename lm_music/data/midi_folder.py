"""A folder of MIDI files, read the one way every task reads one (piano rolls, event tokens, the evaluator's
samples and references): its files, the ones skipped and why (each named once in the log, so one bad file
never stops a dataset), the split rule (train/ valid/ test/ subfolders, else a seeded split by piece), and the
fingerprint that keys a cache of what was read. What a file becomes (a roll, a score) is the caller's `read`.
"""

import hashlib
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from lm_music.errors import UserError
from lm_music.midi import UnreadableMidi

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi")
NO_NOTES = "no notes on the 88 keys (drums and notes outside 21..108 are dropped)"

Piece = TypeVar("Piece")
Built = TypeVar("Built")


def midi_files(folder: Path) -> list[Path]:
    """Every .mid / .midi file under the folder (any case), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def split_subfolders(path: Path) -> list[str]:
    """The split subfolders the folder has: none, or train/ and valid/ (test/ optional); one line otherwise."""
    subfolders = [split for split in SPLITS if (path / split).is_dir()]
    if subfolders and not {"train", "valid"} <= set(subfolders):
        raise UserError(
            f"{path} has {'/, '.join(subfolders)}/ but not both train/ and valid/: add the missing one, "
            f"or move the files out of the split subfolders to get a seeded split"
        )
    return subfolders


def read_folder(
    path: Path, read: Callable[[Path], Piece | None], by_split: bool = True
) -> tuple[dict[str, Piece], list[tuple[str, str]]]:
    """Each MIDI file under `path` as `read` makes it (None: the file has no notes), by its name relative to
    `path`, and (file, reason) of each file skipped: unreadable (`UnreadableMidi`) or note-less. With
    `by_split` and split subfolders, files outside them are left unread. No piece left is one line."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"MIDI folder {path} does not exist or is not a folder")
    files = midi_files(path)
    if by_split and split_subfolders(path):
        inside = [f for f in files if f.relative_to(path).parts[0] in SPLITS]
        if len(inside) < len(files):
            log.warning(
                "ignoring %d MIDI files outside train/ valid/ test/ in %s", len(files) - len(inside), path
            )
        files = inside
    pieces, skipped = {}, []
    for i, file in enumerate(files, 1):
        try:
            piece = read(file)
        except UnreadableMidi as error:
            log.warning("skipping unreadable MIDI file %s (%s)", file, error.reason)
            skipped.append((str(file), error.reason))
            continue
        if piece is None:
            log.warning("skipping MIDI file %s: %s", file, NO_NOTES)
            skipped.append((str(file), NO_NOTES))
            continue
        pieces[file.relative_to(path).as_posix()] = piece
        if i % 50 == 0:
            log.info("read %d/%d MIDI files from %s", i, len(files), path)
    if not pieces:
        first = f"; first: {skipped[0][0]} ({skipped[0][1]})" if skipped else ""
        raise UserError(
            f"no readable MIDI file with notes in {path}: found {len(files)} .mid/.midi files, "
            f"skipped {len(skipped)}{first}"
        )
    return pieces, skipped


def _split_size(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def seeded_split(
    pieces: dict[str, Piece], seed: int, valid_fraction: float, test_fraction: float
) -> dict[str, list[Piece]]:
    """Split pieces (not frames) at random, reproducibly: the same seed and names give the same split."""
    names = sorted(pieces)
    n_valid, n_test = _split_size(len(names), valid_fraction), _split_size(len(names), test_fraction)
    if n_valid + n_test >= len(names):
        raise UserError(
            f"only {len(names)} usable pieces: too few for a train/valid/test split of "
            f"{valid_fraction}/{test_fraction}; add pieces or lower valid_fraction and test_fraction"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    chosen = {
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
        "train": order[n_valid + n_test :],
    }
    return {split: [pieces[names[i]] for i in sorted(chosen[split])] for split in SPLITS}


def split_pieces(
    path: Path, pieces: dict[str, Piece], seed: int, valid_fraction: float, test_fraction: float
) -> dict[str, list[Piece]]:
    """The pieces of `read_folder` by split: its subfolders' when it has them, else seeded by piece."""
    if not split_subfolders(path):
        return seeded_split(pieces, seed, valid_fraction, test_fraction)
    splits = {
        split: [p for name, p in sorted(pieces.items()) if name.split("/")[0] == split] for split in SPLITS
    }
    for split in ("train", "valid"):
        if not splits[split]:
            raise UserError(f"{path / split} has no readable MIDI file with notes: it needs at least one")
    return splits


def fingerprint(path: Path) -> dict:
    """What changes when the source changes: size and mtime of the file, or of every file under a folder."""
    if path.is_file():
        stat = path.stat()
        return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    listing = "\n".join(
        f"{p.relative_to(path).as_posix()}\t{p.stat().st_size}\t{p.stat().st_mtime_ns}"
        for p in sorted(path.rglob("*"))
        if p.is_file()
    )
    return {"path": str(path.resolve()), "files": hashlib.sha256(listing.encode()).hexdigest()}


def concatenated(pieces: list[np.ndarray], empty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pieces of different lengths as a cache stores them: their concatenation (`empty` when there are none)
    and their lengths."""
    values = np.concatenate(pieces) if pieces else empty
    return values, np.array([len(piece) for piece in pieces], dtype=np.int64)


def split_concatenated(values: np.ndarray, lengths: np.ndarray, what: str) -> list[np.ndarray]:
    """The pieces back from `concatenated`'s two arrays; a ValueError (`npz_cache` then rebuilds the file)
    where they disagree."""
    if len(values) != lengths.sum():
        raise ValueError(f"{what} holds {len(values)} rows but its lengths add up to {lengths.sum()}")
    return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []


def npz_cache(
    cache_dir: str | Path,
    kind: str,
    key: dict,
    build: Callable[[], Built],
    save: Callable[[Path, Built, str], None],
    load: Callable[[Path], Built],
) -> Built:
    """`build()`, kept in `cache_dir/KIND-HASH.npz` (the hash of `key`: the source's fingerprint and the
    settings), so a second run reads no MIDI. `save(path, built, key_text)` writes the file under a temporary
    name and renames it (an interrupted write is never read); a file `load(path)` cannot read is rebuilt."""
    key_text = json.dumps(key, sort_keys=True, default=str)
    path = Path(cache_dir) / f"{kind}-{hashlib.sha256(key_text.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        try:
            built = load(path)
            log.info("loaded %s from cache %s", kind, path)
            return built
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning(
                "cache file %s cannot be loaded (%s: %s): rebuilding it", path, type(error).__name__, error
            )
    built = build()
    save(path, built, key_text)
    log.info("cached %s in %s", kind, path)
    return built
