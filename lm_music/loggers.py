"""The trackers of conf/logger/, made to resume: after `ckpt_path=last` (or a SLURM requeue) a run's curves go on
in the same place, and nothing logged before the checkpoint it resumed from is lost or shown twice.

What each checkpoint holds for them (`TrackerState`, a callback, so it is in every checkpoint Lightning
writes, the SIGUSR1 ones included): how many CSV rows were on disk, the step, and the W&B run id. Before it
is written, every tracker is flushed, so a kill right after a checkpoint loses nothing from before it.

- CSV: Lightning's CSVLogger deletes `metrics.csv` when it starts in a folder that has one (a resume lost
  every row before the interruption), and rewrites it in place when a column appears, which a kill can cut
  short; a resumed writer that has not seen the file's columns then fails (`dict contains fields not in
  fieldnames`). Here a resume keeps the rows saved up to the checkpoint (the rows the killed process wrote
  after it are logged again by the resumed run), knows the file's columns, and every rewrite is atomic.
- TensorBoard: the same folder (`version: ""`), and `purge_step` at the resumed step, so the events the
  killed process wrote after the checkpoint are hidden (TensorBoard's own mechanism for crashed runs).
- W&B: the same run id, `resume="allow"`. Offline, each process writes an `offline-run-*` folder of that id;
  `wandb sync RUN_DIR/wandb/offline-run-*` uploads them in order into one run. W&B keeps every step it was
  sent: the steps between the last checkpoint and a kill appear twice on its `trainer/global_step` axis.
"""

import csv
import io
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.loggers.csv_logs import _ExperimentWriter
from pytorch_lightning import loggers as pl_loggers
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from lm_music.io import write_text_atomic

log = logging.getLogger(__name__)


class ResumableCSVWriter(ExperimentWriter):
    """Lightning's CSV writer that can continue a file (`keep_rows`: how many of its rows to keep; None: a
    new file, as Lightning does) and never leaves a rewritten file half-written."""

    def __init__(self, log_dir: str, keep_rows: int | None = None) -> None:
        self.rows_saved = 0
        self._keep_rows = keep_rows
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self._keep_rows is None:
            return super()._check_log_dir_exists()  # a fresh run: Lightning's warning, a new file
        path = Path(self.metrics_file_path)
        header, rows = _read_complete_rows(path)
        rows = rows[: self._keep_rows]
        if header:
            self.metrics_keys = list(header)
            self._write_all(rows)
        elif path.exists():
            path.unlink()  # not even a header survived: start the file again
        self.rows_saved = len(rows)
        if len(rows) < self._keep_rows:
            log.warning("%s held %d of the %d rows saved by the checkpoint", path, len(rows), self._keep_rows)

    def _write_all(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.metrics_keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.metrics_file_path, buffer.getvalue())

    def save(self) -> None:
        if not self.metrics:
            return
        path = Path(self.metrics_file_path)
        new_keys = self._record_new_keys()
        if new_keys or not path.is_file():
            _, rows = _read_complete_rows(path)
            self._write_all(
                rows[: self.rows_saved] + self.metrics
            )  # a new column: the whole file, atomically
        else:
            with open(path, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=self.metrics_keys, lineterminator="\n").writerows(
                    self.metrics
                )
        self.rows_saved += len(self.metrics)
        self.metrics = []


def _read_complete_rows(path: Path) -> tuple[list[str], list[dict]]:
    """The header and rows of a metrics.csv; a last line a kill cut short is left out."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], []
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    rows = [{k: v for k, v in row.items() if v != ""} for row in reader]
    return list(reader.fieldnames or []), rows


class CSVLogger(pl_loggers.CSVLogger):
    """Lightning's CSVLogger whose file a resume continues (see the module's docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._keep_rows: int | None = None

    def resume(self, state: dict) -> None:
        if self._experiment is not None:
            raise RuntimeError("resume() goes before anything is logged")
        self._keep_rows = int(state.get("csv_rows", 0))

    def tracker_state(self) -> dict:
        if self._experiment is None:
            return {}
        self.save()
        return {"csv_rows": self._experiment.rows_saved}

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableCSVWriter(log_dir=self.log_dir, keep_rows=self._keep_rows)
        return self._experiment


class TensorBoardLogger(pl_loggers.TensorBoardLogger):
    """Lightning's TensorBoardLogger that a resume continues in its folder, from the resumed step on."""

    def resume(self, state: dict) -> None:
        if self._experiment is not None:
            raise RuntimeError("resume() goes before anything is logged")
        if state.get("step") is not None:
            self._kwargs["purge_step"] = int(state["step"])

    def tracker_state(self) -> dict:
        if self._experiment is not None:
            self.experiment.flush()
        return {}


class WandbLogger(pl_loggers.WandbLogger):
    """Lightning's WandbLogger that a resume continues as the same W&B run."""

    def resume(self, state: dict) -> None:
        if self._experiment is not None:
            raise RuntimeError("resume() goes before anything is logged")
        if state.get("wandb_id"):
            self._wandb_init.update(id=state["wandb_id"], resume="allow")
            self._id = state["wandb_id"]

    def tracker_state(self) -> dict:
        return {"wandb_id": self._experiment.id} if self._experiment is not None else {}


class TrackerState(pl.Callback):
    """Puts into every checkpoint what the trackers need to resume, flushing them first (Lightning asks a
    callback for its state while it builds a checkpoint, before writing it); `resume_trackers` reads it back
    before they log anything."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return {}
        state: dict[str, Any] = {"step": trainer.fit_loop.epoch_loop._batches_that_stepped, "loggers": {}}
        for index, logger in enumerate(trainer.loggers):
            if hasattr(logger, "tracker_state"):
                state["loggers"][_key(index, logger)] = logger.tracker_state()
            else:
                logger.save()
        return state


def _key(index: int, logger) -> str:
    return f"{index}:{type(logger).__name__}"


def resume_trackers(loggers: list, checkpoint: dict | None) -> None:
    """Before anything is logged: let each tracker continue where the checkpoint was written."""
    if checkpoint is None:
        return
    saved = (checkpoint.get("callbacks") or {}).get(TrackerState.__qualname__) or {}
    for index, logger in enumerate(loggers):
        if hasattr(logger, "resume"):
            logger.resume(
                {"step": saved.get("step"), **(saved.get("loggers") or {}).get(_key(index, logger), {})}
            )
