"""Reading checkpoints safely: tensors and plain values only, with one clear line when a file is not ours.

A checkpoint is a Lightning `.ckpt`, an exported folder (safetensors + config.json) or `pretrained:NAME`."""

import importlib
from pathlib import Path

import torch

from lm_music.errors import UserError
from lm_music.export import check_weights, read_exported, resolve

TASKS = {
    "lyrics": "lm_music.modules.lyrics:LyricsLM",
    "pianoroll": "lm_music.modules.pianoroll:PianoRollLM",
}


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint as a dict, loaded with `weights_only=True` (no code runs from the file); an exported
    folder or `pretrained:NAME` as a dict of the same shape (`lm_music_task`, `hyper_parameters`,
    `state_dict`)."""
    path = resolve(path)
    if path.is_dir():
        return {**read_exported(path), "path": str(path)}
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (give ckpt_path=RUN_DIR/checkpoints/last.ckpt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{path} is not a readable checkpoint (truncated or not a torch file): {reason}"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("lm_music_task") not in TASKS:
        raise UserError(f"{path} is not an lm_music checkpoint (no lyrics or piano-roll model inside)")
    return {**checkpoint, "path": str(path)}


def module_class(task: str) -> type:
    module_name, class_name = TASKS[task].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def module_from_checkpoint(checkpoint: dict) -> torch.nn.Module:
    """The LightningModule that wrote the checkpoint, rebuilt from its hyperparameters, weights loaded."""
    from lm_music.samplers import network_weights

    module = module_class(checkpoint["lm_music_task"])(**checkpoint["hyper_parameters"])
    check_weights(module.net, network_weights(checkpoint), checkpoint.get("path", "the checkpoint"))
    return module
