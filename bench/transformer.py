"""The Transformer's sampling with its key/value cache against recomputing the window at every step, and its
forward + backward FLOP/s against a matmul of the same run.

    python bench/transformer.py [--repeats 3] [--threads 2] [--d-model 128] [--n-layer 2] [--context 128]
                                [--quick]

Sampling: 64 samples x 1000 characters (a conditional-free character model, vocabulary of
songdata_head.csv) and 16 x 512 frames (a piano-roll model, NADE head), randomly initialised (sampling runs
the full length whatever the weights), through `decoding.generate` twice with the same draws: with the cache
(the models' own state) and without it (each step runs the model over the last `context` positions again).
Both draw the same samples (tests/test_transformer.py); the figure is the ratio of their times, the median of
per-repeat ratios. `--quick`: a quarter of the lengths.

FLOP/s: training steps (forward + backward) of the character model on dense batches of 32 x context;
FLOPs per position = 6 x the weights of its matrices + 6 x n_layer x context x d_model (attention's two
products, causal: half the window on average), against a 1024 x 1024 fp32 matmul timed in the same run.
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.decoding import categorical_draw, generate  # noqa: E402
from lm_music.nets.roll import PianoRollTransformer  # noqa: E402
from lm_music.nets.token import TokenTransformer  # noqa: E402

VOCAB = 100


def uncached(net, context: int, *extra):
    """A step function without the cache: the state is the history, and every step reads its last window."""

    def step(inputs, history):
        history = inputs if history is None else torch.cat([history, inputs], 1)
        outputs, _ = net(history[:, -context:], *extra)
        return outputs, history

    return step


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def sampling(task: str, net, num: int, length: int, args) -> dict:
    if task == "lyrics":
        prime = torch.zeros(num, 1, dtype=torch.long)
        steps = {"cached": lambda x, s: net(x, None, s), "recomputed": uncached(net, args.context, None)}

        def draw(generator):
            return categorical_draw(1.0, generator=generator)

    else:
        prime = torch.zeros(num, 1, 88)
        steps = {"cached": net, "recomputed": uncached(net, args.context)}

        def draw(generator):
            return lambda h: net.head.sample(h, 1.0, generator)

    times = {name: [] for name in steps}
    generate(steps["cached"], prime, 4, draw(torch.Generator().manual_seed(0)))  # warm-up
    for _ in range(args.repeats):
        for name, step in steps.items():
            drawn = draw(torch.Generator().manual_seed(0))
            times[name].append(seconds(lambda step=step, drawn=drawn: generate(step, prime, length, drawn)))
    med = statistics.median
    return {
        "benchmark": "transformer_sampling",
        "task": task,
        "samples": num,
        "length": length,
        "cached_seconds": round(med(times["cached"]), 2),
        "recomputed_seconds": round(med(times["recomputed"]), 2),
        "speedup": round(med(r / c for r, c in zip(times["recomputed"], times["cached"])), 2),
        "cached_per_s": round(num * length / med(times["cached"])),
    }


def flops(net: TokenTransformer, args) -> dict:
    batch = torch.randint(VOCAB, (32, args.context + 1))
    optimizer = torch.optim.AdamW(net.parameters())

    def train_step():
        logits, _ = net(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    train_step()
    step_s, matmul_s = [], []
    for _ in range(args.repeats * 3):
        step_s.append(seconds(train_step))
        matmul_s.append(seconds(lambda: [a @ b for _ in range(10)]) / 10)
    weights = sum(p.numel() for name, p in net.named_parameters() if p.dim() == 2 and "artist" not in name)
    per_position = 6 * weights + 6 * args.n_layer * args.context * args.d_model
    model = per_position * 32 * args.context / statistics.median(step_s)
    matmul = 2 * 1024**3 / statistics.median(matmul_s)
    return {
        "benchmark": "transformer_flops",
        "flops_per_position": per_position,
        "model_gflop_per_s": round(model / 1e9, 1),
        "matmul_gflop_per_s": round(matmul / 1e9, 1),
        "model_vs_matmul": round(model / matmul, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a quarter of the lengths")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {"d_model": args.d_model, "n_layer": args.n_layer, "n_head": args.n_head, "context": args.context}
    torch.manual_seed(0)
    chars = TokenTransformer(VOCAB, dropout=0.0, **sizes).eval()
    rolls = PianoRollTransformer(dropout=0.0, head="nade", **sizes).eval()
    scale = 4 if args.quick else 1
    common = {
        **sizes,
        "threads": args.threads,
        "repeats": args.repeats,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "date": date.today().isoformat(),
        **hardware(),
    }
    with torch.inference_mode():
        print(json.dumps({**sampling("lyrics", chars, 64, 1000 // scale, args), **common}), flush=True)
        print(json.dumps({**sampling("music", rolls, 16, 512 // scale, args), **common}), flush=True)
    print(json.dumps({**flops(chars.train(), args), **common}), flush=True)


if __name__ == "__main__":
    main()
