"""How long infilling bars takes (issue 45): `python sample.py`'s draw for `--bars` bars (5-8 by default) of
each of `--songs` test songs of a MIDI folder, one sample, with a note-density control, audio rendered as the
page does; the wall time of `generation.draw` (the song read and tokenized, the fill drawn, decoded,
spliced, its excerpt rendered) per song, and the median. The model is loaded once, before the clock.

    python bench/infill.py --model pretrained:pop909_infill --data ../shared/data/midi/pop909 --threads 2
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music import generation  # noqa: E402
from lm_music.options import sample_options  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrained:pop909_infill")
    parser.add_argument("--data", required=True, help="a MIDI folder with a test/ subfolder")
    parser.add_argument("--songs", type=int, default=10)
    parser.add_argument("--bars", default="5-8")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = generation.load_model(args.model, "cpu")
    songs = sorted((Path(args.data) / "test").glob("*.mid"))[: args.songs]
    rows = []
    for i, song in enumerate(songs):
        cfg = sample_options()
        cfg.merge_with(
            OmegaConf.create(
                {
                    "ckpt_path": args.model,
                    "num_samples": 1,
                    "length": 1024,
                    "seed": i,
                    "prime_midi": str(song),
                    "infill_bars": args.bars,
                    "controls": {"note_density": 6},
                }
            )
        )
        start = time.perf_counter()
        samples = generation.draw(model, cfg)
        seconds = time.perf_counter() - start
        fill = len(samples.ids[0]) - samples.primed
        rows.append(
            {
                "song": song.name,
                "seconds": round(seconds, 3),
                "prime_tokens": samples.primed,
                "fill_tokens": fill,
                "gap": samples.gap,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(
        json.dumps(
            {
                "model": args.model,
                "bars": args.bars,
                "songs": len(rows),
                "median_s": round(statistics.median(r["seconds"] for r in rows), 3),
                "max_s": max(r["seconds"] for r in rows),
                "threads": args.threads,
                "hardware": hardware(),
            }
        )
    )


if __name__ == "__main__":
    main()
