"""Helpers of the fault tests (tests/test_preemption.py, tests/test_slurm.py): callbacks that run inside the
training process they stop, and the check that a stopped and resumed run ends as an uninterrupted one."""

import csv
import io
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from lm_music.checkpoints import load_checkpoint


class PauseAt(pl.Callback):
    """At step `step` (after that training batch, or with `at: val` after the validation that follows it) write
    `marker` and wait, up to `timeout` seconds, for the SIGTERM the test sends on seeing it: the signal then
    lands at a known point of the run (mid-epoch, or at an epoch's end), whatever the machine's load."""

    def __init__(self, step: int, marker: str, at: str = "train", timeout: float = 120.0) -> None:
        self.step, self.marker, self.at, self.timeout = step, Path(marker), at, timeout

    def _pause(self, trainer: pl.Trainer) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        self.marker.write_text(str(self.step))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.01)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.at == "train":
            self._pause(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.at == "val" and not trainer.sanity_checking:
            self._pause(trainer)


class PauseInSave(pl.Callback):
    """Inside a checkpoint save: when Lightning builds `last.ckpt` after a new best checkpoint has just been
    written (the best on disk is newer than last.ckpt), write `marker` and wait for the SIGKILL the test sends.
    The kill then leaves a best that the last.ckpt on disk does not know (the old best may be gone already):
    what piled up `-v1` checkpoints before."""

    def __init__(self, marker: str, timeout: float = 120.0) -> None:
        self.marker, self.timeout = Path(marker), timeout

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        callback = trainer.checkpoint_callback
        best, last = Path(callback.best_model_path or "-"), Path(callback.dirpath or "-") / "last.ckpt"
        if self.marker.exists() or not (best.is_file() and last.is_file()):
            return
        if not callback.last_model_path.endswith("last.ckpt") or best.stat().st_mtime <= last.stat().st_mtime:
            return
        self.marker.write_text(best.name)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            time.sleep(0.01)


class SaveAt(pl.Callback):
    """`trainer.save_checkpoint(path)` in `on_train_batch_end` of step `step`: a checkpoint as Lightning's own
    ModelCheckpoint(every_n_train_steps) and SaveOnInterrupt (Ctrl-C) write it there, the batch processed but
    not yet completed (at an epoch's last batch: before the epoch's validation and end)."""

    def __init__(self, step: int, path: str) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


class Crash(RuntimeError):
    """What CrashAt raises: no handler saves anything on it (SaveOnInterrupt saves on Ctrl-C or SIGTERM)."""


class CrashAt(pl.Callback):
    """Raise `Crash` as the batch after step `step` starts, in the training process itself: the run stops
    there as a SIGKILL would stop it, with the `last.ckpt` that `every_n_train_steps=1` wrote at `step`, and
    a test needs no subprocess to stop a run at a known step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"crashed at step {self.step}")


def last_logged_step(metrics_csv: Path) -> int:
    """The highest step in a run's metrics.csv (-1 before it exists): what the tests watch to time a signal."""
    try:
        rows = list(csv.DictReader(io.StringIO(metrics_csv.read_text())))
    except FileNotFoundError:
        return -1
    return max((int(row["step"]) for row in rows if row.get("step", "").isdigit()), default=-1)


def assert_same_weights(a: Path, b: Path) -> None:
    """Two checkpoints hold equal tensors, bit for bit."""
    whole, parts = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert whole.keys() == parts.keys()
    for name, tensor in whole.items():
        assert torch.equal(tensor, parts[name]), name
