"""Event-token data: any MIDI folder tokenized once by a MidiTok tokenizer, cached, batched as token ids.

A folder with train/ and valid/ (and test/) subfolders is split by them, any other by a seeded split of its
pieces. Each file is read by symusic (its pitched tracks merged onto one piano unless `tracks=programs`),
tokenized with the start and end ids around it; files that cannot be read or have no notes are skipped with
one warning naming each. With `bpe_vocab_size`, MidiTok trains BPE on the training pieces first. The ids,
the tokenizer (its merges too) and each piece's notes and seconds are cached under a name hashed from the
folder's files and the settings, so a second run reads no MIDI. `augment_transpose` transposes training
windows at random, as the piano rolls do. `controls` and `infill_share` train a model to obey bar attribute
controls and to infill bars (`infill.py`); validation and test pieces are scored without controls, as plain
continuations, so their bits per note compare with any other model's.
"""

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lm_music.data.batching import SequenceDataModule, SequenceDataset, check_transpose, windows
from lm_music.data.midi_folder import (
    SPLITS,
    concatenated,
    fingerprint,
    npz_cache,
    read_folder,
    split_concatenated,
    split_pieces,
)
from lm_music.errors import UserError
from lm_music.io import atomic_path
from lm_music.tasks.events.codec import (
    EventCodec,
    load_tokenizer,
    make_tokenizer,
    note_count,
    read_notes,
    seconds,
    tokenizer_params,
    trim_lead_in,
    with_controls,
)
from lm_music.tasks.events.infill import training_examples

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the way tokens are made changes, so old cache files are not reused


@dataclass
class Piece:
    """One tokenized file: its ids (start and end ids included), notes on the 88 keys, seconds of music."""

    name: str
    ids: np.ndarray
    notes: int
    seconds: float


@dataclass
class Tokenized:
    """A folder's pieces by split (train, valid, test), the tokenizer that made them, the files skipped."""

    splits: dict[str, list[Piece]]
    tokenizer: dict
    skipped: list[tuple[str, str]]


def _train_bpe(tokenizer, scores: list, vocab_size: int) -> None:
    """MidiTok's BPE training on the training pieces as they are tokenized here (tracks merged or not)."""
    if vocab_size <= len(tokenizer):
        raise UserError(
            f"data.bpe_vocab_size={vocab_size} must be larger than the base vocabulary ({len(tokenizer)} "
            "tokens), or null for no BPE"
        )
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i, score in enumerate(scores):
            files.append(Path(folder) / f"{i:05d}.mid")
            score.dump_midi(str(files[-1]))
        tokenizer.train(vocab_size=vocab_size, model="BPE", files_paths=files)


def tokenize_folder(
    path: Path,
    settings: dict,
    seed: int,
    valid_fraction: float,
    test_fraction: float,
    adopted: dict | None,
    trim: bool = False,
) -> Tokenized:
    """Read, split and tokenize a folder (`settings`: those of `events.make_tokenizer`, and
    `bpe_vocab_size`); with `adopted`, a checkpoint's tokenizer instead of a new one (with the settings'
    controls and infilling marks added); `trim`: each piece from its first bar with a note
    (`codec.trim_lead_in`). With controls, every bar's control tokens are in the ids."""
    tracks = (
        settings["tracks"] if adopted is None else EventCodec(adopted).tracks
    )  # as the model read its data

    def read(file):
        score = read_notes(file, tracks)
        return trim_lead_in(score) if trim and score is not None else score

    scores, skipped = read_folder(path, read)
    names = split_pieces(path, {name: name for name in scores}, seed, valid_fraction, test_fraction)
    controls, infilling = settings.get("controls", ()), settings.get("infilling", False)
    if adopted is not None:
        tokenizer = load_tokenizer(with_controls(adopted, controls, infilling))
    else:
        tokenizer = make_tokenizer(**{k: v for k, v in settings.items() if k != "bpe_vocab_size"})
        if settings.get("bpe_vocab_size"):
            _train_bpe(tokenizer, [scores[n] for n in names["train"]], int(settings["bpe_vocab_size"]))
    codec = EventCodec.of(tokenizer)
    splits = {
        split: [
            Piece(
                n, codec.encode(scores[n], controls=bool(controls)), note_count(scores[n]), seconds(scores[n])
            )
            for n in chosen
        ]
        for split, chosen in names.items()
    }
    log.info(
        "tokenized %d MIDI files of %s with %s: skipped %d",
        sum(len(v) for v in splits.values()),
        path,
        codec.describe(),
        len(skipped),
    )
    return Tokenized(splits, codec.params, skipped)


def _save_cache(path: Path, data: Tokenized, key_text: str) -> None:
    arrays = {
        "key": np.array(key_text),
        "tokenizer": np.array(json.dumps(data.tokenizer)),
        "skipped": np.array(json.dumps(data.skipped)),
    }
    for split, pieces in data.splits.items():
        arrays[f"{split}_ids"], arrays[f"{split}_lengths"] = concatenated(
            [p.ids for p in pieces], np.zeros(0, np.int32)
        )
        arrays[f"{split}_notes"] = np.array([p.notes for p in pieces], dtype=np.int64)
        arrays[f"{split}_seconds"] = np.array([p.seconds for p in pieces], dtype=np.float64)
        arrays[f"{split}_names"] = np.array([p.name for p in pieces], dtype=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _load_cache(path: Path) -> Tokenized:
    splits = {}
    with np.load(path, allow_pickle=False) as data:
        for split in SPLITS:
            pieces = split_concatenated(data[f"{split}_ids"], data[f"{split}_lengths"], split)
            splits[split] = [
                Piece(str(n), p, int(k), float(s))
                for n, p, k, s in zip(
                    data[f"{split}_names"], pieces, data[f"{split}_notes"], data[f"{split}_seconds"]
                )
            ]
        tokenizer = json.loads(str(data["tokenizer"]))
        skipped = [tuple(s) for s in json.loads(str(data["skipped"]))]
    return Tokenized(splits, tokenizer, skipped)


def _load_cache_naming_skipped(path: Path) -> Tokenized:
    """A cache hit repeats the warning for each file that was skipped when the folder was read."""
    data = _load_cache(path)
    for file, reason in data.skipped:
        log.warning("skipping MIDI file %s (%s)", file, reason)
    return data


def cached_tokens(cache_dir: Path, key: dict, build) -> Tokenized:
    """`build()`'s tokens through `midi_folder.npz_cache`: ids, the tokenizer and the skipped files."""
    return npz_cache(cache_dir, "events", key, build, _save_cache, _load_cache_naming_skipped)


class EventDataModule(SequenceDataModule):
    """A MIDI folder as MidiTok token ids, tokenized once (cached), batched by length, padded and masked.

    Training pieces are cut into windows of `max_len` predicted tokens; validation and test pieces are
    scored whole (`eval_max_len: null`; the Transformer reads them through its sliding window), so their
    metrics are those of whole pieces. `counts` holds each split's predicted tokens, notes and seconds, the
    denominators of the module's bits per note and nats per second.
    """

    def __init__(
        self,
        path: str,
        tokenizer: str = "REMI",
        num_velocities: int = 32,
        beat_res: dict[str, int] | None = None,
        use_sustain_pedals: bool = True,
        use_tempos: bool = True,
        tracks: str = "merge",
        bpe_vocab_size: int | None = None,
        max_len: int | None = 1024,
        eval_max_len: int | None = None,
        batch_size: int = 16,
        seed: int = 0,
        valid_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_workers: int = 0,
        cache_dir: str = "data/cache",
        augment_transpose: int = 0,
        trim_lead_in: bool = False,
        controls: list[str] | tuple = (),
        infill_share: float = 0.0,
        infill_max_bars: int = 8,
    ) -> None:
        super().__init__(batch_size, seed, num_workers)
        self.augment_transpose = check_transpose(augment_transpose)
        for name, value in (("max_len", max_len), ("eval_max_len", eval_max_len)):
            if value is not None and value < 1:
                raise UserError(f"data.{name} must be at least 1 (or null for whole pieces), got {value}")
        self.settings = {
            "tokenizer": tokenizer,
            "num_velocities": num_velocities,
            "beat_res": dict(beat_res or {"0_4": 8, "4_12": 4}),
            "use_sustain_pedals": use_sustain_pedals,
            "use_tempos": use_tempos,
            "tracks": tracks,
            "bpe_vocab_size": bpe_vocab_size,
        }
        if not 0 <= infill_share <= 1:
            raise UserError(f"data.infill_share must be 0 (no infilling) to 1, got {infill_share}")
        if infill_max_bars < 1:
            raise UserError(f"data.infill_max_bars must be at least 1, got {infill_max_bars}")
        if (controls or infill_share) and bpe_vocab_size:
            raise UserError(
                "data.controls and data.infill_share need the base tokens: set data.bpe_vocab_size=null"
            )
        if controls or infill_share:  # only then, so that the caches of other runs keep their keys
            self.settings |= {"controls": list(controls), "infilling": bool(infill_share)}
        self.infill_share, self.infill_max_bars = infill_share, infill_max_bars
        make_tokenizer(**{k: v for k, v in self.settings.items() if k != "bpe_vocab_size"})  # one line, now
        self.path, self.trim_lead_in = path, trim_lead_in
        self.max_len, self.eval_max_len = max_len, eval_max_len
        self.valid_fraction, self.test_fraction = valid_fraction, test_fraction
        self.cache_dir = Path(cache_dir)
        self.adopted: dict | None = None
        self.codec: EventCodec | None = None
        self.transposition: torch.Tensor | None = None
        self.counts: dict[str, dict[str, float]] = {}
        self.names: dict[str, list[str]] = {}

    def adopt(self, hparams: dict) -> None:
        """Tokenize with a checkpoint's tokenizer (its BPE merges too) instead of making one."""
        if "tokenizer" not in hparams:
            raise UserError("the checkpoint carries no MidiTok tokenizer: it is not an event-token model")
        self.adopted = hparams["tokenizer"]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        path = Path(self.path).expanduser()
        if not path.is_dir():
            raise UserError(
                f"MIDI folder {path} does not exist or is not a folder: set data.path to a folder of .mid files"
            )
        key = {
            "source": "events",
            **fingerprint(path),
            **self.settings,
            "seed": self.seed,
            "fractions": [self.valid_fraction, self.test_fraction],
            "adopted": hashlib.sha256(json.dumps(self.adopted, sort_keys=True).encode()).hexdigest()
            if self.adopted
            else None,
            "version": CACHE_VERSION,
        } | ({"trim_lead_in": True} if self.trim_lead_in else {})  # earlier caches keep their keys
        data = cached_tokens(
            self.cache_dir,
            key,
            lambda: tokenize_folder(
                path,
                self.settings,
                self.seed,
                self.valid_fraction,
                self.test_fraction,
                self.adopted,
                self.trim_lead_in,
            ),
        )
        self.codec = EventCodec(data.tokenizer)
        if self.augment_transpose:
            self.transposition = self.codec.transposition(self.augment_transpose)
        controls = np.array(sorted(self.codec.control_ids), dtype=np.int32)
        for split, pieces in data.splits.items():
            if split != "train" and len(controls):  # scored as plain continuations
                pieces = [replace(p, ids=p.ids[~np.isin(p.ids, controls)]) for p in pieces]
            max_len = self.max_len if split == "train" else self.eval_max_len
            cut = [w for p in pieces for w in windows(p.ids, max_len)]
            if split == "train" and (len(controls) or self.codec.infilling):
                cut = training_examples(cut, self.codec, self.infill_share, self.infill_max_bars, self.seed)
            self.datasets[split] = SequenceDataset(cut)
            self.names[split] = [p.name for p in pieces]
            self.counts[split] = {
                "tokens": float(sum(len(p.ids) - 1 for p in pieces)),
                "notes": float(sum(p.notes for p in pieces)),
                "seconds": float(sum(p.seconds for p in pieces)),
            }
        log.info(
            "events: %s, vocabulary %d; pieces train/valid/test %s, tokens %s",
            self.codec.describe(),
            len(self.codec),
            "/".join(str(len(self.names[s])) for s in SPLITS),
            "/".join(str(int(self.counts[s]["tokens"])) for s in SPLITS),
        )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Training batches only: each window transposed by a random number of semitones (data augmentation,
        as in Music Transformer), drawn among the shifts that keep every one of its notes on the 88 keys."""
        generator = self.augmentation_generator()
        if self.transposition is None or generator is None:
            return batch
        ids = batch["sequences"]
        moved = self.transposition.to(ids.device)[:, ids]  # (shifts, B, T); padding stays padding
        fits = (moved >= 0).all(-1).T.float().cpu()  # (B, shifts); no shift always fits
        rows = torch.multinomial(fits, 1, generator=generator).squeeze(1).to(ids.device)
        batch["sequences"] = moved[rows, torch.arange(len(ids), device=ids.device)]
        return batch

    def model_kwargs(self) -> dict:
        """The tokenizer's full parameters, saved in the checkpoint, so sampling needs nothing else."""
        return {"tokenizer": tokenizer_params(self.codec.tokenizer)}
