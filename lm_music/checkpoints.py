"""Reading checkpoints safely: tensors and plain values only, with one clear line when a file is not ours."""

import importlib
from pathlib import Path

import torch

from lm_music.errors import UserError

TASKS = {
    "lyrics": "lm_music.modules.lyrics:LyricsLM",
    "pianoroll": "lm_music.modules.pianoroll:PianoRollLM",
}


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint as a dict, loaded with `weights_only=True` (no code runs from the file)."""
    path = Path(path)
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
    return checkpoint


def module_class(task: str) -> type:
    module_name, class_name = TASKS[task].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def module_from_checkpoint(checkpoint: dict) -> torch.nn.Module:
    """The LightningModule that wrote the checkpoint, rebuilt from its hyperparameters, weights loaded."""
    module = module_class(checkpoint["lm_music_task"])(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module
