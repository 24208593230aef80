"""What attention dropout costs a Transformer training step on CPU: `scaled_dot_product_attention` with a dropout
above 0 leaves its fused kernel for the unfused one, which forms every attention matrix.

    python bench/attention_dropout.py [--threads 1] [--repeats 3]

One training step (forward, backward, AdamW) of `TokenTransformer` (the lyrics_transformer experiment's sizes:
6 layers x d_model 256, 4 heads, context 1,024) on 16 sequences of 1,024 random characters, float32 and bfloat16
autocast, with `attention_dropout` 0.0 and 0.2; the median of `--repeats` steps after one warm-up. One JSON line
per setting.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402

from lm_music.nets.token import TokenTransformer  # noqa: E402


def step_seconds(attention_dropout: float, bf16: bool, repeats: int) -> float:
    torch.manual_seed(0)
    net = TokenTransformer(100, 256, 6, 4, 1024, dropout=0.2, attention_dropout=attention_dropout)
    optimizer = torch.optim.AdamW(net.parameters())
    ids = torch.randint(0, 100, (16, 1024))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = net(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for bf16 in (False, True):
        for attention_dropout in (0.0, 0.2):
            seconds = step_seconds(attention_dropout, bf16, args.repeats)
            row = {"benchmark": "attention_dropout", "attention_dropout": attention_dropout, "bf16": bf16}
            print(
                json.dumps({**row, "step_seconds": round(seconds, 2), "repeats": args.repeats, **hardware()})
            )


if __name__ == "__main__":
    main()
