"""The sampling run behind `sample.py` and the page: a model in, samples out (values), then files.

Drawing returns the samples (texts, or rolls with their MIDI and audio); writing them is a separate step,
the task's `write`. Neither the dataset nor Lightning is loaded.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lm_music.cache import ContinuousCache, Refrain
from lm_music.checkpoints import PRETRAINED, load_checkpoint, sampler_from_checkpoint, task_of
from lm_music.errors import UserError
from lm_music.tasks.sampler import NetworkSampler
from lm_music.tasks.task import Task
from lm_music.threads import ThreadPolicy


@dataclass
class Model:
    """A loaded model, ready to draw from: what the page keeps between clicks."""

    path: str
    task: Task
    sampler: NetworkSampler
    checkpoint: dict


MAX_TEMPERATURE = 10.0  # past it a draw ignores the model: refused rather than silently giving noise


def load_model(path: str, device: str | torch.device | None = None) -> Model:
    """A `.ckpt`, an exported folder or `pretrained:NAME`, read by the one loader, on `device` (cuda when
    available, else cpu)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    checkpoint = load_checkpoint(path)
    return Model(str(path), task_of(checkpoint), sampler_from_checkpoint(checkpoint, device), checkpoint)


def model_path(cfg: DictConfig) -> str:
    """`ckpt_path`, else the shipped `pretrained` model."""
    if not cfg.get("ckpt_path") and not cfg.get("pretrained"):
        raise UserError(
            "give the model to sample from: ckpt_path=RUN_DIR/checkpoints/last.ckpt or pretrained=NAME "
            "(pretrained=list shows the shipped ones)"
        )
    return str(cfg.get("ckpt_path") or f"{PRETRAINED}{cfg.pretrained}")


def decoding_defaults(model: Model) -> dict:
    """An exported model's own decoding defaults (config.json `decoding`: the shipped models' were chosen by
    sample OA on the validation split, bench/decoding.py); a checkpoint's are temperature 1.0."""
    return {"temperature": 1.0, **model.checkpoint.get("exported", {}).get("decoding", {})}


def with_model_defaults(model: Model, cfg: DictConfig) -> DictConfig:
    """`cfg` with each decoding option left null (temperature, top_p, the cache's) set to the model's default."""
    unset = {k: v for k, v in decoding_defaults(model).items() if cfg.get(k) is None}
    return OmegaConf.merge(cfg, unset) if unset else cfg


def check_options(cfg: DictConfig) -> None:
    if cfg.num_samples < 1:
        raise UserError(f"num_samples must be at least 1, got {cfg.num_samples}")
    if cfg.length < 1:
        raise UserError(f"length must be at least 1, got {cfg.length}")
    if cfg.get("temperature") is not None and cfg.temperature <= 0:
        raise UserError(f"temperature must be > 0, got {cfg.temperature} (1.0 samples the model as trained)")
    if cfg.get("temperature") is not None and cfg.temperature > MAX_TEMPERATURE:
        raise UserError(
            f"temperature must be at most {MAX_TEMPERATURE}, got {cfg.temperature} (above it every token is "
            "about as likely as any other: noise, not the model)"
        )
    if cfg.get("top_k") is not None and cfg.top_k < 1:
        raise UserError(f"top_k must be at least 1 (or null), got {cfg.top_k}")
    if cfg.get("top_p") is not None and not 0 < cfg.top_p <= 1:
        raise UserError(f"top_p must be in (0, 1] (or null), got {cfg.top_p}")
    if cfg.get("min_length") is not None and cfg.min_length < 0:
        raise UserError(f"min_length must be 0 or more (or null), got {cfg.min_length}")
    ContinuousCache.from_options(cfg)  # its settings' one-line errors
    Refrain.from_options(cfg)


def draw(model: Model, cfg: DictConfig):
    """`cfg.num_samples` samples drawn as one batch with `cfg.seed` (the sample options' keys): the task's
    samples object (`TextSamples`, `RollSamples`), no files written. Decoding options left null take the
    model's defaults."""
    cfg = with_model_defaults(model, cfg)
    check_options(cfg)
    generator = torch.Generator(device=model.sampler.device).manual_seed(int(cfg.seed))
    return model.task.draw(model.sampler, cfg, generator)


def sample(cfg: DictConfig) -> tuple[object, list[Path]]:
    """What `python sample.py` does: load the model, draw, write into `cfg.out_dir`; return the samples and
    the files written."""
    path = model_path(cfg)
    check_options(cfg)  # before the model is read: bad options are one line however large the model
    threads = ThreadPolicy(cfg.get("threads", "auto"))
    model = load_model(path, cfg.get("device"))
    threads.start()
    samples = draw(model, cfg)
    return samples, model.task.write(samples, Path(str(cfg.out_dir)))
