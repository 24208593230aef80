"""Callbacks and tracker helpers: samples sent to every tracker (rank zero only), save on interrupt, stop on a
non-finite loss, process-group clean-up at exit, the thread count following the free cores, and progress as
one line an epoch where no terminal shows a bar."""

import atexit
import datetime
import logging
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, Timer
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lm_music.audio import AudioRenderer
from lm_music.errors import UserError
from lm_music.threads import ThreadPolicy
from lm_music.tracking_mlflow import MLFlowLogger

log = logging.getLogger(__name__)


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
    elif isinstance(logger, MLFlowLogger):
        logger.log_samples(items, step)


@rank_zero_only
def log_final_metrics(logger: Logger, params: dict, metrics: dict) -> None:
    """The run's config against its final metrics: TensorBoard's HParams tab, W&B's run summary, MLflow's
    metrics.json artifact."""
    if isinstance(logger, TensorBoardLogger):
        from torch.utils.tensorboard.summary import hparams

        # Not logger.log_hyperparams(params, metrics): that also logs the metrics as a point at step 0.
        writer = logger.experiment._get_file_writer()
        for summary in hparams(logger._sanitize_params(params), metrics):
            writer.add_summary(summary)
        logger.experiment.flush()
    elif isinstance(logger, WandbLogger):
        logger.experiment.summary.update(metrics)
    elif isinstance(logger, MLFlowLogger):
        logger.log_results()  # the final metrics are the last points of their histories already


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
        audio=True,
    ) -> None:
        """`audio`: how music samples are heard (`AudioRenderer.from_options`: false, true or a mapping)."""
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.length = length
        self.temperature = temperature
        self.seed = seed
        self.renderer = AudioRenderer.from_options(audio)  # a bad soundfont is refused before training

    def due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and not (trainer.current_epoch + 1) % self.every_n_epochs

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.due(trainer):
            return
        # The step the trackers log this validation's metrics at (Lightning's, one behind global_step here):
        # the samples sit beside them, and a resumed TensorBoard run hides neither.
        self.send(trainer, pl_module, trainer.fit_loop.epoch_loop._batches_that_stepped)

    def send(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        items = pl_module.tracker_samples(
            self.num_samples, self.length, self.temperature, generator, self.renderer
        )
        for logger in trainer.loggers:
            log_samples(logger, items, step)


class SampleQuality(SampleLogger):
    """Every `every_n_epochs` validation epochs of a fit (0: never), draw `num_samples` samples and log how
    they compare with the validation split (`lm_music.evaluation`: the mean overlapping area over the task's
    features, and its most telling features) to every tracker, so sample quality shows beside the loss."""

    def __init__(
        self,
        every_n_epochs: int = 0,
        num_samples: int = 16,
        length: int = 256,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(every_n_epochs, num_samples, length, temperature, seed, audio=False)
        self._judge = None  # the task's evaluation and the validation pieces, made at the first judgement

    def due(self, trainer: pl.Trainer) -> bool:
        # not the validate/test that follow training
        return bool(self.every_n_epochs) and trainer.state.fn == "fit" and super().due(trainer)

    def send(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        metrics = self.judge(pl_module, trainer.datamodule)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step)

    def judge(self, module: pl.LightningModule, datamodule) -> dict[str, float]:
        """`samples/oa_mean` and `samples/FEATURE` of freshly drawn samples against the validation split."""
        from lm_music.evaluation.compare import compare_sets, mean_oa
        from lm_music.tasks.registry import task_of_module

        if self._judge is None:
            evaluation = task_of_module(type(module)).evaluation(module)
            # lyrics: what the memorisation index is built over
            evaluation.training = datamodule.pieces("train")
            reference = datamodule.pieces("valid")
            self._judge = evaluation, reference
        evaluation, reference = self._judge
        generator = torch.Generator(device=module.device).manual_seed(self.seed)
        samples = evaluation.draw_in_training(
            module, self.num_samples, self.length, self.temperature, generator
        )
        longest = max(len(s) for s in samples)
        features = evaluation.features_of({"samples": samples, "reference": [r[:longest] for r in reference]})
        metrics = {"samples/oa_mean": mean_oa(compare_sets(features["samples"], features["reference"]))}
        for name, reduce in evaluation.telling.items():
            values = features["samples"][name]
            metrics[f"samples/{name}"] = float(np.nanmax(values) if reduce == "max" else np.nanmean(values))
        return metrics


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
                f"from before it; lower model.optimizer.lr or keep model.gradient_clip_val, then resume"
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


class AdaptThreads(pl.Callback):
    """Applies a ThreadPolicy: the first thread count when the run is set up (in every process of it), then a
    recheck after training batches. `sharers`: the jobs of a joblib sweep that run at once. It keeps nothing in
    the checkpoint on purpose: a resumed run (perhaps on another node) looks at the machine it now runs on,
    from `setup`, which every start of `fit` calls, a resumed one included."""

    def __init__(self, policy: ThreadPolicy, sharers: int = 1) -> None:
        self.policy = policy
        self.sharers = sharers

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.policy.start(self.sharers * trainer.num_devices)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.policy.recheck()


class ModelSize(pl.Callback):
    """The model in one line (Lightning's summary table adds a FLOPs column that is 0 for these models)."""

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = sum(p.numel() for p in pl_module.parameters())
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        megabytes = sum(p.numel() * p.element_size() for p in pl_module.parameters()) / 1e6
        name = type(getattr(pl_module, "net", pl_module)).__name__
        frozen = f", {params - trainable:,} frozen" if trainable < params else ""
        log.info("model: %s, %s parameters%s (%.1f MB)", name, f"{params:,}", frozen, megabytes)


class EpochLines(ProgressBar):
    """Progress for log files: a bar redrawn in place shows nothing in a file until the run ends, so when stdout
    is not a terminal (nohup, SLURM, `> log`) each training epoch logs one line instead: epoch, step, mean
    training loss, the validation metrics, time elapsed and an estimate of the time left."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self.loss_sum, self.batches = 0.0, 0  # this epoch's so far; a mid-epoch resume gets them back

    def state_dict(self) -> dict:
        return {"loss_sum": float(self.loss_sum), "batches": self.batches}

    def load_state_dict(self, state_dict: dict) -> None:
        self.loss_sum, self.batches = state_dict.get("loss_sum", 0.0), state_dict.get("batches", 0)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A mid-epoch resume starts part of the way into its epoch: the estimate counts that part only.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        per_epoch = trainer.num_training_batches
        fraction = done / per_epoch if done and per_epoch and math.isfinite(per_epoch) else 0.0
        self.start_time, self.start_step, self.start_epoch = (
            time.monotonic(),
            trainer.global_step,
            trainer.current_epoch + fraction,
        )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.loss_sum, self.batches = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            self.loss_sum = self.loss_sum + loss.detach()  # a tensor: no device sync a batch
            self.batches += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch + 1
        limit = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {epoch}{limit}", f"step {trainer.global_step}"]
        if self.batches:
            parts.append(f"train/loss {float(self.loss_sum) / self.batches:.4g}")
        metrics = trainer.callback_metrics
        parts += [f"{name} {float(metrics[name]):.4g}" for name in metrics if name.startswith("val/")]
        elapsed = time.monotonic() - self.start_time
        parts.append(f"elapsed {_clock(elapsed)}")
        left = self._seconds_left(trainer, elapsed, epoch)
        if left is not None:
            parts.append(f"left ~{_clock(left)}")
        log.info(" | ".join(parts))

    def _seconds_left(self, trainer: pl.Trainer, elapsed: float, epoch: int) -> float | None:
        """Time to the first of the run's limits (epochs, steps, a time budget) at this run's pace so far."""
        estimates = []
        if trainer.max_epochs and trainer.max_epochs > 0 and epoch > self.start_epoch:
            estimates.append(elapsed / (epoch - self.start_epoch) * (trainer.max_epochs - epoch))
        if trainer.max_steps and trainer.max_steps > 0 and trainer.global_step > self.start_step:
            pace = elapsed / (trainer.global_step - self.start_step)
            estimates.append(pace * (trainer.max_steps - trainer.global_step))
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and timer.time_remaining() is not None:
            estimates.append(timer.time_remaining())
        return max(0.0, min(estimates)) if estimates else None


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))
