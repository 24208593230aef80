"""Why do the shipped lyrics models' samples never repeat a line, where real songs repeat 8% of theirs?

    python bench/lyrics_repeats.py [--model lyrics] [--data ../shared/data/lyrics/public_domain_songs.csv]
        [--cache-lambda 0.15 --cache-theta 0.3] [--refrain START,FOLLOW,BOOST] [--model-path FOLDER_OR_CKPT]

Scores the model's test songs whole (as training's test step does) and splits the characters by line: the
lines that repeat an earlier line of their song (a refrain sung again) and the lines heard for the first time.
If the model has learnt to repeat, a repeated line costs it few bits; the chance that a sample at temperature
1.0 copies such a line exactly is 2 ** -(the line's bits). The line's first character is reported apart: it is
where the model must decide that a repeat begins. With --cache-lambda, the songs are scored through the continuous
cache (lm_music/cache.py), as the test step and sampling with it do; with --refrain, through the refrain (over the
cache, if given), which prices whole lines: a line's bits then stand on its newline, and only whole lines' figures
are given. One JSON line.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lyrics" / "public_domain_songs.csv"


def line_costs(sampler, song: str, cache=None, refrain=None) -> list[tuple[bool, np.ndarray]]:
    """Per line of the song (with its newline): whether it repeats an earlier line, and its characters' bits."""
    ids = torch.from_numpy(sampler.vocab.encode(song, bos=True, eos=True).astype(np.int64))[None]
    with torch.no_grad():
        features, _ = sampler.net.features(ids[:, :-1])
        logits = sampler.net.head(features)
        if cache is not None:
            nats = cache.sequence_nll(logits, features, ids[:, 1:], sampler.vocab.PAD)[0]
        else:
            nats = F.cross_entropy(logits[0].float(), ids[0, 1:], reduction="none")
        if refrain is not None:
            nats = refrain.sequence_nll(nats[None], ids[:, 1:], sampler.vocab.PAD, sampler.separator())[0]
        bits = nats.float().numpy() / np.log(2)
    out, seen, start = [], set(), 0
    for line in song.splitlines(keepends=True):
        key = line.strip().lower()
        if key:
            out.append((key in seen, bits[start : start + len(line)]))
            seen.add(key)
        start += len(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lyrics")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model-path", help="a .ckpt or exported folder instead of the shipped --model")
    parser.add_argument("--cache-lambda", type=float, default=0.0)
    parser.add_argument("--cache-theta", type=float, default=0.3)
    parser.add_argument("--refrain", help="START,FOLLOW,BOOST (lm_music/cache.py, Refrain)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lm_music.cache import ContinuousCache, Refrain
    from lm_music.generation import load_model
    from lm_music.tasks.lyrics.evaluation import LyricsEvaluation

    cache = ContinuousCache(args.cache_lambda, args.cache_theta) if args.cache_lambda else None
    refrain = Refrain(*map(float, args.refrain.split(","))) if args.refrain else None
    model = load_model(args.model_path or f"pretrained:{args.model}", "cpu")
    model.sampler.net.eval()
    kind = LyricsEvaluation(model)
    songs = kind.load_reference({"data": {"path": str(args.data)}, "reference": "test"})["splits"]["test"]
    lines = [row for song in songs for row in line_costs(model.sampler, song, cache, refrain)]
    result = {"benchmark": "lyrics_repeats", "model": args.model_path or args.model, "songs": len(songs)}
    result |= {"cache": cache.as_options() if cache else None, **hardware()}
    result["refrain"] = refrain.as_options() if refrain else None
    for name, repeated in (("repeated", True), ("first_time", False)):
        chosen = [bits for r, bits in lines if r == repeated]
        totals = np.array([b.sum() for b in chosen])
        result[name] = {
            "lines": len(chosen),
            "bits_per_char": float(np.concatenate(chosen).mean()),
            "first_char_bits": None if refrain else float(np.mean([b[0] for b in chosen])),
            "rest_bits_per_char": None if refrain else float(np.concatenate([b[1:] for b in chosen]).mean()),
            "line_bits_median": float(np.median(totals)),
            "exact_copy_chance_median": float(np.median(2.0**-totals)),
            "exact_copy_chance_mean": float(np.mean(2.0**-totals)),
        }
    result["repeated_share"] = result["repeated"]["lines"] / len(lines)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
