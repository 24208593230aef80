"""The drawing options that `sample.py`, `python -m lm_music.evaluate` and the page share, and their defaults:
`sample_options.yaml` beside this file, package data, so an installed package has them as a checkout does."""

from importlib.resources import files

from omegaconf import DictConfig, OmegaConf

NAME = "sample_options"  # conf/sample.yaml's defaults list names it; `register` puts it where Hydra finds it


def sample_options() -> DictConfig:
    """The options and their defaults (ckpt_path, num_samples, length, temperature, seed, ...)."""
    return OmegaConf.create(files("lm_music").joinpath(f"{NAME}.yaml").read_text())


def register() -> None:
    """Make the options a config Hydra can compose (sample.py's conf/sample.yaml takes them as defaults)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=NAME, node=sample_options())
