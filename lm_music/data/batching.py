"""What both data modules share: length-grouped batches and the pad-and-mask collate.

Sequences are padded and masked, never packed: packed LSTMs are many times slower on CPU and GPU
(pytorch#149194). Grouping sequences of similar length into a batch keeps the padding small.
"""

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lm_music.errors import UserError


class SequenceDataset(Dataset):
    """Sequences held as numpy arrays, with an optional integer label (the artist) for each."""

    def __init__(self, sequences: Sequence[np.ndarray], labels: Sequence[int] | None = None) -> None:
        self.sequences = list(sequences)
        self.labels = None if labels is None else list(labels)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.sequences[index], -1 if self.labels is None else self.labels[index]

    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of sequences of similar length, in a seeded order that changes with each epoch.

    Each epoch shuffles the sequences, sorts them by length inside windows of `batch_size * group_batches`
    sequences, cuts the windows into batches and shuffles the batches. Without shuffling the order is fixed
    (sorted by length). Under data parallelism each rank takes every `num_replicas`-th batch.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        group_batches: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.group_batches = group_batches
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.skip = 0  # batches of the next epoch to leave out (resuming an interrupted epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.lengths))
        window = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if self.num_replicas > 1 and self.shuffle:
            # Training: every rank must run the same number of steps, so repeat batches to fill the last round.
            per_rank = -(-len(batches) // self.num_replicas)
            batches = (batches * self.num_replicas)[: per_rank * self.num_replicas]
        # Evaluation: no repeats, so metrics pooled across ranks count every sequence exactly once.
        skip, self.skip = self.skip, 0
        for batch in batches[self.rank :: self.num_replicas][skip:]:
            yield batch.tolist()

    def __len__(self) -> int:
        num_batches = -(-len(self.lengths) // self.batch_size)
        if self.shuffle:
            return -(-num_batches // self.num_replicas)
        return len(range(self.rank, num_batches, self.num_replicas))


def padding_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of padded positions over an epoch of these batches."""
    lengths = np.asarray(lengths)
    real = padded = 0
    for batch in batches:
        batch_lengths = lengths[list(batch)]
        real += int(batch_lengths.sum())
        padded += int(batch_lengths.max()) * len(batch_lengths)
    return 1.0 - real / padded if padded else 0.0


def check_transpose(semitones: int) -> int:
    """`data.augment_transpose`, checked: 0 (off) to 12 semitones either way."""
    if not 0 <= semitones <= 12:
        raise UserError(f"data.augment_transpose must be 0 (off) to 12 semitones, got {semitones}")
    return semitones


def pad_collate(items: list[tuple[np.ndarray, int]], pad_value: int = 0) -> dict[str, torch.Tensor]:
    """Pad sequences to the longest in the batch; `lengths` says how much of each row is real."""
    sequences = [torch.from_numpy(np.asarray(seq)) for seq, _ in items]
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=pad_value)
    batch = {"sequences": padded, "lengths": lengths}
    if items[0][1] != -1:
        batch["labels"] = torch.tensor([label for _, label in items], dtype=torch.long)
    return batch


class RandomStateNeutralDataLoader(DataLoader):
    """A loader whose iterators leave torch's global random state alone.

    A DataLoader draws a base seed from torch's global generator for every new iterator. A run resumed
    mid-epoch creates iterators at other moments than an uninterrupted one, so its dropout stream would
    differ. (Giving the loader a generator of its own avoids the draw too, but made ddp_spawn children
    abort at exit now and then.)
    """

    def __iter__(self):
        state = torch.get_rng_state()
        iterator = super().__iter__()
        torch.set_rng_state(state)
        return iterator


class ResumableDataLoader(RandomStateNeutralDataLoader):
    """A loader that Lightning saves and restores with the checkpoint (it has `state_dict`): resuming an
    epoch that was interrupted, it leaves out the batches that the epoch already trained, so the resumed
    run sees the batches the uninterrupted run would have seen."""

    def __init__(self, *args, batches_done: Callable[[], int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done

    def state_dict(self) -> dict:
        return {"length_grouped": True}

    def load_state_dict(self, state: dict) -> None:
        # Called after Lightning restored its loops: their count of batches done in this epoch is the truth
        # (the loader itself has already fetched one batch ahead).
        self.batch_sampler.skip = self._batches_done()


class SequenceDataModule(pl.LightningDataModule):
    """Loaders over `self.datasets` (filled by a subclass's `setup`), length-grouped and rank-aware.

    What training asks of every data module, beside Lightning's hooks: `model_kwargs()` after `setup`, what
    the model takes from the data (and keeps in its checkpoint); `adopt(hparams)` before `setup`, to read the
    data as a checkpoint's model saw it (its vocabulary, its grid) when resuming, evaluating or fine-tuning,
    or one line saying why it cannot. The trainer runs with `use_distributed_sampler=False`: the batch
    sampler splits batches across ranks.
    """

    def __init__(self, batch_size: int, seed: int, num_workers: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserError(f"data.batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.datasets: dict[str, SequenceDataset] = {}

    def augmentation_generator(self) -> torch.Generator | None:
        """In training only, a generator seeded by the seed and the step, so a resumed run draws the same
        data augmentation as an uninterrupted one; None elsewhere (validation and test see the data as is)."""
        if self.trainer is None or not self.trainer.training:
            return None
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.trainer.global_step)

    def model_kwargs(self) -> dict:
        """What the model takes from the data (vocabulary and artists, or grid and opening frames)."""
        raise NotImplementedError

    def pieces(self, split: str) -> list:
        """The real pieces of a split (train, valid, test) as the sample evaluator reads them."""
        return list(self.datasets[split].sequences)

    def adopt(self, hparams: dict) -> None:
        """Read the data as the model with these hyperparameters saw it; a UserError where that is not
        possible."""
        raise NotImplementedError

    def _loader(self, stage: str) -> DataLoader:
        dataset = self.datasets[stage]
        trainer = self.trainer
        sampler = LengthGroupedBatchSampler(
            dataset.lengths(),
            self.batch_size,
            shuffle=stage == "train",
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        loader_args = {
            "batch_sampler": sampler,
            "collate_fn": pad_collate,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
        }
        if stage == "train" and trainer is not None:
            progress = trainer.fit_loop.epoch_loop.batch_progress
            # `processed`, not `completed`: a checkpoint written in on_train_batch_end (ModelCheckpoint's
            # every_n_train_steps) has the batch processed but not yet completed; Lightning counts it as done
            # only later, in the epoch loop's reset, after the loader is restored (it would train it twice).
            # If that batch was the epoch's last, the epoch is over and the next one skips nothing.
            return ResumableDataLoader(
                dataset,
                batches_done=lambda: 0 if progress.is_last_batch else progress.current.processed,
                **loader_args,
            )
        return RandomStateNeutralDataLoader(dataset, **loader_args)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


def windows(ids: np.ndarray, max_len: int | None) -> list[np.ndarray]:
    """Cut an encoded sequence (a song, a piece) into pieces of max_len predicted tokens (each piece max_len + 1 long)."""
    if not max_len or len(ids) <= max_len + 1:
        return [ids]
    return [ids[start : start + max_len + 1] for start in range(0, len(ids) - 1, max_len)]
