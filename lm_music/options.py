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


def unknown_option(argv: list[str]) -> str | None:
    """One line for the first `key=value` of a command line that names no option (`controls.tempo=3`,
    `lenght=9`), with the options there are; None when all are known. Hydra's own message for it is several
    lines and a hint to append the key; `+key=` and Hydra's own settings are left to Hydra."""
    known = sample_options()
    for arg in argv:
        if "=" not in arg or arg.startswith(("-", "+", "~", "hydra.", "hydra/")):
            continue
        key = arg.split("=", 1)[0]
        node, parts = known, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig) or part not in node:
                where = ".".join(parts[:depth])
                if not isinstance(node, DictConfig):
                    return f"{where} takes one value, not {key}"
                listed = ", ".join(f"{where}.{k}" if where else k for k in node)
                return f"unknown option {key}; the options{f' of {where}' if where else ''} are {listed}"
            node = node[part]
    return None
