"""Truncated backprop on Piano-midi.de as `experiment=piano_midi` trains it: padding computed, and speed.

    python bench/tbptt.py [--epochs 5] [--batches 8] [--hidden 512] [--head bernoulli] [--precision 32-true]
                          [--threads 2]

padding  one epoch per seed (0..epochs-1) of the real training step with a tiny model (hidden 8); a forward
         hook on the RNN counts the positions it computes. share = 1 - scored frames / computed positions.
speed    the first --batches batches of epoch 0 at --hidden (2 x 512 is the original size); the first is
         warm-up. frames/s = scored frames / step time, median over the timed batches. The head is --head
         (bernoulli, the original model, as the figures in BENCHMARKS.md were made; the experiment's default
         is now nade).
To compare two commits, run the script alternately in a checkout of each (PYTHONPATH=that checkout, so that
its `lm_music` is the one imported); `lm_music` in the output says which one ran.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # stable 2-thread timings on a shared machine

import argparse
import json
import logging
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, one_epoch_trainer  # noqa: E402

import lm_music  # noqa: E402
from lm_music.tasks.pianoroll.datamodule import PianoRollDataModule  # noqa: E402
from lm_music.tasks.pianoroll.lit_module import PianoRollLitModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


class Count(pl.Callback):
    """Positions the RNN computes (forward hook), frames the loss scores, and the time of each step."""

    def __init__(self) -> None:
        self.computed, self.scored, self.seconds = 0, 0, []

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module.net.rnn.register_forward_hook(self.hook)

    def hook(self, _module, args, _output) -> None:
        self.computed += args[0].shape[0] * args[0].shape[1]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.scored += int((batch["lengths"] - 1).clamp(min=0).sum())
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append((time.perf_counter() - self.start, int((batch["lengths"] - 1).sum())))


def run_epoch(
    dm, experiment, hidden: int, head: str, precision: str, seed: int, batches: int | None
) -> Count:
    pl.seed_everything(seed, verbose=False)
    model = {**experiment.model, "hidden_size": hidden, "embedding_dim": hidden, "head": head}
    model.pop("_target_", None)
    module = PianoRollLitModule(**model, **dm.model_kwargs())
    count = Count()
    trainer = one_epoch_trainer(
        precision=precision,
        limit_train_batches=batches or 1.0,
        callbacks=[count],
    )
    trainer.fit(module, datamodule=dm)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=5, help="padding: epochs (seeds) averaged")
    parser.add_argument("--batches", type=int, default=8, help="speed: batches run, the first untimed")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--head", default="bernoulli", choices=["bernoulli", "nade"])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=["padding", "speed"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    # as train.py composes it: the LSTM's settings (tbptt_steps among them) are in conf/tuned/piano_midi/
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        experiment = compose("train", overrides=["experiment=piano_midi", "model=pianoroll_rnn"])
    dm = PianoRollDataModule(
        path=str(DATA / "polyphonic" / "Piano_midi.mat"), batch_size=experiment.data.batch_size
    )
    dm.setup("fit")
    common = {
        "dataset": "Piano_midi",
        "batch_size": dm.batch_size,
        "tbptt_steps": experiment.model.tbptt_steps,
        "lm_music": str(Path(lm_music.__file__).parent.parent),
        "date": date.today().isoformat(),
        **hardware(),
    }
    if "padding" not in args.skip:
        shares = []
        for seed in range(args.epochs):
            count = run_epoch(dm, experiment.copy(), 8, args.head, "32-true", seed, None)
            shares.append(1 - count.scored / count.computed)
        row = {"benchmark": "tbptt_padding_share", "share": round(statistics.mean(shares), 4), **common}
        print(json.dumps({**row, "epochs": args.epochs, "per_epoch": [round(s, 4) for s in shares]}))
    if "speed" not in args.skip:
        count = run_epoch(dm, experiment.copy(), args.hidden, args.head, args.precision, 0, args.batches)
        timed = count.seconds[1:]
        row = {
            "benchmark": "tbptt_frames_per_s",
            "frames_per_s": round(statistics.median(frames / seconds for seconds, frames in timed)),
            "hidden_size": args.hidden,
            "head": args.head,
            "precision": args.precision,
            "timed_batches": len(timed),
            "padding_share_timed": round(1 - count.scored / count.computed, 4),
            "loadavg_1min": round(os.getloadavg()[0], 2),
            **common,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
