"""What running in several processes changes, in one place.

- `ddp` inside a local Hydra multirun would start every rank by running the command line again, which runs
  the whole sweep again in each rank: such runs use `ddp_spawn` (`safe_strategy`).
- After `ddp_spawn` the main process's trainer has trained nothing itself: the steps and epochs come from
  the last checkpoint, which rank 0 wrote (`progress`), and the final validation and test need no new
  processes, which are slow to start: one process on one device scores the same pooled metrics
  (`evaluator`).
- Elsewhere, for the same reasons: `SequenceLitModule._reset_pooled` (a module back from spawned children carries
  metric state), `RandomStateNeutralDataLoader` (the loaders draw no seed from torch's generator), the
  `DestroyProcessGroupAtExit` callback (a live gloo group can abort a finished rank) and the thread policy's
  share of the cores per rank (`AdaptThreads`).
"""

import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def safe_strategy(cfg: DictConfig) -> str | None:
    """`ddp_spawn` for `ddp` under a local Hydra multirun; None to keep the config's strategy. Under SLURM every
    rank is a task of its own and `ddp` is right."""
    strategy = cfg.trainer.get("strategy")
    if strategy == "ddp" and in_multirun() and int(os.environ.get("SLURM_NTASKS", "1")) == 1:
        log.warning("strategy=ddp inside a multirun re-launches the sweep in every rank: using ddp_spawn")
        return "ddp_spawn"
    return None


def spawned(trainer: pl.Trainer) -> bool:
    return getattr(trainer.strategy, "_start_method", None) == "spawn"


def progress(trainer: pl.Trainer) -> dict:
    """Steps and epochs trained, by this process or, after ddp_spawn, by its ranks (the last checkpoint)."""
    last = (
        Path(trainer.checkpoint_callback.dirpath or "", "last.ckpt") if trainer.checkpoint_callback else None
    )
    if trainer.global_step == 0 and last is not None and last.is_file():
        checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        return {"global_step": checkpoint["global_step"], "epoch": checkpoint["epoch"]}
    return {"global_step": trainer.global_step, "epoch": trainer.current_epoch}


def evaluator(trainer: pl.Trainer, build_trainer) -> pl.Trainer:
    """The trainer that runs the final validation and test: `trainer`, or after ddp_spawn one process on one
    device (`build_trainer(devices=1, strategy="auto")`)."""
    return build_trainer(devices=1, strategy="auto") if spawned(trainer) else trainer
