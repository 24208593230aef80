"""Train (and test) a model: `python train.py experiment=NAME key=value ...`. See README.md."""

import sys

import hydra
from omegaconf import DictConfig

from lm_music.errors import UserError
from lm_music.threads import start_looking

start_looking()  # at the other processes' CPU use, to choose the thread count (lm_music/threads.py)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from lm_music.training import train

    try:
        return train(cfg)
    except UserError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
