"""Does artist conditioning work? Score every held-out test song under every artist.

    python bench/artists.py CONDITIONAL.ckpt UNCONDITIONAL.ckpt data.path=PATH/songdata.csv [data overrides]

The data overrides must be those both models were trained with (same CSV, filters, seed and split
fractions), so that the test songs are the held-out ones. Songs are scored whole (data.max_len=null).
Prints one JSON line: test bpc with the true artist, the unconditional model's test bpc, and artist
identification accuracy (the artists under which a song is most likely, top 1 and top 3) against chance.
"""

import json
import math
import sys
from datetime import date
from pathlib import Path

from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.checkpoints import load_checkpoint, module_from_checkpoint  # noqa: E402
from lm_music.tasks.lyrics.datamodule import LyricsDataModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(conditional_ckpt: str, unconditional_ckpt: str, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=lyrics_conditional", *overrides, "data.max_len=null"])
    conditional = module_from_checkpoint(load_checkpoint(conditional_ckpt)).eval()
    unconditional = module_from_checkpoint(load_checkpoint(unconditional_ckpt)).eval()
    data_args = {k: v for k, v in cfg.data.items() if k != "_target_"}
    datamodule = LyricsDataModule(**data_args)
    datamodule.adopt(conditional.hparams)
    datamodule.setup("test")
    uncond_data = LyricsDataModule(**data_args)
    uncond_data.adopt(unconditional.hparams)
    uncond_data.setup("test")

    num_artists = len(conditional.artists)
    true_nll = uncond_nll = chars = 0.0
    top1 = top3 = songs = 0
    for batch, uncond_batch in zip(datamodule.test_dataloader(), uncond_data.test_dataloader()):
        scores = conditional.artist_nll(batch)  # (B, artists): NLL of each song as each artist
        true_nll += scores.gather(1, batch["labels"][:, None].long()).sum().item()
        nll, count = unconditional.sequence_nll(uncond_batch)  # the same songs: the same characters
        uncond_nll += nll.sum().item()
        chars += count.sum().item()
        ranked = scores.argsort(dim=1)
        top1 += (ranked[:, 0] == batch["labels"]).sum().item()
        top3 += (ranked[:, :3] == batch["labels"][:, None]).any(1).sum().item()
        songs += len(batch["labels"])
    return {
        "benchmark": "artist_conditioning",
        "test_songs": songs,
        "artists": num_artists,
        "test_bpc_true_artist": true_nll / chars / math.log(2),
        "test_bpc_unconditional": uncond_nll / chars / math.log(2),
        "artist_top1": top1 / songs,
        "artist_top3": top3 / songs,
        "chance_top1": 1 / num_artists,
        "chance_top3": min(3, num_artists) / num_artists,
        "date": date.today().isoformat(),
        **hardware(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
