"""Sampling speed at the original model size (2 x 512 LSTM, embedding 512): one batch vs one at a time.

    python bench/sampling.py [--quick] [--repeats 3] [--threads 2] [--lyrics-ckpt X] [--music-ckpt Y]

Lyrics: `LyricsLitModule.sample` of 64 samples x 1000 characters in one batch, against the same 64 drawn with
batch size 1 one after another; music: `PianoRollLitModule.sample` of 16 x 512 frames likewise. Randomly
initialised models (vocabulary from songdata_head.csv) unless checkpoints are given; sampling always runs
the full length, so the weights do not change the work. Each repeat times the batch, then `--singles`
batch-1 samples: one at a time = samples x their mean time (`--singles 64` times all of them). Figures are
medians over the repeats, the speed-up the median of the per-repeat ratios. One JSON line per task.
`--no-mkldnn` samples with oneDNN switched off (torch.backends.mkldnn.flags), which makes a one-step
nn.LSTM call ~20x cheaper on CPU (see RESULTS.md).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/throughput.py

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.cache import ContinuousCache  # noqa: E402
from lm_music.checkpoints import load_checkpoint, module_from_checkpoint  # noqa: E402
from lm_music.tasks.lyrics.datamodule import read_lyrics_csv  # noqa: E402
from lm_music.tasks.lyrics.lit_module import LyricsLitModule  # noqa: E402
from lm_music.tasks.lyrics.vocab import CharVocab  # noqa: E402
from lm_music.tasks.pianoroll.lit_module import PianoRollLitModule  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def model(task: str, ckpt: str | None):
    if ckpt:
        return module_from_checkpoint(load_checkpoint(ckpt)).eval()
    torch.manual_seed(0)
    if task == "lyrics":
        vocab = CharVocab.build(read_lyrics_csv(DATA / "lyrics" / "songdata_head.csv")["text"])
        return LyricsLitModule(vocab.chars).eval()
    return PianoRollLitModule().eval()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(task: str, module, num: int, length: int, args, cache=None) -> dict:
    generator = torch.Generator().manual_seed(0)
    draw = {"cache": cache} if cache else {}
    with torch.backends.mkldnn.flags(enabled=not args.no_mkldnn):
        module.sample(2, 8, generator=generator, **draw)  # warm-up
        batched, looped = [], []
        for _ in range(args.repeats):
            batched.append(seconds(lambda: module.sample(num, length, generator=generator, **draw)))
            singles = [
                seconds(lambda: module.sample(1, length, generator=generator, **draw))
                for _ in range(args.singles)
            ]
            looped.append(num * statistics.mean(singles))  # `num` samples one at a time
    med = statistics.median
    return {
        "benchmark": "sampling",
        "task": task,
        "unit": "characters/s" if task == "lyrics" else "frames/s",
        "samples": num,
        "length": length,
        "mkldnn": not args.no_mkldnn,
        "cache": cache.as_options() if cache else None,
        "batched_per_s": round(num * length / med(batched)),
        "one_at_a_time_per_s": round(num * length / med(looped)),
        "speedup": round(med(loop / batch for loop, batch in zip(looped, batched)), 2),
        "batched_seconds": round(med(batched), 2),
        "one_at_a_time_seconds": round(med(looped), 2),
        "ms_per_step_batched": round(1000 * med(batched) / length, 2),
        "ms_per_step_single": round(1000 * med(looped) / length / num, 2),
        "repeats": args.repeats,
        "singles_timed_per_repeat": args.singles,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "date": date.today().isoformat(),
        **hardware(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a quarter of the lengths")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--singles", type=int, default=4, help="batch-1 samples timed per repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-mkldnn", action="store_true", help="sample with oneDNN off (native LSTM)")
    parser.add_argument(
        "--cache-lambda", type=float, default=0.0, help="lyrics also with this cache (theta 0.3)"
    )
    parser.add_argument("--lyrics-ckpt")
    parser.add_argument("--music-ckpt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = 4 if args.quick else 1
    lyrics = model("lyrics", args.lyrics_ckpt)
    plain = measure("lyrics", lyrics, 64, 1000 // scale, args)
    print(json.dumps(plain))
    if args.cache_lambda:
        cached = measure("lyrics", lyrics, 64, 1000 // scale, args, ContinuousCache(args.cache_lambda, 0.3))
        cached["time_against_no_cache"] = round(cached["batched_seconds"] / plain["batched_seconds"], 2)
        print(json.dumps(cached))
    print(json.dumps(measure("music", model("music", args.music_ckpt), 16, 512 // scale, args)))


if __name__ == "__main__":
    main()
