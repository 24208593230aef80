"""The one loader: every form a model comes in, read safely and checked against its config.

A model is a Lightning `.ckpt` (read with `weights_only=True`), an exported folder (`model.safetensors` +
`config.json`, written by `python -m lm_music.export`) or `pretrained:NAME`, a shipped folder inside the
package. Each is read into the same checkpoint-shaped dict (`lm_music_task`, `hyper_parameters`,
`state_dict`), so no file is ever unpickled with code in it and the edges never care which form they got.
"""

import json
import logging
import pickle
from pathlib import Path

import torch

from lm_music.errors import UserError
from lm_music.nets.legacy import upgrade_weights
from lm_music.tasks.registry import TASKS
from lm_music.tasks.sampler import NetworkSampler
from lm_music.tasks.task import Task

log = logging.getLogger(__name__)

FORMAT = "lm_music/1"  # config.json's "format" of an exported folder
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED = "pretrained:"  # ckpt_path=pretrained:NAME
TRAINING_ARGS = ("optimizer", "scheduler", "tbptt_steps", "gradient_clip_val")  # the Lightning module's own


NOT_A_CHECKPOINT = (
    "is not a readable checkpoint (not a torch file, or a truncated one): give a .ckpt that train.py wrote, "
    "a folder from python -m lm_music.export, or pretrained:NAME"
)


def pretrained_names() -> list[str]:
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG).is_file())


def pretrained_listing() -> str:
    """One line per shipped model: its name and its card's summary."""
    lines = []
    for name in pretrained_names():
        config = json.loads((PRETRAINED_DIR / name / CONFIG).read_text())
        lines.append(f"{name:16} {config.get('summary', '')}")
    return "\n".join(lines)


def resolve(path: str | Path) -> Path:
    """`pretrained:NAME` -> the shipped folder (a UserError listing the names if there is none)."""
    text = str(path)
    if not text.startswith(PRETRAINED):
        return Path(text)
    name = text[len(PRETRAINED) :]
    if name not in pretrained_names():
        raise UserError(f"no pretrained model {name!r}; shipped: {', '.join(pretrained_names())}")
    return PRETRAINED_DIR / name


def read_exported(folder: Path) -> dict:
    """An exported folder as a checkpoint-shaped dict (`lm_music_task`, `hyper_parameters`, `state_dict` with
    the `net.` prefix), the weights in float32 whatever they are stored in."""
    from safetensors import SafetensorError  # only exported folders need it
    from safetensors.torch import load_file

    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise UserError(
            f"{folder} is not an exported model: it needs {WEIGHTS} and {CONFIG} "
            f"(write one with python -m lm_music.export ckpt_path=RUN/checkpoints/best.ckpt out_dir={folder})"
        )
    try:
        config = json.loads((folder / CONFIG).read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{folder / CONFIG} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("task") not in TASKS:
        raise UserError(f"{folder / CONFIG} is not an lm_music model config (format {FORMAT!r} expected)")
    try:
        weights = load_file(folder / WEIGHTS)
    except (SafetensorError, OSError) as err:
        raise UserError(f"{folder / WEIGHTS} is not a readable safetensors file: {err}") from None
    return {
        "lm_music_task": config["task"],
        "hyper_parameters": config["hyper_parameters"],
        "state_dict": {f"net.{k}": v.float() for k, v in weights.items()},
        "exported": config,
    }


def _read_ckpt(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err):
            raise UserError(f"{path} {NOT_A_CHECKPOINT}") from None
        # PyTorch's own message ends in advice to load with weights_only=False: the one thing not to do
        # with a file one does not trust.
        raise UserError(
            f"{path} holds Python objects that lm_music will not unpickle, because unpickling can run code; "
            "use a checkpoint lm_music wrote, or a model exported with python -m lm_music.export"
        ) from None
    except Exception as err:  # torch raises many types for damaged or foreign files
        # torch's own reason ("list index out of range") says nothing to the person who gave the path
        log.debug("torch.load(%s): %s: %s", path, type(err).__name__, err)
        raise UserError(f"{path} {NOT_A_CHECKPOINT}") from None


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint as a dict, loaded with `weights_only=True` (no code runs from the file); an exported
    folder or `pretrained:NAME` as a dict of the same shape (`lm_music_task`, `hyper_parameters`,
    `state_dict`). `path` is kept in it, for messages."""
    path = resolve(path)
    if path.is_dir():
        return {**read_exported(path), "path": str(path)}
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (give ckpt_path=RUN_DIR/checkpoints/last.ckpt)")
    checkpoint = _read_ckpt(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("lm_music_task") not in TASKS:
        raise UserError(f"{path} is not an lm_music checkpoint (no {' or '.join(TASKS)} model inside)")
    return {**checkpoint, "path": str(path)}


def task_of(checkpoint: dict) -> Task:
    return TASKS[checkpoint["lm_music_task"]]


def network_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's weights in a checkpoint's state dict, without their `net.` prefix, named as today's nets
    name them (a checkpoint or shipped model of the old layout: `nets.legacy`)."""
    weights = {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    return upgrade_weights(weights)


def network_settings(checkpoint: dict) -> dict:
    """The hyperparameters that build the network and its sampler (those of training left out)."""
    return {k: v for k, v in checkpoint["hyper_parameters"].items() if k not in TRAINING_ARGS}


def rows_by_name(weights: dict, fresh: dict, old_names: list[str], new_names: list[str]) -> dict:
    """`weights` of a token model for a grown vocabulary (`fresh`: the new net's own weights): each tensor with
    a row per token (the embedding, the head) gets its rows moved to where the new vocabulary puts the same
    token; the new tokens keep `fresh`'s rows. Fine-tuning a model onto added tokens (`init_from=`)."""
    where = [old_names.index(name) if name in old_names else -1 for name in new_names]
    moved = dict(weights)
    for key, value in weights.items():
        target = fresh.get(key)
        if (
            target is not None
            and value.shape != target.shape
            and value.shape[1:] == target.shape[1:]
            and (len(value), len(target)) == (len(old_names), len(new_names))
        ):
            rows = target.clone()
            for new, old in enumerate(where):
                if old >= 0:
                    rows[new] = value[old]
            moved[key] = rows
    return moved


def check_weights(net: torch.nn.Module, state_dict: dict, where: str) -> None:
    """Load `state_dict` (no `net.` prefix) into `net`, or one line saying how the two differ."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {unexpected[0]}"
            if unexpected
            else f"{wrong[0]} is {tuple(state_dict[wrong[0]].shape)}, the config makes it "
            f"{tuple(expected[wrong[0]].shape)}"
        )
        raise UserError(f"{where}: the weights do not match the model its config describes ({detail})")
    net.load_state_dict(state_dict)


def sampler_from_checkpoint(checkpoint: dict, device: torch.device | str = "cpu") -> NetworkSampler:
    """The checkpoint's network in its task's sampler, weights loaded and checked, on `device`, in eval mode.
    Needs no Lightning (sample.py starts without it)."""
    sampler = task_of(checkpoint).sampler(**network_settings(checkpoint))
    check_weights(sampler.net, network_weights(checkpoint), checkpoint.get("path", "the checkpoint"))
    sampler.net.to(device).eval()
    return sampler


def module_from_checkpoint(checkpoint: dict) -> torch.nn.Module:
    """The LightningModule that wrote the checkpoint, rebuilt from its hyperparameters, weights loaded."""
    module = task_of(checkpoint).lightning_module()(**checkpoint["hyper_parameters"])
    check_weights(module.net, network_weights(checkpoint), checkpoint.get("path", "the checkpoint"))
    return module
