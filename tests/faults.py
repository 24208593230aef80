"""Helpers of the fault tests (tests/test_preemption.py) that run inside the training process they stop."""

import time
from pathlib import Path

import pytorch_lightning as pl


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
