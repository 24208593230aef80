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
        self._after: list[dict] | None = None  # rows written after the checkpoint, until the cut is settled
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if self._keep_rows is None:
            return super()._check_log_dir_exists()  # a fresh run: Lightning's warning, a new file
        header, rows = _read_complete_rows(Path(self.metrics_file_path))
        self.metrics_keys = list(header)
        self.rows_saved = min(len(rows), self._keep_rows)
        self._after = rows[self.rows_saved :]
        if len(rows) < self._keep_rows:
            log.warning(
                "%s held %d of the %d rows the checkpoint saved",
                self.metrics_file_path,
                len(rows),
                self._keep_rows,
            )

    def settle(self, first_step: int) -> None:
        """The resumed run logs from `first_step` on: of the rows the killed process wrote after the checkpoint,
        keep those of earlier steps (a checkpoint written at a batch's end comes before that batch's row, and
        the resumed run does not train that batch again) and drop the rest, which the resumed run logs again."""
        if self._after is None:
            return
        kept = [r for r in self._after if _step(r) is not None and _step(r) < first_step]
        _, rows = _read_complete_rows(Path(self.metrics_file_path))
        self.rows_saved += len(kept)
        self._after = None
        if self.metrics_keys:
            self._write_all(rows[: self.rows_saved - len(kept)] + kept)

    def _write_all(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.metrics_keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.metrics_file_path, buffer.getvalue())

    def save(self) -> None:
        if not self.metrics:
            return
        if self._after is not None:  # logged before the first training batch said where the run resumed
            self.settle(min(int(r["step"]) for r in self.metrics))
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


def _step(row: dict) -> int | None:
    try:
        return int(float(row["step"]))
    except (KeyError, ValueError):
        return None


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

    def start_at(self, step: int) -> None:
        if self._experiment is not None:
            self._experiment.settle(step)

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = ResumableCSVWriter(log_dir=self.log_dir, keep_rows=self._keep_rows)
        return self._experiment


class TensorBoardLogger(pl_loggers.TensorBoardLogger):
    """Lightning's TensorBoardLogger that a resume continues in its folder, from the resumed step on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._held: list | None = None  # resuming: the hyperparameters, until the first step is known

    def resume(self, state: dict) -> None:
        if self._experiment is not None:
            raise RuntimeError("resume() goes before anything is logged")
        if state.get("step") is not None:
            self._kwargs["purge_step"] = int(state["step"])  # if nothing more precise comes (start_at)
            self._held = []

    def log_hyperparams(self, params, metrics=None, step=None) -> None:
        if self._held is not None and self._experiment is None:
            self._held.append((params, metrics, step))  # written with the writer that knows its purge step
            return
        super().log_hyperparams(params, metrics, step)

    def start_at(self, step: int) -> None:
        """The resumed run's first step: the writer hides every event of an earlier process from it on."""
        if self._held is None:
            return
        if self._experiment is None:
            self._kwargs["purge_step"] = step
        held, self._held = self._held, None
        for params, metrics, at in held:
            super().log_hyperparams(params, metrics, at)

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
        self._started = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx) -> None:
        # The first batch of this process: Lightning has settled where a resumed run goes on (its epoch loop
        # adjusts the step counter only now), and nothing has been logged yet.
        if not self._started:
            self._started = True
            step = trainer.fit_loop.epoch_loop._batches_that_stepped
            for logger in trainer.loggers:
                if hasattr(logger, "start_at"):
                    logger.start_at(step)

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
