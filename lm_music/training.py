"""The train/evaluate run behind `train.py`: data, model, trainer from the config; metrics.json at the end."""

import json
import logging
import math
import os
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from lm_music.audio import AudioRenderer
from lm_music.cache import ContinuousCache, Refrain
from lm_music.callbacks import (
    AdaptThreads,
    DestroyProcessGroupAtExit,
    EpochLines,
    ModelSize,
    finish_trackers,
    log_final_metrics,
)
from lm_music.checkpoints import (
    TRAINING_ARGS,
    check_weights,
    load_checkpoint,
    module_from_checkpoint,
    network_settings,
    network_weights,
    rows_by_name,
    task_of,
)
from lm_music.distributed import evaluator, in_multirun, progress, safe_strategy
from lm_music.errors import UserError
from lm_music.io import write_text_atomic
from lm_music.loggers import TrackerState, resume_trackers
from lm_music.provenance import source_commit
from lm_music.resume import AtomicCheckpointIO, NextEpochAfterLastBatch, auto_resume_path
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


@rank_zero_only
def write_metrics(path: Path, metrics: dict) -> None:
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def _joblib_jobs() -> int:
    """How many jobs of a joblib sweep run at once (1 outside one): they share the machine's cores."""
    if not in_multirun():
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
    """`ckpt_path=last` means this run dir's last checkpoint: resume with hydra.run.dir=RUN_DIR ckpt_path=last.
    Training resumes only from a `.ckpt` (it holds the optimiser and loop state); starting from a shipped or
    exported model's weights is fine-tuning, `init_from=`."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path and cfg.train and (found := auto_resume_path(cfg.paths.output_dir)):
        log.info(
            "requeued SLURM job (SLURM_RESTART_COUNT=%s): resuming from %s",
            os.environ["SLURM_RESTART_COUNT"],
            found,
        )
        return str(found)
    if ckpt_path and ckpt_path != "last" and cfg.train and not str(ckpt_path).endswith(".ckpt"):
        raise UserError(
            f"ckpt_path={ckpt_path} under train=true resumes a run, which needs its .ckpt "
            "(RUN_DIR/checkpoints/last.ckpt); to train on from a shipped or exported model's weights, "
            f"use init_from={ckpt_path}; to score it, train=false"
        )
    if ckpt_path != "last":
        return ckpt_path
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file() and in_multirun():
        log.info("ckpt_path=last: this job has no %s yet: it starts from the beginning", last)
        return None
    if not last.is_file():
        raise UserError(
            f"ckpt_path=last: no {last}; give the interrupted run's folder too: hydra.run.dir=RUN_DIR ckpt_path=last"
        )
    return str(last)


def _fine_tuned(cfg: DictConfig, initial: dict, data_kwargs: dict):
    """`init_from=`: the model's network and weights (its architecture and sizes, its vocabulary or grid),
    trained with this config's optimiser, schedule and clipping, from a fresh optimiser state. Where the data
    adds tokens to the model's vocabulary (event models given `data.controls` or infilling), its rows follow
    their tokens by name and the new tokens start from fresh rows."""
    training = {
        k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k in TRAINING_ARGS
    }
    task, settings = task_of(initial), network_settings(initial)
    module = task.lightning_module()(**settings, **training)
    weights, old_codec = network_weights(initial), getattr(module.sampler, "codec", None)
    grown = old_codec is not None and len(task.sampler(**(settings | data_kwargs)).codec) != len(old_codec)
    if grown:
        module = task.lightning_module()(**(settings | data_kwargs), **training)
        new_names = module.sampler.codec.names()
        weights = rows_by_name(weights, module.net.state_dict(), old_codec.names(), new_names)
    check_weights(module.net, weights, initial["path"])
    log.info(
        "init_from=%s: its network and weights (%s), this config's optimiser and schedule; model.* sizes of "
        "the config are not used%s",
        cfg.init_from,
        task.describe(initial["hyper_parameters"]),
        f"; vocabulary grown from {len(old_codec)} to {len(module.sampler.codec)} tokens" if grown else "",
    )
    return module


def train(cfg: DictConfig) -> float | None:
    """Train and/or test as the config says; return `cfg.optimized_metric` for sweepers."""
    finished = Path(cfg.paths.output_dir) / "metrics.json"
    if cfg.get("ckpt_path") == "last" and in_multirun() and finished.is_file():
        # A sweep run again with ckpt_path=last after a kill: the jobs that had ended keep their results.
        log.info("ckpt_path=last: this job ended before (%s): kept as it is", finished)
        return (
            json.loads(finished.read_text()).get(cfg.optimized_metric)
            if cfg.get("optimized_metric")
            else None
        )
    threads = ThreadPolicy(cfg.get("threads", "auto"))  # it looks at the other processes from here on
    commit = source_commit()  # of the code this run loaded, whatever the checkout holds when it ends
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    AudioRenderer.from_options(cfg.get("audio"))  # a bad audio.soundfont: one line now, not after the data
    ckpt_path = _resolve_ckpt_path(cfg)
    if ckpt_path and cfg.get("init_from"):
        raise UserError("give ckpt_path= (resume or score a run) or init_from= (fine-tune a model), not both")
    checkpoint = load_checkpoint(ckpt_path) if ckpt_path else None
    initial = load_checkpoint(cfg.init_from) if cfg.get("init_from") else None
    task = get_class(cfg.model._target_).sampler_class.task_name
    for source, given in ((checkpoint, ckpt_path), (initial, cfg.get("init_from"))):
        if source is not None and source["lm_music_task"] != task:
            raise UserError(
                f"{given} is a {source['lm_music_task']} checkpoint, but this experiment trains a {task} model: "
                "pick the matching experiment="
            )
    datamodule = build(cfg.data)
    if checkpoint is not None or initial is not None:
        datamodule.adopt((checkpoint or initial)["hyper_parameters"])
    datamodule.setup("fit")
    if checkpoint is not None and not cfg.train:
        model = module_from_checkpoint(checkpoint)
    elif initial is not None:
        model = _fine_tuned(cfg, initial, datamodule.model_kwargs())
    else:
        model = build(cfg.model, **datamodule.model_kwargs(), _convert_="all")
    cache, refrain = ContinuousCache.from_options(cfg), Refrain.from_options(cfg)
    if cache is not None or refrain is not None:
        if not hasattr(model, "cache"):
            raise UserError(
                "cache_lambda= and refrain_*= are for token models (lyrics, event tokens): leave them out"
            )
        model.cache, model.refrain = cache, refrain
        if refrain is not None:
            model.sampler.separator()  # one line now if its tokens have no lines or bars
    callbacks = _instantiate_all(cfg.get("callbacks"))
    _quiet_lightning()
    _quiet_wandb()
    loggers = _instantiate_all(cfg.get("logger"))
    resume_trackers(loggers, checkpoint if cfg.train else None)  # before they log anything
    try:
        callbacks += [
            AdaptThreads(threads, _joblib_jobs()),
            DestroyProcessGroupAtExit(),
            TrackerState(),
            NextEpochAfterLastBatch(),
        ]
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
    if strategy := safe_strategy(cfg):
        manual["strategy"] = strategy
    if not cfg.trainer.get("plugins"):  # a kill mid-save leaves the old checkpoint, not half a new one
        manual["plugins"] = [AtomicCheckpointIO()]
    trainer: pl.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, **manual)
    params = _flat_hparams(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(params)

    metrics: dict = {}
    ckpt_for_test = None  # train=false: the model was built from ckpt_path, weights loaded
    scorer = trainer
    if cfg.train:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt_for_test = best or None
        scorer = evaluator(
            trainer, lambda **one: build(cfg.trainer, **one, logger=loggers or False, callbacks=[])
        )
        # Report the validation metrics of the checkpoint kept as best (of the final weights if validation
        # never ran), not those of whichever epoch came last.
        # (None of either when trainer.limit_val_batches=0: then there is nothing to report.)
        metrics.update(*scorer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False))
        metrics["best_checkpoint"] = best
    if cfg.test:
        metrics.update(*scorer.test(model, datamodule=datamodule, ckpt_path=ckpt_for_test, verbose=False))

    best = metrics.pop("best_checkpoint", None)
    result = _finite_metrics(metrics)
    result.update(
        {
            **progress(trainer),
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
        if in_multirun():
            raise UserError(message)  # a sweeper cannot rank this job
        log.warning(message)
    return result.get(optimized) if optimized else None
