"""Peak memory of training on Piano-midi.de (2 x 512 LSTM): full backprop vs truncated (tbptt_steps=200),
on pieces tiled to 1x, 2x, 4x their length; and the bytes per frame of the roll cache, on disk and in memory.

    python bench/memory.py [--quick] [--tiles 1 2 4] [--steps 2] [--batch 4] [--tbptt 200] [--threads 2] [--cache-only]

Each configuration runs in a child process of its own (peak RSS = its ru_maxrss): the project's
PianoRollDataModule and PianoRollLitModule in a pl.Trainer, `steps` steps over the `steps * batch` longest
training pieces, each tiled `tile` times. `rss_before_fit_mb` is the peak before training starts (data,
model, imports); `train_extra_mb` what training added on top. One JSON line per configuration, then one
per roll cache (`cached_splits` of a MIDI folder, and of Piano_midi.mat).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/throughput.py

import argparse
import json
import logging
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, one_epoch_trainer  # noqa: E402

from lm_music.data.batching import SequenceDataset  # noqa: E402
from lm_music.tasks.pianoroll.datamodule import (  # noqa: E402
    PianoRollDataModule,
    cached_splits,
    load_splits,
    read_benchmark,
)
from lm_music.tasks.pianoroll.lit_module import PianoRollLitModule  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PIANO_MIDI = DATA / "polyphonic" / "Piano_midi.mat"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def child(args) -> None:
    """Train `steps` steps on the longest pieces, tiled; print the peak RSS as JSON."""
    torch.set_num_threads(args.threads)
    args.tbptt = args.tbptt or None  # 0: full backprop
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    dm = PianoRollDataModule(path=str(PIANO_MIDI), batch_size=args.batch)
    dm.setup("fit")
    longest = sorted(dm.datasets["train"].sequences, key=len)[-args.batch * args.steps :]
    dm.datasets["train"] = SequenceDataset([np.tile(roll, (args.tile, 1)) for roll in longest])
    torch.manual_seed(0)
    module = PianoRollLitModule(tbptt_steps=args.tbptt, gradient_clip_val=1.0, **dm.model_kwargs())
    trainer = one_epoch_trainer()
    before = peak_mb()
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    lengths = [len(s) for s in dm.datasets["train"].sequences]
    print(
        json.dumps(
            {
                "rss_before_fit_mb": round(before),
                "peak_rss_mb": round(peak_mb()),
                "batches": args.steps,
                "optimizer_steps": trainer.global_step,
                "max_frames": max(lengths),
                "mean_frames": round(float(np.mean(lengths))),
                "fit_seconds": round(time.perf_counter() - start, 1),
            }
        )
    )


def training_rows(args) -> None:
    for tbptt in (None, args.tbptt):
        for tile in args.tiles:
            command = [sys.executable, __file__, "--child", "--tile", str(tile), "--batch", str(args.batch)]
            command += ["--steps", str(args.steps), "--threads", str(args.threads)]
            command += ["--tbptt", str(tbptt or 0)]
            out = subprocess.run(command, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"child failed: {' '.join(command)}\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            row = {
                "benchmark": "training_memory",
                "dataset": "Piano_midi train, longest pieces",
                "backprop": f"tbptt_steps={tbptt}" if tbptt else "full",
                "tile": tile,
                "batch_size": args.batch,
                **result,
                "train_extra_mb": result["peak_rss_mb"] - result["rss_before_fit_mb"],
                "date": date.today().isoformat(),
                **hardware(),
            }
            print(json.dumps(row), flush=True)


def cache_row(source: str, splits_of, cache_dir: Path) -> dict:
    start = time.perf_counter()
    splits = splits_of()
    build = time.perf_counter() - start
    loads = []
    for _ in range(5):  # later calls read the cache
        start = time.perf_counter()
        splits_of()
        loads.append(time.perf_counter() - start)
    load = statistics.median(loads)
    (npz,) = cache_dir.glob("*.npz")
    rolls = [roll for split in splits.values() for roll in split]
    frames = sum(len(roll) for roll in rolls)
    return {
        "benchmark": "roll_cache",
        "source": source,
        "pieces": len(rolls),
        "frames": frames,
        "cache_bytes": npz.stat().st_size,
        "disk_bytes_per_frame": round(npz.stat().st_size / frames, 2),
        "memory_bytes_per_frame": round(sum(roll.nbytes for roll in rolls) / frames, 2),
        "memory_dtype": str(rolls[0].dtype),
        "build_seconds": round(build, 2),
        "cache_load_seconds": round(load, 3),  # median of 5
        "date": date.today().isoformat(),
        **hardware(),
    }


def cache_rows() -> None:
    folder = DATA / "midi" / "nottingham_jukedeck"
    with tempfile.TemporaryDirectory() as tmp:
        load = partial(load_splits, "midi_folder", str(folder), tmp, 2, None, True, 0)
        print(json.dumps(cache_row(f"midi_folder {folder.name} (frames_per_beat=2)", load, Path(tmp))))
    with tempfile.TemporaryDirectory() as tmp:
        load = partial(cached_splits, tmp, {"bench": str(PIANO_MIDI)}, partial(read_benchmark, PIANO_MIDI))
        print(json.dumps(cache_row(f"benchmark {PIANO_MIDI.name}", load, Path(tmp))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiles 1 2, one step")
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tbptt", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-only", action="store_true", help="only the roll cache rows")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.quick:
        args.tiles, args.steps = [1, 2], 1
    torch.set_num_threads(args.threads)
    if not args.cache_only:
        training_rows(args)
    cache_rows()


if __name__ == "__main__":
    main()
