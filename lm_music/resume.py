"""What lets a run be stopped at any moment (SIGTERM, SIGKILL, a SLURM time limit) and go on from its folder.

- `AtomicCheckpointIO`: Lightning's own write (`lightning_fabric.utilities.cloud_io._atomic_save`) goes
  through an fsspec transaction, which for a local path writes to a file in the system's temp folder and then
  `shutil.move`s it: a copy when /tmp is another file system (a kill in the copy leaves half a checkpoint under
  the real name), and a temp file in /tmp that a kill never removes. This writes beside the target and renames.
- `RunCheckpoint`: ModelCheckpoint whose folder holds what it keeps (the best `save_top_k` and `last.ckpt`)
  however often the run was killed and resumed, and whose best stays the best of the whole run.
- `NextEpochAfterLastBatch`: a resume from a checkpoint written at an epoch's last batch starts the next
  epoch as an epoch (Lightning's counters), so a later resume inside that epoch does not train it again.
- `run_name` and `auto_resume_path`: under SLURM a run folder named by the job, and a requeued job that
  continues from it without `ckpt_path=last`.
"""

import logging
import os
import re
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.cloud_io import _is_local_file_protocol
from pytorch_lightning.callbacks import ModelCheckpoint

from lm_music.io import atomic_path
from lm_music.slurm import requeued

log = logging.getLogger(__name__)

TEMP_FILE = re.compile(r"^\..+\.tmp$")  # what lm_music.io.atomic_path leaves behind if killed mid-write


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file beside the checkpoint, flushed to disk, then renamed over it: a kill at
    any moment leaves the old checkpoint or the new one, never a part of one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the bytes (a node crash)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that survives kills. A kill between its writes leaves files that the state in
    `last.ckpt` does not know: a new best written after `last.ckpt`, whose old best may be gone already. Stock
    ModelCheckpoint keeps those for ever and, when the resumed run reaches the same epoch and step, writes
    `NAME-v1.ckpt` beside them (so checkpoints pile up), and may report a best that no longer exists. Here, on a
    resume, files of the checkpoint folder that the restored state does not know and that were written since
    the checkpoint resumed from are removed (with the temporary files of interrupted writes), entries of the
    state whose file is gone are dropped, and a checkpoint of the same name is replaced instead of versioned
    (`enable_version_counter=False`: it is the same epoch and step of the same run). A run folder that moved
    keeps its best: the state's paths are moved with it.

    With `every_n_train_steps`, two more things, so that a resumed run saves where an uninterrupted one does:

    - The save due at an epoch's last batch is written at the epoch's end, after its validation (the save that
      ModelCheckpoint makes at `on_train_epoch_end` without `every_n_train_steps`), not in that batch's
      `on_train_batch_end`. Lightning defers it so only when it does not save at the train epoch's end
      (Lightning-AI/pytorch-lightning#21106); otherwise the save judges the best by the previous epoch's
      val/loss, and a resume from it skips this epoch's validation and epoch end (`FitLoop.reset` counts the
      epoch done) and starts the next epoch on a path Lightning miscounts (`NextEpochAfterLastBatch`).
    - The monitored value (val/loss) of the last validation is kept in the state and given back to the
      resumed run: Lightning does not restore `callback_metrics`, and without the key ModelCheckpoint defers
      every step save until the next validation (#21106), which then drops it when saving at the train
      epoch's end: a resumed run wrote no checkpoint before its first validation."""

    def __init__(self, *args, enable_version_counter: bool = False, **kwargs) -> None:
        super().__init__(*args, enable_version_counter=enable_version_counter, **kwargs)
        self._restored = False
        self._trainer: Any = None
        self._monitored: torch.Tensor | None = None  # the restored value of `monitor`, until on_train_start
        self._save_at_epoch_end = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        value = self._trainer.callback_metrics.get(self.monitor) if self._trainer and self.monitor else None
        if value is not None:
            state["monitored"] = (
                value.detach().cpu() if isinstance(value, torch.Tensor) else torch.tensor(value)
            )
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and Path(old) != Path(self.dirpath):
            state_dict = _moved(state_dict, Path(old), Path(self.dirpath))
        super().load_state_dict(state_dict)
        self._monitored = state_dict.get("monitored")
        self._restored = True

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        if self._monitored is not None and self.monitor not in trainer.callback_metrics:
            # After Lightning's reset of the metrics, before the first batch: what the uninterrupted run has
            # between two validations (the last one's value).
            trainer.callback_metrics[self.monitor] = self._monitored.to(pl_module.device)
        self._monitored = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step_save_due = (
            self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        )
        if (
            step_save_due
            and trainer.fit_loop.epoch_loop._num_ready_batches_reached()  # the epoch's last batch
            and self._should_save_on_train_epoch_end(trainer)
            and not self._should_skip_saving_checkpoint(trainer)
        ):
            self._save_at_epoch_end = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._save_at_epoch_end:
            self._save_at_epoch_end = False
            if not self._should_skip_saving_checkpoint(trainer):
                candidates = self._monitor_candidates(trainer)
                if self.monitor is None or self.monitor in candidates:
                    self._save_topk_checkpoint(trainer, candidates)
                self._save_last_checkpoint(trainer, candidates)
        super().on_train_epoch_end(trainer, pl_module)  # skips what was saved at this step already

    def on_fit_start(self, trainer, pl_module) -> None:
        if (
            self._restored
            and trainer.is_global_zero
            and self.dirpath
            and _is_local_file_protocol(self.dirpath)
        ):
            self.tidy(Path(trainer.ckpt_path) if trainer.ckpt_path else None)
        trainer.strategy.barrier()

    def tidy(self, resumed_from: Path | None) -> list[Path]:
        """Remove what a kill left in the folder that the restored state does not know; return what went."""
        folder = Path(self.dirpath)
        for path in [p for p in self.best_k_models if not Path(p).is_file()]:
            self.best_k_models.pop(path)
            log.info("the best checkpoint %s of the resumed state is gone (a kill): forgotten", path)
        if self.best_k_models:
            pick = min if self.mode == "min" else max
            self.best_model_path = pick(self.best_k_models, key=self.best_k_models.get)
            self.best_model_score = self.best_k_models[self.best_model_path]
            if len(self.best_k_models) == self.save_top_k:
                worst = max if self.mode == "min" else min
                self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.get)
                self.kth_value = self.best_k_models[self.kth_best_model_path]
            else:
                self.kth_best_model_path = ""  # fewer than save_top_k kept: the next one is saved anyway
        elif self.monitor is not None:
            self.best_model_path, self.best_model_score, self.kth_best_model_path = "", None, ""
        known = {
            Path(p).resolve() for p in [*self.best_k_models, self.last_model_path, self.best_model_path] if p
        }
        if resumed_from is not None:
            known.add(resumed_from.resolve())
        since = resumed_from.stat().st_mtime if resumed_from is not None and resumed_from.is_file() else None
        removed = []
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            stale_temp = TEMP_FILE.match(path.name) is not None
            orphan = (
                path.suffix == self.FILE_EXTENSION
                and path.resolve() not in known
                and since is not None
                and path.stat().st_mtime >= since
            )
            if path.is_file() and (stale_temp or orphan):
                path.unlink()
                removed.append(path)
        if removed:
            log.info(
                "resumed: removed %s, written after the checkpoint resumed from (a kill)",
                ", ".join(p.name for p in removed),
            )
        return removed


class NextEpochAfterLastBatch(pl.Callback):
    """Corrects Lightning's fit loop after a resume from a checkpoint written in `on_train_batch_end` of an
    epoch's last batch (ModelCheckpoint's `every_n_train_steps`, or SaveOnInterrupt's Ctrl-C save there).

    Lightning (2.5-2.6, `FitLoop.reset`, from Lightning-AI/pytorch-lightning#20379) sees that epoch as
    finished and counts it processed and completed, but leaves its restart stage at "restarted mid-epoch".
    `FitLoop.on_advance_start` then skips, for the *next* epoch, `epoch_progress.increment_ready/started`
    and the `on_train_epoch_start` hooks. Every checkpoint written during that next epoch then has
    ready == started == processed == completed, what Lightning reads as an epoch that ended: a resume from
    one of them is not a restart (`FitLoop.restarting` is False, the loader's position is not restored)
    and trains the whole epoch again after the batches it had already trained (the SIGKILL test's
    72 of 64 steps: an epoch of 8 + 5 batches). The stage is cleared here, after `FitLoop.reset` and before
    the next epoch starts (`on_train_start` runs between them), so that the next epoch is counted and
    started as a fresh one. Nothing changes for any other resume (a genuine mid-epoch restart has
    processed == started - 1)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        epochs = loop.epoch_progress.current
        if loop.restarted_mid_epoch and epochs.processed == epochs.started:
            loop.reset_restart_stage()
            log.debug(
                "resumed after epoch %d's last batch: epoch %d starts afresh",
                epochs.processed - 1,
                epochs.processed,
            )


def _moved(state: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    def move(path):
        return str(new / Path(path).name) if path and Path(path).parent == old else path

    state = dict(state, dirpath=str(new))
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in state:
            state[key] = move(state[key])
    if "best_k_models" in state:
        state["best_k_models"] = {move(k): v for k, v in state["best_k_models"].items()}
    return state


# --- SLURM (the run folder's name: lm_music/slurm.py) ----------------------------------------------------


def auto_resume_path(output_dir: str | Path) -> Path | None:
    """For a requeued SLURM job: the newest of its run folder's `checkpoints/last.ckpt` and the checkpoints
    Lightning's own SIGUSR1 requeue writes (`hpc_ckpt_N.ckpt`), or None (not requeued, or nothing saved)."""
    if not requeued():
        return None
    output_dir = Path(output_dir)
    candidates = [output_dir / "checkpoints" / "last.ckpt", *output_dir.glob("hpc_ckpt_*.ckpt")]
    candidates = [p for p in candidates if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None
