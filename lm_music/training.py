"""The train/evaluate run behind `train.py`: data, model, trainer from the config; metrics.json at the end."""

import json
import logging
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from lm_music.callbacks import (
    AdaptThreads,
    DestroyProcessGroupAtExit,
    EpochLines,
    ModelSize,
    finish_trackers,
    log_final_metrics,
)
from lm_music.checkpoints import load_checkpoint, module_from_checkpoint
from lm_music.errors import UserError
from lm_music.io import write_text_atomic
from lm_music.threads import ThreadPolicy, usable_cores

log = logging.getLogger(__name__)


def build(node: DictConfig, **kwargs):
    """hydra's instantiate, letting our one-line UserError through instead of Hydra's wrapped traceback."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def _instantiate_all(group: DictConfig | None) -> list:
    return [build(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def _flat_hparams(cfg: DictConfig) -> dict:
    """The resolved config as flat `a/b/c` keys of scalars, which every tracker can show."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        else:
            out[prefix] = node if isinstance(node, int | float | str | bool) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def _finite_metrics(metrics: dict) -> dict:
    out = {}
    for name, value in metrics.items():
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[name] = value if math.isfinite(value) else None
    return out


def _progress(trainer: pl.Trainer) -> dict:
    """Steps and epochs trained. After ddp_spawn the main process's trainer ran none itself: the last
    checkpoint, written by rank 0, knows."""
    last = (
        Path(trainer.checkpoint_callback.dirpath or "", "last.ckpt") if trainer.checkpoint_callback else None
    )
    if trainer.global_step == 0 and last is not None and last.is_file():
        checkpoint = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        return {"global_step": checkpoint["global_step"], "epoch": checkpoint["epoch"]}
    return {"global_step": trainer.global_step, "epoch": trainer.current_epoch}


def source_commit() -> str | None:
    """The git commit of the lm_music source that ran (with `+dirty` for uncommitted changes), if a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


@rank_zero_only
def write_metrics(path: Path, metrics: dict) -> None:
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _safe_strategy(cfg: DictConfig) -> str | None:
    """`ddp` under a local Hydra multirun re-runs the whole sweep in each child process (each child starts
    the script again), so such sweeps run `ddp_spawn`, which starts children inside this job. Under SLURM
    every rank is a task of its own and `ddp` is right."""
    strategy = cfg.trainer.get("strategy")
    if strategy == "ddp" and _in_multirun() and int(os.environ.get("SLURM_NTASKS", "1")) == 1:
        log.warning("strategy=ddp inside a multirun re-launches the sweep in every rank: using ddp_spawn")
        return "ddp_spawn"
    return None


def _joblib_jobs() -> int:
    """How many jobs of a joblib sweep run at once (1 outside one): they share the machine's cores."""
    if not _in_multirun():
        return 1
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    n_jobs = int(launcher.get("n_jobs") or 1)
    return n_jobs if n_jobs > 0 else max(1, usable_cores() + 1 + n_jobs)  # joblib's -1 = every core


class _DropLines(logging.Filter):
    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def _quiet_lightning() -> None:
    """Drop what every run printed that no user can act on; every other warning stays."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Tiny runs (tests, smoke runs) have fewer batches than the logging interval: they log once an epoch.
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than")
    lightning = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropLines) for f in lightning.filters):
        lightning.addFilter(_DropLines("💡 Tip: For seamless cloud logging"))


def _quiet_wandb() -> None:
    """W&B never prompts: offline unless the user has configured it (WANDB_MODE or WANDB_API_KEY)."""
    if "WANDB_MODE" not in os.environ and "WANDB_API_KEY" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")


def _resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`ckpt_path=last` means this run dir's last checkpoint: resume with hydra.run.dir=RUN_DIR ckpt_path=last."""
    if cfg.get("ckpt_path") != "last":
        return cfg.get("ckpt_path")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UserError(
            f"ckpt_path=last: no {last}; give the interrupted run's folder too: hydra.run.dir=RUN_DIR ckpt_path=last"
        )
    return str(last)


def train(cfg: DictConfig) -> float | None:
    """Train and/or test as the config says; return `cfg.optimized_metric` for sweepers."""
    threads = ThreadPolicy(cfg.get("threads", "auto"))  # it looks at the other processes from here on
    commit = source_commit()  # of the code this run loaded, whatever the checkout holds when it ends
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    ckpt_path = _resolve_ckpt_path(cfg)
    checkpoint = load_checkpoint(ckpt_path) if ckpt_path else None
    task = get_class(cfg.model._target_).task
    if checkpoint is not None and checkpoint["lm_music_task"] != task:
        raise UserError(
            f"{ckpt_path} is a {checkpoint['lm_music_task']} checkpoint, but this experiment trains a {task} "
            f"model: pick the matching experiment="
        )
    datamodule = build(cfg.data)
    if checkpoint is not None:
        datamodule.adopt(checkpoint["hyper_parameters"])
    datamodule.setup("fit")
    if checkpoint is not None and not cfg.train:
        model = module_from_checkpoint(checkpoint)
    else:
        model = build(cfg.model, **datamodule.model_kwargs(), _convert_="all")
    callbacks = _instantiate_all(cfg.get("callbacks"))
    _quiet_lightning()
    _quiet_wandb()
    loggers = _instantiate_all(cfg.get("logger"))
    try:
        callbacks += [AdaptThreads(threads, _joblib_jobs()), DestroyProcessGroupAtExit()]
        if cfg.trainer.get("enable_progress_bar", True) and not sys.stdout.isatty():
            callbacks.append(
                EpochLines()
            )  # a log file gets a line an epoch; a terminal keeps Lightning's bar
        if cfg.trainer.get("enable_model_summary", True):
            callbacks.append(ModelSize())
        return _fit_and_test(cfg, ckpt_path, datamodule, model, callbacks, loggers, commit)
    finally:
        finish_trackers(loggers)


def _fit_and_test(
    cfg: DictConfig,
    ckpt_path: str | None,
    datamodule,
    model,
    callbacks: list,
    loggers: list,
    commit: str | None,
) -> float | None:
    output_dir = Path(cfg.paths.output_dir)
    manual = {"enable_model_summary": False}  # ModelSize says it in one line
    if strategy := _safe_strategy(cfg):
        manual["strategy"] = strategy
    if not model.automatic_optimization:
        # Truncated backprop steps the optimiser itself, so it clips too (Lightning refuses both at once).
        model.manual_gradient_clip_val = cfg.trainer.get("gradient_clip_val")
        manual["gradient_clip_val"] = None
    trainer: pl.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, **manual)
    params = _flat_hparams(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)

    metrics: dict = {}
    ckpt_for_test = None  # train=false: the model was built from ckpt_path, weights loaded
    evaluator = trainer
    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt_for_test = best or None
        if getattr(trainer.strategy, "_start_method", None) == "spawn":
            # The final evaluation of a ddp_spawn run needs no new processes (slow to start): one process on
            # one device scores the same pooled metrics.
            evaluator = build(cfg.trainer, devices=1, strategy="auto", logger=loggers or False, callbacks=[])
        # Report the validation metrics of the checkpoint kept as best (of the final weights if validation
        # never ran), not those of whichever epoch came last.
        # (None of either when trainer.limit_val_batches=0: then there is nothing to report.)
        metrics.update(
            *evaluator.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        )
        metrics["best_checkpoint"] = best
    if cfg.test:
        metrics.update(*evaluator.test(model, datamodule=datamodule, ckpt_path=ckpt_for_test, verbose=False))

    best = metrics.pop("best_checkpoint", None)
    result = _finite_metrics(metrics)
    result.update(
        {
            **_progress(trainer),
            "best_checkpoint": best,
            "tested_checkpoint": str(ckpt_for_test or ckpt_path or "") or None,
            "commit": commit,
        }
    )
    write_metrics(output_dir / "metrics.json", result)
    for logger in trainer.loggers:
        log_final_metrics(logger, params, {k: v for k, v in result.items() if "/" in k and v is not None})
    log.info("metrics: %s", json.dumps(result))
    optimized = cfg.get("optimized_metric")
    if optimized and cfg.train and optimized not in result:
        known = sorted(k for k in result if "/" in k)
        message = f"optimized_metric={optimized!r} is not a metric of this run; its metrics are {known}"
        if _in_multirun():
            raise UserError(message)  # a sweeper cannot rank this job
        log.warning(message)
    return result.get(optimized) if optimized else None
