"""Sample from a model: `python sample.py ckpt_path=X|pretrained=NAME num_samples=4 length=500 out_dir=DIR`."""

import sys

import hydra
from omegaconf import DictConfig

from lm_music import options
from lm_music.errors import UserError
from lm_music.threads import start_looking

start_looking()  # at the other processes' CPU use, to choose the thread count (lm_music/threads.py)
options.register()  # the drawing options' defaults, from the package (lm_music/sample_options.yaml)
if unknown := options.unknown_option(sys.argv[1:]):
    sys.exit(f"error: {unknown}")


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    from lm_music.checkpoints import pretrained_listing
    from lm_music.generation import sample

    if not cfg.get("ckpt_path") and cfg.get("pretrained") == "list":
        print(pretrained_listing())
        return
    try:
        samples, written = sample(cfg)
    except UserError as err:
        sys.exit(f"error: {err}")
    print(samples)
    print("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
