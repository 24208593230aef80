"""Share of padded positions per training epoch, with the project's length grouping and without.

    python bench/padding.py [--epochs 5]

Lyrics: songdata_head.csv with data.max_len=1000 and data.max_len=null (whole songs), batch size of
conf/data/lyrics.yaml. Music: the train splits of JSB Chorales, Nottingham and Piano-midi.de with the batch
sizes of conf/data/*.yaml. `grouped` is LengthGroupedBatchSampler as training uses it (shuffled),
`random` is plain random batches (torch's BatchSampler over a RandomSampler), `sorted` is the sampler's
unshuffled order (what evaluation uses: the least padding possible). One JSON line per dataset, the share
averaged over `--epochs` epochs (seeds).
These are whole-batch figures. Piano-midi.de trains with `model.tbptt_steps=200`, whose chunks leave out
the pieces that have ended: `bench/tbptt.py` measures what that computes (5.2 % padding, not 16 %).
"""

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import BatchSampler, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.data.batching import LengthGroupedBatchSampler, padding_share  # noqa: E402
from lm_music.tasks.lyrics.datamodule import LyricsDataModule  # noqa: E402
from lm_music.tasks.pianoroll.datamodule import PianoRollDataModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGET = 0.10


def shares(lengths, batch_size: int, epochs: int) -> dict:
    grouped, random = [], []
    for epoch in range(epochs):
        sampler = LengthGroupedBatchSampler(lengths, batch_size, shuffle=True, seed=0)
        sampler.set_epoch(epoch)
        grouped.append(padding_share(lengths, list(sampler)))
        order = RandomSampler(range(len(lengths)), generator=torch.Generator().manual_seed(epoch))
        random.append(padding_share(lengths, list(BatchSampler(order, batch_size, drop_last=False))))
    ordered = list(LengthGroupedBatchSampler(lengths, batch_size, shuffle=False))
    return {
        "grouped": round(sum(grouped) / epochs, 4),
        "random": round(sum(random) / epochs, 4),
        "sorted": round(padding_share(lengths, ordered), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # nothing here computes much: for the record only

    datasets = []
    lyrics_batch = OmegaConf.load(ROOT / "conf" / "data" / "lyrics.yaml").batch_size
    for max_len in (1000, None):
        dm = LyricsDataModule(
            str(DATA / "lyrics" / "songdata_head.csv"), max_len=max_len, batch_size=lyrics_batch
        )
        dm.setup("fit")
        datasets.append(
            (f"lyrics songdata_head max_len={max_len}", dm.datasets["train"].lengths(), lyrics_batch)
        )
    for name, experiment in (
        ("JSB_Chorales", "jsb_chorales"),
        ("Nottingham", "nottingham"),
        ("Piano_midi", "piano_midi"),
    ):
        batch = OmegaConf.load(
            ROOT / "conf" / "data" / f"{experiment}.yaml"
        ).batch_size  # the experiment's data group
        dm = PianoRollDataModule(path=str(DATA / "polyphonic" / f"{name}.mat"), batch_size=batch)
        dm.setup("fit")
        datasets.append((name, dm.datasets["train"].lengths(), batch))

    for name, lengths, batch_size in datasets:
        row = {
            "benchmark": "padding_share",
            "dataset": name,
            "split": "train",
            "batch_size": int(batch_size),
            "sequences": len(lengths),
            "positions": int(lengths.sum()),
            "mean_length": round(float(lengths.mean()), 1),
            "max_length": int(lengths.max()),
            **shares(lengths, int(batch_size), args.epochs),
            "epochs": args.epochs,
            "target_grouped": TARGET,
            "date": date.today().isoformat(),
            **hardware(),
        }
        row["target_met"] = row["grouped"] < TARGET
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
