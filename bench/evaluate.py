"""How long judging samples takes beyond drawing them (python -m lm_music.evaluate), and memorisation alone.

    python bench/evaluate.py [--threads 2] [--repeats 3] [--skip-command]

1. `evaluate_command`: the command on the shipped JSB model, 64 samples x 256 frames against the 77-piece test
   split of JSB_Chorales.mat (ceiling: the 76-piece validation split; floor: 64 unigram rolls): the whole run
   timed, and the drawing the command itself timed (its evaluation.json `timing`), so what it costs beyond
   sampling is total - sampling. Run once (sampling is the slow part).
2. `memorisation`: the matching statistics of 64 texts x 1,000 characters against the 873 songs of
   songdata_head.csv (index built with the texts, as the command does): texts drawn from the file's
   character unigram frequencies (as a weak model's would be) and 1,000-character passages of its own songs
   (every window copied: the most repeats to sort through). Median over the repeats.
3. `lyrics_features`: every lyrics feature (words, lines, rhymes, memorisation) of the same 64 unigram texts.

One JSON line per measurement, with the machine (bench/common.py).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.evaluation import copying  # noqa: E402
from lm_music.tasks.lyrics import features as lyrics  # noqa: E402
from lm_music.tasks.lyrics.datamodule import read_lyrics_csv  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(action, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def command(threads: int) -> dict:
    from lm_music.evaluate import evaluate, options

    with tempfile.TemporaryDirectory() as out:
        args = ["pretrained=jsb_chorales", f"data.path={DATA / 'polyphonic' / 'JSB_Chorales.mat'}"]
        args += ["num_samples=64", "length=256", "seed=0", f"threads={threads}", f"out_dir={out}"]
        start = time.perf_counter()
        result = evaluate(options(args))
        total = time.perf_counter() - start
    timing = result["timing"]
    return {
        "benchmark": "evaluate_command",
        "samples": 64,
        "length": 256,
        "reference_pieces": len(result["features"]["reference"]["pitch_range"]),
        "total_s": round(total, 2),
        "sampling_s": round(timing["samples_s"], 2),
        "beyond_sampling_s": round(total - timing["samples_s"], 2),
        **{k: round(v, 2) for k, v in timing.items() if k != "samples_s"},
        "mean_oa": result["summary"]["mean_oa"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-command", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {"date": date.today().isoformat(), **hardware()}
    if not args.skip_command:
        print(json.dumps({**command(args.threads), **machine}), flush=True)

    songs = read_lyrics_csv(DATA / "lyrics" / "songdata_head.csv")["text"].tolist()
    chars, frequencies = lyrics.char_frequencies(songs)
    unigram = lyrics.floor_texts(chars, frequencies, [1000] * 64, seed=0)
    copied = [s[:1000] for s in songs if len(s) >= 1000][:64]
    for name, texts in (("unigram", unigram), ("copied", copied)):
        seconds, stats = timed(lambda t=texts: copying.matching_statistics(songs, t), args.repeats)
        line = {
            "benchmark": "memorisation",
            "texts": f"{len(texts)} x 1000 characters, {name}",
            "training": f"{len(songs)} songs, {sum(map(len, songs))} characters",
            "seconds": round(seconds, 2),
            "longest_copy_max": int(max(s.max() for s in stats)),
            **machine,
        }
        print(json.dumps(line), flush=True)
    seconds, _ = timed(lambda: lyrics.set_features(unigram, songs), args.repeats)
    print(
        json.dumps(
            {
                "benchmark": "lyrics_features",
                "texts": "64 x 1000 characters, unigram",
                "seconds": round(seconds, 2),
                **machine,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
