"""Which continuous cache (lm_music/cache.py: theta, lambda) gives each shipped token model the lowest NLL on its
VALIDATION split, and what does it give on test?

    python bench/cache.py [--models lyrics,lyrics_authors,pop909] [--thetas 0.1 0.3 1] [--lambdas 0.05 0.1 0.2]
        [--split valid] [--out bench/results/cache.jsonl]

The split is read as the model's training run read it (its `training_command`'s experiment and data settings,
through the task's data module), and scored as the test step scores it: the net's features once per batch, then
the mixture at every setting of the grid. One JSON line per model and split: per setting the pooled NLL in nats
per token, bits per character (lyrics) or bits per note (events, over the split's notes), and the best setting.
The chosen one goes into the model's config.json `decoding` (`python -m lm_music.export card=...
decoding.cache_lambda=L decoding.cache_theta=T`), never chosen on test.
"""

import argparse
import itertools
import json
import math
import shlex
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, hardware  # noqa: E402

DATA = REPO.parent / "shared" / "data"
PATHS = {
    "lyrics": DATA / "lyrics" / "public_domain_songs.csv",
    "lyrics_authors": DATA / "lyrics" / "public_domain_songs.csv",
    "pop909": DATA / "midi" / "pop909",
}


def split_loader(model, data_path: Path, split: str):
    """The model's data module, composed from its training command's data and experiment overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    words = shlex.split(model.checkpoint["exported"]["training_command"])
    keep = [w for w in words if w.split("=")[0] in ("experiment",) or w.startswith("data.")]
    keep = [w for w in keep if not w.startswith("data.path=")] + [f"data.path={data_path}"]
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=keep)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("test" if split == "test" else "validate")
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    return loader, getattr(datamodule, "counts", {}).get(split)


@torch.no_grad()
def score(model, loader, grid: list[tuple[float, float]]) -> dict:
    """Summed NLL (nats) of the split's predicted tokens with no cache and at each (theta, lambda), and their count."""
    from lm_music.cache import ContinuousCache

    net, pad = model.sampler.net.eval(), model.sampler.codec.PAD
    totals = {None: 0.0, **{setting: 0.0 for setting in grid}}
    count = 0
    for batch in loader:
        ids = batch["sequences"].long()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        features, _ = net.features(inputs, batch.get("labels"))
        logits = net.head(features)
        real = targets != pad
        count += int(real.sum())
        plain = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2).float(), targets, ignore_index=pad, reduction="sum"
        )
        totals[None] += float(plain)
        for theta, lam in grid:
            nll = ContinuousCache(lam, theta).sequence_nll(logits, features, targets, pad)
            totals[(theta, lam)] += float(nll.sum())
    return {"totals": totals, "count": count}


def figures(total: float, count: int, counts: dict | None) -> dict:
    out = {"nats_per_token": round(total / count, 5)}
    if counts and counts.get("notes"):
        out["bits_per_note"] = round(total / math.log(2) / counts["notes"], 4)
    else:
        out["bits_per_char"] = round(total / count / math.log(2), 5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lyrics,lyrics_authors,pop909")
    parser.add_argument("--thetas", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from lm_music.generation import load_model

    grid = list(itertools.product(args.thetas, args.lambdas))
    for name in args.models.split(","):
        model = load_model(f"pretrained:{name}", "cpu")
        loader, counts = split_loader(model, PATHS[name], args.split)
        scored = score(model, loader, grid)
        rows = {
            "none" if s is None else f"theta={s[0]} lambda={s[1]}": figures(t, scored["count"], counts)
            for s, t in scored["totals"].items()
        }
        best = min(grid, key=lambda s: scored["totals"][s])
        line = {
            "benchmark": "cache",
            "model": name,
            "split": args.split,
            "tokens": scored["count"],
            "settings": rows,
            "best": {"cache_theta": best[0], "cache_lambda": best[1]},
            **hardware(),
        }
        print(json.dumps(line))
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
