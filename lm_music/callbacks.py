"""Side effects of training: samples sent to every tracker, on rank zero only."""

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only


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
