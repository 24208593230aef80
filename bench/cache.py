"""Which continuous cache (lm_music/cache.py: theta, lambda) and which refrain (start, follow, boost) give each
shipped token model the lowest NLL on its VALIDATION split, and what do they give on test?

    python bench/cache.py [--models lyrics,lyrics_authors,pop909] [--thetas 0.1 0.3 1] [--lambdas 0.05 0.1 0.2]
        [--refrain-starts 0.05 0.1 --refrain-follows 0.3 0.5 --refrain-boosts 10 30]
        [--split valid] [--out bench/results/cache.jsonl]

The split is read as the model's training run read it (its `training_command`'s experiment and data settings,
through the task's data module), and scored as the test step scores it: the net's features once per batch, then
the mixture at every setting of the grid; the refrain's grid (when given) over no cache and over the best cache.
One JSON line per model and split: per setting the pooled NLL in nats per token, bits per character (lyrics)
or bits per note (events, over the split's notes), and the best settings. The chosen ones go into the model's
config.json `decoding` (`python -m lm_music.export card=... decoding.cache_lambda=L decoding.cache_theta=T
decoding.refrain_start=S ...`), never chosen on test.
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
    """Summed NLL (nats) of the split's predicted tokens with no cache and at each (theta, lambda), their count,
    and each batch's targets and tokens' NLL at each setting (for the refrain)."""
    from lm_music.cache import ContinuousCache

    net, pad = model.sampler.net.eval(), model.sampler.codec.PAD
    totals = {None: 0.0, **{setting: 0.0 for setting in grid}}
    tokens: dict = {setting: [] for setting in totals}
    targets_seen = []
    count = 0
    for batch in loader:
        ids = batch["sequences"].long()
        inputs, targets = ids[:, :-1], ids[:, 1:]
        features, _ = net.features(inputs, batch.get("labels"))
        logits = net.head(features)
        real = targets != pad
        count += int(real.sum())
        plain = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2).float(), targets, ignore_index=pad, reduction="none"
        )
        totals[None] += float(plain.sum())
        tokens[None].append(plain)
        targets_seen.append(targets)
        for theta, lam in grid:
            nll = ContinuousCache(lam, theta).sequence_nll(logits, features, targets, pad)
            totals[(theta, lam)] += float(nll.sum())
            tokens[(theta, lam)].append(nll)
    return {"totals": totals, "count": count, "tokens": tokens, "targets": targets_seen}


def refrain_totals(model, scored: dict, over, grid: list[tuple[float, float, float]]) -> dict:
    """Summed NLL (nats) under each refrain (start, follow, boost) of the grid, over the tokens' NLL at cache
    setting `over` (None: no cache)."""
    from lm_music.cache import Refrain

    pad, separator = model.sampler.codec.PAD, model.sampler.separator()
    pairs = list(zip(scored["tokens"][over], scored["targets"], strict=True))
    return {
        setting: sum(float(Refrain(*setting).sequence_nll(nll, t, pad, separator).sum()) for nll, t in pairs)
        for setting in grid
    }


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
    parser.add_argument("--refrain-starts", type=float, nargs="*", default=[])
    parser.add_argument("--refrain-follows", type=float, nargs="*", default=[0.0])
    parser.add_argument("--refrain-boosts", type=float, nargs="*", default=[0.0])
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
        best = min(grid, key=lambda s: scored["totals"][s]) if grid else None
        line = {
            "benchmark": "cache",
            "model": name,
            "split": args.split,
            "tokens": scored["count"],
            "settings": rows,
            "best": {"cache_theta": best[0], "cache_lambda": best[1]} if best else {},
            "best_without_cache": {},
        }
        refrains = list(itertools.product(args.refrain_starts, args.refrain_follows, args.refrain_boosts))
        for over in dict.fromkeys([None, best]) if refrains else []:
            totals = refrain_totals(model, scored, over, refrains)
            cache = "" if over is None else f"theta={over[0]} lambda={over[1]} "
            for (start, follow, boost), total in totals.items():
                key = f"{cache}refrain={start},{follow},{boost}"
                line["settings"][key] = figures(total, scored["count"], counts)
            chosen = min(totals, key=totals.get)
            line["best" if over == best else "best_without_cache"] |= {
                "refrain_start": chosen[0],
                "refrain_follow": chosen[1],
                "refrain_boost": chosen[2],
            }
        line |= hardware()
        print(json.dumps(line))
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
