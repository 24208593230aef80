"""A run folder as `train.py` leaves it: `.hydra/` (the composed config, the command's overrides, Hydra's
runtime), `metrics.json` and `checkpoints/`. Read here, once, for the exporter, the cards, the evaluator, the page
and the sweep summary; a file a run did not write reads as empty."""

import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from lm_music.errors import UserError

RENAMED_DATA_KEYS = {"val_fraction": "valid_fraction"}  # lyrics runs and models before the task folders


def upgraded_data(data: dict) -> dict:
    """Data settings with the old layout's keys under today's names."""
    return {RENAMED_DATA_KEYS.get(key, key): value for key, value in data.items()}


def run_of(ckpt_path: str | Path) -> Path:
    """The run folder around `RUN/checkpoints/NAME.ckpt`."""
    return Path(ckpt_path).parent.parent


def overrides(run: Path) -> list[str] | None:
    """The command line's overrides (`.hydra/overrides.yaml`), None where the run has none recorded; an old
    data key under today's name, so that the command runs today."""
    file = run / ".hydra" / "overrides.yaml"
    if not file.is_file():
        return None
    given = [str(o) for o in yaml.safe_load(file.read_text()) or []]
    for old, new in RENAMED_DATA_KEYS.items():
        given = [o.replace(f"data.{old}=", f"data.{new}=", 1) for o in given]
    return given


def config(run: Path) -> dict | None:
    """The composed config as written (`.hydra/config.yaml`, interpolations unresolved), or None."""
    file = run / ".hydra" / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(file), resolve=False) if file.is_file() else None


def metrics(run: Path) -> dict:
    """`metrics.json` (written when a run ends well), or {}."""
    file = run / "metrics.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def data_settings(run: Path) -> dict:
    """The run's `data:` settings resolved, relative paths taken from where the run was launched (Hydra's
    runtime cwd); {} for a folder without `.hydra/config.yaml`."""
    file = run / ".hydra" / "config.yaml"
    if not file.is_file():
        return {}
    cfg = OmegaConf.load(file)
    try:
        data = OmegaConf.to_container(cfg.data, resolve=True) if "data" in cfg else {}
    except Exception as error:  # an interpolation that needs Hydra's runtime: say which file
        raise UserError(f"cannot read the data settings of {file}: {error}") from None
    launched = Path.cwd()
    hydra_file = file.with_name("hydra.yaml")
    if hydra_file.is_file():
        runtime = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {})
        launched = Path(runtime.get("cwd") or launched)
    for key in ("path", "cache_dir"):
        if data.get(key) and not Path(str(data[key])).expanduser().is_absolute():
            data[key] = str(launched / str(data[key]))
    return upgraded_data(data)
