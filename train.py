"""Train (and test) a model: `python train.py experiment=NAME key=value ...`. See README.md."""

import signal
import sys

import hydra
from omegaconf import DictConfig

import lm_music.slurm  # noqa: F401  (the ${lm_music.run_name:} resolver of conf/hydra/default.yaml)
from lm_music.errors import UserError
from lm_music.threads import start_looking

start_looking()  # at the other processes' CPU use, to choose the thread count (lm_music/threads.py)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from lm_music.training import train

    try:
        return train(cfg)
    except UserError as err:
        sys.exit(f"error: {err}")
    except SIGTERMException:
        # last.ckpt is saved (callbacks.save_on_interrupt). Lightning's exception would exit with 0; a stopped
        # run is not a finished one: the shell's code for SIGTERM, which a batch system sees as a failure.
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main()
