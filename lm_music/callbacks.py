"""Callbacks and tracker helpers: samples sent to every tracker (rank zero only), save on interrupt, stop on a
non-finite loss, and process-group clean-up at exit."""

import atexit
import signal
import threading
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lm_music.errors import UserError


def log_samples(logger: Logger, items: list[dict], step: int) -> None:
    """Send samples (`kind` text, image HxWx3 uint8, or audio float32 with `sample_rate`) to one tracker."""
    if isinstance(logger, TensorBoardLogger):
        writer = logger.experiment
        for item in items:
            if item["kind"] == "text":
                # TensorBoard renders text as markdown: indent it so line breaks survive.
                writer.add_text(item["tag"], "    " + item["value"].replace("\n", "\n    "), step)
            elif item["kind"] == "image":
                writer.add_image(item["tag"], item["value"], step, dataformats="HWC")
            elif item["kind"] == "audio":
                audio = torch.as_tensor(np.asarray(item["value"], dtype=np.float32))[None]
                writer.add_audio(item["tag"], audio, step, sample_rate=item["sample_rate"])
    elif isinstance(logger, WandbLogger):
        import wandb

        media = {
            "text": lambda it: wandb.Html("<pre>" + it["value"].replace("<", "&lt;") + "</pre>"),
            "image": lambda it: wandb.Image(it["value"]),
            "audio": lambda it: wandb.Audio(it["value"], sample_rate=it["sample_rate"]),
        }
        logger.experiment.log(
            {it["tag"]: media[it["kind"]](it) for it in items} | {"trainer/global_step": step}
        )


@rank_zero_only
def log_final_metrics(logger: Logger, params: dict, metrics: dict) -> None:
    """The run's config against its final metrics: TensorBoard's HParams tab, W&B's run summary."""
    if isinstance(logger, TensorBoardLogger):
        from torch.utils.tensorboard.summary import hparams

        # Not logger.log_hyperparams(params, metrics): that also logs the metrics as a point at step 0.
        writer = logger.experiment._get_file_writer()
        for summary in hparams(logger._sanitize_params(params), metrics):
            writer.add_summary(summary)
        logger.experiment.flush()
    elif isinstance(logger, WandbLogger):
        logger.experiment.summary.update(metrics)


def finish_trackers(loggers: list[Logger]) -> None:
    """Close trackers so that the next job of a multirun starts a run of its own."""
    for logger in loggers:
        logger.finalize("success")
        if isinstance(logger, WandbLogger):
            import wandb

            wandb.finish()


class SampleLogger(pl.Callback):
    """Every `every_n_epochs` validation epochs, draw a few samples from the model and log them."""

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 4,
        length: int = 300,
        temperature: float = 0.8,
        seed: int = 0,
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.length = length
        self.temperature = temperature
        self.seed = seed

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        items = pl_module.tracker_samples(self.num_samples, self.length, self.temperature, generator)
        for logger in trainer.loggers:
            log_samples(logger, items, trainer.global_step)


class SaveOnInterrupt(pl.Callback):
    """Ctrl-C or SIGTERM (SLURM pre-emption sends it) during training: finish the batch, save `last.ckpt`,
    exit. `hydra.run.dir=RUN_DIR ckpt_path=last` then continues exactly where the run stopped. A second
    Ctrl-C stops at once."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._interrupted = False
        self._previous_handler = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_sigint(self, signum, frame) -> None:
        self._interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._interrupted:
            raise KeyboardInterrupt

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.on_train_end(trainer, pl_module)
        if not isinstance(exception, KeyboardInterrupt | SIGTERMException) or not trainer.training:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        rank_zero_info(
            f"interrupted at step {trainer.global_step}: saved {path}; resume with "
            f"hydra.run.dir={self.dirpath.parent} ckpt_path=last"
        )


class StopOnNonFiniteLoss(pl.Callback):
    """A NaN or infinite training loss stops the run at that step, before any checkpoint holds bad weights."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(torch.as_tensor(loss)).all():
            raise UserError(
                f"the training loss became {float(loss)} at step {trainer.global_step}: the checkpoints kept are "
                f"from before it; lower model.optimizer.lr or keep trainer.gradient_clip_val, then resume"
            )


class DestroyProcessGroupAtExit(pl.Callback):
    """A gloo process group still alive when a rank's interpreter exits can abort it ("terminate called
    without an active exception", SIGABRT), failing a finished ddp/ddp_spawn run. Lightning destroys only
    NCCL groups at exit; this does it for every backend, in every rank."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            atexit.unregister(_destroy_process_group)  # once per process, however many runs it holds
            atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
