"""Which temperature (and, for event tokens, top_p) makes each shipped model's samples closest to its data?

    python bench/decoding.py [--models jsb_chorales,nottingham,...] [--threads 1] [--out bench/results/decoding.jsonl]
        [--temperatures 0.7 0.8] [--top-p 0 0.95]

For every setting of the grid, `python -m lm_music.evaluate` (in-process) judges 64 samples of the card's
length at seed 0 against the VALIDATION split (the ceiling then being test against valid): the setting with the
highest floor-to-ceiling position there is the model's decoding default (its config.json `decoding`), chosen without
looking at the test split. One JSON line per setting; then one per model with the choice.
"""

import argparse
import itertools
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.cache import REFRAIN_OPTIONS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# the card's evaluation command without its reference; the grids: temperature for all, top_p for tokens
MODELS = {
    "jsb_chorales": ["length=256", f"data.path={DATA / 'polyphonic' / 'JSB_Chorales.mat'}"],
    "piano_midi": ["length=256", f"data.path={DATA / 'polyphonic' / 'Piano_midi.mat'}"],
    "nottingham": ["length=256", f"data.path={DATA / 'polyphonic' / 'Nottingham.mat'}"],
    "bach_chorales": ["length=256"],
    "pop909": ["length=1024", f"data.path={DATA / 'midi' / 'pop909'}"],
    "lyrics": ["length=500", f"data.path={DATA / 'lyrics' / 'public_domain_songs.csv'}"],
    "lyrics_authors": ["length=500", f"data.path={DATA / 'lyrics' / 'public_domain_songs.csv'}"],
}
LYRICS_TEMPERATURES = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
TEMPERATURES = {
    "pop909": [0.6, 0.7, 0.8, 0.9, 1.0],
    "lyrics": LYRICS_TEMPERATURES,
    "lyrics_authors": LYRICS_TEMPERATURES,
}
TOP_P = {"pop909": [None, 0.95]}
ROLL_TEMPERATURES = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]


def judge(model: str, overrides: list[str], threads: int, seed: int = 0) -> dict:
    from lm_music.evaluate import evaluate, options

    with tempfile.TemporaryDirectory() as out:
        args = [
            f"pretrained={model}",
            "num_samples=64",
            f"seed={seed}",
            "reference=valid",
            f"threads={threads}",
        ]
        result = evaluate(options([*args, *MODELS[model], *overrides, f"out_dir={out}"]))
    means = {name: round(float(np.nanmean(v)), 4) for name, v in result["features"]["samples"].items()}
    return {
        "mean_oa": result["summary"]["mean_oa"],
        "position": result["summary"]["position"],
        "samples": means,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seed", type=int, default=0, help="of the 64 samples (a second seed shows the noise)"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--temperatures", type=float, nargs="+", help="instead of the model's grid")
    parser.add_argument("--top-p", type=float, nargs="+", help="instead of the model's grid (0: off)")
    parser.add_argument("--cache-lambdas", type=float, nargs="+", default=[0.0], help="token models (0: off)")
    parser.add_argument("--cache-theta", type=float, default=0.3)
    parser.add_argument("--rhyme-candidates", type=int, nargs="+", default=[1], help="lyrics (1: off)")
    parser.add_argument(
        "--refrains", nargs="+", default=["0,0,0"], help="token models: START,FOLLOW,BOOST each (0,0,0: off)"
    )
    args = parser.parse_args()
    lines = []
    for model in args.models.split(","):
        best = None
        grid = itertools.product(
            [p or None for p in args.top_p] if args.top_p else TOP_P.get(model, [None]),
            args.temperatures or TEMPERATURES.get(model, ROLL_TEMPERATURES),
            args.cache_lambdas,
            args.rhyme_candidates,
            [tuple(float(x) for x in r.split(",")) for r in args.refrains],
        )
        for top_p, temperature, cache_lambda, rhyme_candidates, refrain in grid:
            overrides = [
                f"temperature={temperature}",
                f"top_p={top_p or 'null'}",
                f"cache_lambda={cache_lambda}",
            ]
            row = {"benchmark": "decoding", "model": model, "temperature": temperature, "top_p": top_p}
            row |= {"seed": args.seed} if args.seed else {}
            if cache_lambda:
                overrides.append(f"cache_theta={args.cache_theta}")
                row |= {"cache_lambda": cache_lambda, "cache_theta": args.cache_theta}
            if rhyme_candidates != 1:
                overrides.append(f"rhyme_candidates={rhyme_candidates}")
                row["rhyme_candidates"] = rhyme_candidates
            if any(refrain):
                named = dict(zip(REFRAIN_OPTIONS, refrain, strict=True))
                overrides += [f"{k}={v}" for k, v in named.items()]
                row |= named
            row |= judge(model, overrides, args.threads, args.seed)
            lines.append(row)
            print(json.dumps(row), flush=True)
            if best is None or row["position"] > best["position"]:
                best = row
        choice = {"benchmark": "decoding_choice", "model": model, "date": str(date.today()), **hardware()}
        choice |= {
            k: best.get(k)
            for k in ("temperature", "top_p", "cache_lambda", "cache_theta", "rhyme_candidates")
            + REFRAIN_OPTIONS
            + ("position",)
        }
        lines.append(choice)
        print(json.dumps(choice), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)


if __name__ == "__main__":
    main()
